// A webhook receiver for outbox-relay, in Express.
//
// It does the four things every receiver should do, in this order:
//   1. verify the Standard Webhooks signature over the raw body (the npm package
//      standardwebhooks), and answer 401 when it does not match;
//   2. drop a webhook-id it has already accepted (the relay delivers at least once, so a
//      retry after a lost answer can repeat an event);
//   3. answer 204 at once, well inside the relay's delivery timeout (5s by default);
//   4. do the real work afterwards (setImmediate here; a job queue in production).
//
// It prints one line per request to stdout:
//   accepted <webhook-id> <event-type>
//   duplicate <webhook-id>
//   rejected <reason>
//
//   WEBHOOK_SECRET=whsec_... PORT=3000 node server.js
"use strict";

const express = require("express");
const { Webhook, WebhookVerificationError } = require("standardwebhooks");

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error("receiver-node: WEBHOOK_SECRET is required (the subscription's whsec_... secret)");
  process.exit(1);
}
let webhook;
try {
  webhook = new Webhook(secret);
} catch (err) {
  console.error(`receiver-node: WEBHOOK_SECRET is not a valid secret: ${err.message}`);
  process.exit(1);
}

// Ids already accepted, oldest first (a Set keeps insertion order), at most MAX_SEEN of them.
// Memory is enough for an example and for one process; in production, insert the id into a
// table with a unique key, in the same transaction as the work the event causes, and treat a
// unique violation as "duplicate": that survives restarts and works across replicas.
const MAX_SEEN = Number(process.env.MAX_SEEN || 10000);
const seen = new Set();

function remember(id) {
  seen.add(id);
  if (seen.size > MAX_SEEN) {
    seen.delete(seen.values().next().value);
  }
}

// handle is where the application's work goes: update a CRM, send an email, adjust a
// projection. It runs after the answer has gone out, so a slow step never makes the relay
// time out and retry.
function handle(event) {
  // event.event_type is e.g. "signup.created", "signup.position_changed", "signup.deleted";
  // event.data is the payload the application wrote into relay.outbox.
  void event;
}

const app = express();

app.get("/healthz", (req, res) => res.sendStatus(200));

// The signature covers the exact bytes of the body, so the body must reach the verifier
// unparsed: express.raw, never express.json, on this route. The limit leaves room above the
// relay's default RELAY_MAX_PAYLOAD_BYTES (256 KiB) for the envelope.
app.post("/webhooks", express.raw({ type: "application/json", limit: "1mb" }), (req, res) => {
  if (!Buffer.isBuffer(req.body)) {
    console.log("rejected body is not application/json");
    return res.status(415).json({ error: "expected application/json" });
  }
  let event;
  try {
    // Checks the timestamp (5 minutes either way), then each space-separated v1 signature in
    // constant time; returns the parsed body.
    event = webhook.verify(req.body, req.headers);
  } catch (err) {
    if (err instanceof WebhookVerificationError) {
      console.log(`rejected ${err.message}`);
      return res.status(401).json({ error: "invalid signature" });
    }
    console.log(`rejected body is not JSON: ${err.message}`); // signed, but not JSON
    return res.status(400).json({ error: "body is not JSON" });
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    console.log("rejected body is not a JSON object");
    return res.status(400).json({ error: "body is not a JSON object" });
  }

  // Only the body is signed: take the event type from it, not from X-Webhook-Event.
  const id = req.headers["webhook-id"];
  if (seen.has(id)) {
    console.log(`duplicate ${id}`);
    return res.sendStatus(204); // 2xx, so the relay stops sending it
  }
  remember(id);
  console.log(`accepted ${id} ${event.event_type}`);
  res.sendStatus(204);

  setImmediate(() => {
    try {
      handle(event);
    } catch (err) {
      // The relay already has its 204: a failure here is the application's to retry.
      console.error(`processing ${id} failed: ${err.message}`);
    }
  });
});

// ADDR ("127.0.0.1:3000", ":3000") wins over PORT; the default is every interface, port 3000.
function listenAddress() {
  const addr = process.env.ADDR;
  if (addr) {
    const i = addr.lastIndexOf(":");
    return { host: addr.slice(0, i).replace(/^\[|\]$/g, "") || undefined, port: Number(addr.slice(i + 1)) };
  }
  return { host: undefined, port: Number(process.env.PORT || 3000) };
}

const { host, port } = listenAddress();
const server = app.listen(port, host, () => {
  const a = server.address();
  console.error(`receiver-node: listening on ${a.address}:${a.port}, POST /webhooks`);
});
server.on("error", (err) => {
  console.error(`receiver-node: ${err.message}`);
  process.exit(1);
});

// Docker and Kubernetes stop a container with SIGTERM: finish the requests in flight, then exit.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
