-- trigger.sql: publishing from database triggers, so that no code path can change a signup
-- without its event. Every INSERT, UPDATE of position, and DELETE on signups writes a row into
-- relay.outbox in the same transaction as the change:
--
--   INSERT                  -> signup.created           {"signup": {id, waitlist_id, email, position}}
--   UPDATE (position moved) -> signup.position_changed  {"signup": {...}, "previous_position": n}
--   DELETE                  -> signup.deleted           {"signup": {id, waitlist_id}}
--
-- with tenant_id = the waitlist and ordering_key = the signup's id, so an ordered subscription
-- gets one signup's events in the order they happened. An update that leaves position alone
-- (a new email, or position set to the value it had) publishes nothing.
--
-- Apply it after `outbox-relay migrate`, as often as you like (it replaces what it made):
--   psql "$DATABASE_URL" -f examples/sql/trigger.sql
--
-- The role that writes signups needs INSERT on relay.outbox (and USAGE on schema relay): the
-- triggers run with its rights. With another RELAY_SCHEMA, replace "relay." below.
--
-- Use either these triggers or explicit publishing (publish.sql, outbox.Publish) for a table,
-- not both, or every change publishes twice.

BEGIN;

CREATE TABLE IF NOT EXISTS signups (
    id          text PRIMARY KEY,
    waitlist_id text NOT NULL,
    email       text NOT NULL,
    position    integer NOT NULL
);

-- The payload is built field by field rather than with to_jsonb(NEW): it is a contract with
-- subscribers, and a column added to signups later (a password hash, a note) must not leak
-- into webhooks by itself.
CREATE OR REPLACE FUNCTION signups_publish_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO relay.outbox (event_type, tenant_id, ordering_key, payload)
        VALUES ('signup.created', NEW.waitlist_id, NEW.id, jsonb_build_object(
            'signup', jsonb_build_object('id', NEW.id, 'waitlist_id', NEW.waitlist_id,
                                         'email', NEW.email, 'position', NEW.position)));
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO relay.outbox (event_type, tenant_id, ordering_key, payload)
        VALUES ('signup.position_changed', NEW.waitlist_id, NEW.id, jsonb_build_object(
            'signup', jsonb_build_object('id', NEW.id, 'waitlist_id', NEW.waitlist_id,
                                         'email', NEW.email, 'position', NEW.position),
            'previous_position', OLD.position));
    ELSIF TG_OP = 'DELETE' THEN
        -- Only the identity: the person is gone, and so should be their email.
        INSERT INTO relay.outbox (event_type, tenant_id, ordering_key, payload)
        VALUES ('signup.deleted', OLD.waitlist_id, OLD.id, jsonb_build_object(
            'signup', jsonb_build_object('id', OLD.id, 'waitlist_id', OLD.waitlist_id)));
    END IF;
    RETURN NULL; -- the result of an AFTER trigger is ignored
END
$$;

-- DROP + CREATE rather than CREATE OR REPLACE TRIGGER, which needs PostgreSQL 14; the
-- relay supports 13.
DROP TRIGGER IF EXISTS signups_created ON signups;
CREATE TRIGGER signups_created AFTER INSERT ON signups
    FOR EACH ROW EXECUTE FUNCTION signups_publish_event();

-- The WHEN clause filters before the function is even called: cheaper than an IF inside it.
DROP TRIGGER IF EXISTS signups_position_changed ON signups;
CREATE TRIGGER signups_position_changed AFTER UPDATE OF position ON signups
    FOR EACH ROW WHEN (OLD.position IS DISTINCT FROM NEW.position)
    EXECUTE FUNCTION signups_publish_event();

DROP TRIGGER IF EXISTS signups_deleted ON signups;
CREATE TRIGGER signups_deleted AFTER DELETE ON signups
    FOR EACH ROW EXECUTE FUNCTION signups_publish_event();

COMMIT;
