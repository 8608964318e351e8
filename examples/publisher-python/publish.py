"""Publishing to outbox-relay from Python with psycopg 3.

One signup joins a waitlist: the application's row in `signups` and the `signup.created`
event in the outbox are written in ONE transaction (`with conn.transaction():`), so the
webhook goes out if and only if the signup was committed. With --rollback the transaction
writes both rows and then rolls back, as when a later step of the request fails: the signup
is gone, and so is its event.

It prints one line:

  committed <signup-id> <event-id>
  rolled back <signup-id> <event-id>

    DATABASE_URL=postgres://... python3 publish.py --email ada@example.com [--waitlist wl_42] [--rollback]
"""

import argparse
import os
import secrets
import sys
import uuid

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

# The application's own table (examples/publisher-go and examples/sql create the same one).
CREATE_SIGNUPS = """CREATE TABLE IF NOT EXISTS signups (
    id          text PRIMARY KEY,
    waitlist_id text NOT NULL,
    email       text NOT NULL,
    position    integer NOT NULL
)"""

# The new signup goes to the back of its waitlist.
INSERT_SIGNUP = """INSERT INTO signups (id, waitlist_id, email, position)
SELECT %(id)s, %(waitlist_id)s, %(email)s, coalesce(max(position), 0) + 1
FROM signups WHERE waitlist_id = %(waitlist_id)s
RETURNING position"""

# The outbox row. event_id is chosen here, once per change: if the COMMIT's answer is lost
# and the application runs the transaction again with the same id, ON CONFLICT inserts
# nothing and subscribers get one webhook, not two. tenant_id scopes delivery to the
# waitlist's subscriptions; ordering_key keeps one signup's events in order for ordered
# subscriptions; payload becomes "data" in the webhook body. The schema is an identifier,
# quoted by sql.Identifier, never pasted in as text.
INSERT_EVENT = sql.SQL(
    """INSERT INTO {}.outbox (event_id, event_type, tenant_id, ordering_key, payload)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (event_id) DO NOTHING"""
)


class Abandon(Exception):
    """Whatever makes a request fail after its writes: the transaction rolls back and takes
    the event with it."""


def publish_signup(conn, schema, waitlist, email, rollback=False):
    """Creates a signup and its signup.created event in one transaction.

    Returns (committed, signup_id, event_id)."""
    signup_id = "su_" + secrets.token_hex(6)
    event_id = uuid.uuid4()
    try:
        with conn.transaction():
            (position,) = conn.execute(
                INSERT_SIGNUP, {"id": signup_id, "waitlist_id": waitlist, "email": email}
            ).fetchone()
            signup = {"id": signup_id, "waitlist_id": waitlist, "email": email, "position": position}
            conn.execute(
                INSERT_EVENT.format(sql.Identifier(schema)),
                (event_id, "signup.created", waitlist, signup_id, Jsonb({"signup": signup})),
            )
            if rollback:
                # An exception leaving the block rolls the transaction back.
                raise Abandon("the request failed after its writes")
    except Abandon:
        return False, signup_id, event_id
    return True, signup_id, event_id


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--email", default="ada@example.com", help="the signup's email")
    parser.add_argument("--waitlist", default="wl_42", help="the waitlist it joins: the event's tenant_id")
    parser.add_argument("--rollback", action="store_true", help="write both rows, then roll back")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("publisher-python: DATABASE_URL is required")
    # autocommit, so that each `with conn.transaction():` is the whole transaction and
    # nothing stays open between them.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE_SIGNUPS)
        schema = os.environ.get("RELAY_SCHEMA") or "relay"
        committed, signup_id, event_id = publish_signup(conn, schema, args.waitlist, args.email, args.rollback)
    print(f"{'committed' if committed else 'rolled back'} {signup_id} {event_id}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except psycopg.Error as err:
        sys.exit(f"publisher-python: {err}")
