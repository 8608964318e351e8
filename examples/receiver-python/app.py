"""A webhook receiver for outbox-relay, in Flask.

The signature is checked with the standard library only (hmac, hashlib, base64), to show
that there is nothing more to Standard Webhooks than this file's verify(). The receiver does
the four things every receiver should do, in this order:

  1. verify the signature over the raw body, and answer 401 when it does not match;
  2. drop a webhook-id it has already accepted (the relay delivers at least once, so a
     retry after a lost answer can repeat an event);
  3. answer 204 at once, well inside the relay's delivery timeout (5s by default);
  4. do the real work afterwards (a worker thread here; a job queue in production).

It prints one line per request to stdout:

  accepted <webhook-id> <event-type>
  duplicate <webhook-id>
  rejected <reason>

    WEBHOOK_SECRET=whsec_... PORT=3000 python3 app.py
"""

import base64
import binascii
import collections
import hashlib
import hmac
import json
import os
import queue
import re
import sys
import threading
import time

from flask import Flask, request

SECRET_PREFIX = "whsec_"
# How far webhook-timestamp may be from this machine's clock, either way: the Standard
# Webhooks recommendation. It bounds how long a captured request can be replayed.
TOLERANCE_SECONDS = 5 * 60


class VerificationError(Exception):
    """The request is not signed with our secret, or not recently."""


def decode_secret(secret):
    """Returns the HMAC key of a "whsec_<base64>" secret (the prefix is optional)."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as err:
        raise ValueError(f"not base64: {err}") from None
    if not key:
        raise ValueError("empty key")
    return key


def verify(key, headers, body, now=None):
    """Checks a Standard Webhooks signature; raises VerificationError when it does not hold.

    The signed message is "<webhook-id>.<webhook-timestamp>.<body>" with the body's exact
    bytes; webhook-signature holds one or more space-separated "v1,<base64 HMAC-SHA256>"
    (two during a secret rotation), and any one of them may match.
    """
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "") or headers.get("X-Webhook-Signature", "")
    if not msg_id or not timestamp or not signatures:
        raise VerificationError("missing webhook headers")
    if not re.fullmatch(r"[0-9]{1,19}", timestamp):
        raise VerificationError("invalid webhook timestamp")
    now = int(time.time()) if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise VerificationError("webhook timestamp out of tolerance")

    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, sig = candidate.partition(",")
        # compare_digest takes as long for a near miss as for a wild guess, so the answer
        # time tells an attacker nothing about how many leading bytes were right.
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return
    raise VerificationError("no matching signature")


class SeenIDs:
    """The webhook-ids already accepted, the oldest forgotten beyond a bound.

    Memory is enough for an example and for one process. In production, insert the id into
    a table with a unique key, in the same transaction as the work the event causes, and
    treat a unique violation as "duplicate": that survives restarts and works across
    processes and replicas.
    """

    def __init__(self, limit):
        self._ids = collections.OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, webhook_id):
        """Records webhook_id; answers False when it was already there."""
        with self._lock:
            if webhook_id in self._ids:
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > self._limit:
                self._ids.popitem(last=False)
            return True


def handle(event):
    """The application's work: update a CRM, send an email, adjust a projection.

    event["event_type"] is e.g. "signup.created", "signup.position_changed" or
    "signup.deleted"; event["data"] is the payload the application wrote into relay.outbox.
    It runs after the answer has gone out, so a slow step never makes the relay time out.
    """


def worker(jobs):
    while True:
        webhook_id, event = jobs.get()
        try:
            handle(event)
        except Exception as err:  # the relay already has its 204: this is ours to retry
            print(f"processing {webhook_id} failed: {err}", file=sys.stderr, flush=True)


def create_app(secret, max_seen=10000):
    key = decode_secret(secret)
    seen = SeenIDs(max_seen)
    jobs = queue.Queue()
    threading.Thread(target=worker, args=(jobs,), daemon=True).start()

    app = Flask(__name__)
    # Room above the relay's default RELAY_MAX_PAYLOAD_BYTES (256 KiB) for the envelope.
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20

    @app.get("/healthz")
    def healthz():
        return "", 200

    @app.post("/webhooks")
    def webhooks():
        # The signature covers the body's exact bytes: read them raw, never re-serialise.
        body = request.get_data()
        try:
            verify(key, request.headers, body)
        except VerificationError as err:
            print(f"rejected {err}", flush=True)
            return {"error": "invalid signature"}, 401
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            print("rejected body is not a JSON object", flush=True)
            return {"error": "body is not a JSON object"}, 400

        webhook_id = request.headers["webhook-id"]
        if not seen.add(webhook_id):
            print(f"duplicate {webhook_id}", flush=True)
            return "", 204  # 2xx, so the relay stops sending it
        # Only the body is signed: take the event type from it, not from X-Webhook-Event.
        print(f"accepted {webhook_id} {event.get('event_type')}", flush=True)
        jobs.put((webhook_id, event))
        return "", 204

    return app


def listen_address():
    """ADDR ("127.0.0.1:3000", ":3000") wins over PORT; the default is 0.0.0.0:3000."""
    addr = os.environ.get("ADDR")
    if addr:
        host, _, port = addr.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)
    return "0.0.0.0", int(os.environ.get("PORT", "3000"))


def main():
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        sys.exit("receiver-python: WEBHOOK_SECRET is required (the subscription's whsec_... secret)")
    try:
        app = create_app(secret, int(os.environ.get("MAX_SEEN", "10000")))
    except ValueError as err:
        sys.exit(f"receiver-python: WEBHOOK_SECRET is not a valid secret: {err}")
    host, port = listen_address()
    # Flask's own server is fine for trying things out; in production run create_app behind
    # gunicorn or waitress (and keep the dedupe in the database, shared by every worker).
    app.run(host=host, port=port, threaded=True)


if __name__ == "__main__":
    main()
