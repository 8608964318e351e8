// Publishing to outbox-relay from Node.js with the npm package pg.
//
// One signup joins a waitlist: the application's row in `signups` and the `signup.created`
// event in the outbox are written in ONE transaction, so the webhook goes out if and only if
// the signup was committed. With --rollback the transaction writes both rows and then rolls
// back, as when a later step of the request fails: the signup is gone, and so is its event.
//
// It prints one line:
//   committed <signup-id> <event-id>
//   rolled back <signup-id> <event-id>
//
//   DATABASE_URL=postgres://... node publish.js --email ada@example.com [--waitlist wl_42] [--rollback]
"use strict";

const { parseArgs } = require("node:util");
const { randomBytes, randomUUID } = require("node:crypto");
const { Client } = require("pg");

// The application's own table (examples/publisher-go and examples/sql create the same one).
const CREATE_SIGNUPS = `CREATE TABLE IF NOT EXISTS signups (
    id          text PRIMARY KEY,
    waitlist_id text NOT NULL,
    email       text NOT NULL,
    position    integer NOT NULL
)`;

// The new signup goes to the back of its waitlist.
const INSERT_SIGNUP = `INSERT INTO signups (id, waitlist_id, email, position)
SELECT $1, $2, $3, coalesce(max(position), 0) + 1 FROM signups WHERE waitlist_id = $2
RETURNING position`;

// The outbox row. event_id is chosen here, once per change: if the COMMIT's answer is lost
// and the application runs the transaction again with the same id, ON CONFLICT inserts
// nothing and subscribers get one webhook, not two. tenant_id scopes delivery to the
// waitlist's subscriptions; ordering_key keeps one signup's events in order for ordered
// subscriptions; payload becomes "data" in the webhook body.
const insertEvent = (outbox) => `INSERT INTO ${outbox} (event_id, event_type, tenant_id, ordering_key, payload)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (event_id) DO NOTHING`;

// Abandon stands for whatever makes a request fail after its writes: the transaction rolls
// back and takes the event with it.
class Abandon extends Error {}

async function main() {
  const { values: args } = parseArgs({
    options: {
      email: { type: "string", default: "ada@example.com" },
      waitlist: { type: "string", default: "wl_42" },
      rollback: { type: "boolean", default: false },
    },
  });
  const url = process.env.DATABASE_URL;
  if (!url) {
    throw new Error("DATABASE_URL is required");
  }
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(CREATE_SIGNUPS);
    // The relay's schema is RELAY_SCHEMA (default relay); quoted, as any identifier from
    // outside must be.
    const outbox = `${client.escapeIdentifier(process.env.RELAY_SCHEMA || "relay")}.outbox`;

    const signupID = `su_${randomBytes(6).toString("hex")}`;
    const eventID = randomUUID();
    await client.query("BEGIN");
    try {
      const { rows } = await client.query(INSERT_SIGNUP, [signupID, args.waitlist, args.email]);
      const signup = { id: signupID, waitlist_id: args.waitlist, email: args.email, position: rows[0].position };
      await client.query(insertEvent(outbox), [eventID, "signup.created", args.waitlist, signupID, JSON.stringify({ signup })]);
      if (args.rollback) {
        throw new Abandon("the request failed after its writes");
      }
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK");
      if (!(err instanceof Abandon)) {
        throw err;
      }
      console.log(`rolled back ${signupID} ${eventID}`);
      return;
    }
    console.log(`committed ${signupID} ${eventID}`);
  } finally {
    await client.end();
  }
}

main().catch((err) => {
  console.error(`publisher-node: ${err.message}`);
  process.exit(1);
});
