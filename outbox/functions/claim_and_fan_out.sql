-- version: 2
-- The current definition of claim_and_fan_out, applied with CREATE OR REPLACE after the
-- migrations (outbox/migrate.go) whenever this version is newer than the one the database
-- has: a change to the function is a change to this file and a higher version line.
--
-- claim_and_fan_out claims up to p_limit undispatched outbox rows, marks them and inserts
-- their deliveries (fan_out, which holds the rules), leasing none, and answers how many
-- events it claimed and how many deliveries it created. The dispatcher's fan-out.
--
-- A function rather than a statement the relay sends: the relay sends only unnamed
-- statements (so that it works through PgBouncer in transaction pooling), which PostgreSQL
-- plans on every call; PL/pgSQL keeps this statement's plan for the server session, and
-- planning it every time added about a millisecond to every event's way to its receiver.
CREATE OR REPLACE FUNCTION {{schema}}.claim_and_fan_out(p_limit integer, OUT events bigint, OUT deliveries bigint)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
SELECT f.events, f.deliveries INTO events, deliveries
FROM {{schema}}.fan_out(p_limit, NULL, 0, 0, 0, 0, '{}', '{}') f;
END
$$;
