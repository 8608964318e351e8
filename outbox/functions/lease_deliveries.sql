-- version: 2
-- The current definition of lease_deliveries, applied with CREATE OR REPLACE after the migrations
-- (outbox/migrate.go) whenever this version is newer than the one the database has: a change
-- to the function is a change to this file and a higher version line.
--
-- lease_deliveries is lease_due for relays from before migration 0006, which call it
-- (directly and through record_and_lease) during a rolling update: they claim in turns too,
-- under the same lock, so both releases keep each other's rules. Drop it, with
-- record_and_lease, in the first migration after the release that follows 0006.
--
-- Version 2 answers lease_due's first columns only, the shape those relays read: lease_due
-- 2 added timeout_ms and rate_limit. Such a relay sends with its own timeout, within a lease
-- that lease_due makes long enough for the subscription's.
CREATE OR REPLACE FUNCTION {{schema}}.lease_deliveries(
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT l.delivery_id, l.attempt, l.event_id, l.event_type, l.event_tenant_id, l.created_at,
        l.body, l.body_size, l.ordered, l.subscription_id, l.target_url, l.headers, l.secret, l.previous_secret,
        l.subscription_tenant_id
    FROM {{schema}}.lease_due(p_limit, p_owner, p_lease_ms, p_max_payload,
        p_max_in_flight, p_max_leased, p_ahead, '{}') l;
END
$$;
