-- publish.sql: publishing an event from plain SQL, in the application's own transaction.
--
-- Runs as it is against a database that `outbox-relay migrate` has prepared:
--   psql "$DATABASE_URL" -f examples/sql/publish.sql
-- and running it twice publishes the event once. In application code the literals below are
-- bind parameters ($1, $2, ...) of the same two statements.

-- The application's own table (examples/publisher-go creates the same one).
CREATE TABLE IF NOT EXISTS signups (
    id          text PRIMARY KEY,
    waitlist_id text NOT NULL,
    email       text NOT NULL,
    position    integer NOT NULL
);

BEGIN;

-- 1. The application's change.
INSERT INTO signups (id, waitlist_id, email, position)
VALUES ('su_sql_1', 'wl_42', 'ada@example.com', 17)
ON CONFLICT (id) DO NOTHING;

-- 2. Its event, in the same transaction: both commit, or neither does, so a webhook goes out
--    if and only if the change happened.
--
--    event_id is chosen by the application, once per change (a UUID made when the request
--    came in and kept across the application's own retries). If the COMMIT's answer is lost
--    and the application runs the transaction again, ON CONFLICT (event_id) DO NOTHING
--    inserts nothing the second time and subscribers get one webhook, not two. Leave
--    event_id out and the database makes a fresh one (gen_random_uuid()).
--
--    tenant_id scopes delivery to that waitlist's subscriptions; ordering_key (the signup's
--    id) keeps one signup's events in order for subscriptions created with "ordered": true.
--    payload becomes "data" in the webhook body.
INSERT INTO relay.outbox (event_id, event_type, tenant_id, ordering_key, payload)
VALUES (
    '5f0c1a52-8f6e-4d0e-9a43-2b7d1c9e6a10',
    'signup.created',
    'wl_42',
    'su_sql_1',
    '{"signup": {"id": "su_sql_1", "waitlist_id": "wl_42", "email": "ada@example.com", "position": 17}}'
)
ON CONFLICT (event_id) DO NOTHING;

COMMIT;
