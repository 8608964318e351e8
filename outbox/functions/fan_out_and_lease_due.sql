-- version: 1
-- The current definition of fan_out_and_lease_due, applied with CREATE OR REPLACE after the
-- migrations (outbox/migrate.go) whenever this version is newer than the one the database
-- has: a change to the function is a change to this file and a higher version line.
--
-- fan_out_and_lease_due fans out up to p_fan_out new outbox rows (claim_and_fan_out), then
-- leases due deliveries as lease_due does, in one round trip: a new event's way from its
-- notification to the request takes one statement instead of a fan-out, a hand-over and a
-- claim. The first row carries the fan-out's counts (fanned_events, fanned_deliveries) and
-- no delivery (delivery_id is null); the leased deliveries follow, their counts null.
CREATE OR REPLACE FUNCTION {{schema}}.fan_out_and_lease_due(
    p_fan_out integer,
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[], p_skip text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text, fanned_events bigint, fanned_deliveries bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_events     bigint;
    v_deliveries bigint;
BEGIN
    SELECT f.events, f.deliveries INTO v_events, v_deliveries FROM {{schema}}.claim_and_fan_out(p_fan_out) f;
    RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::uuid, NULL::text, NULL::text,
        NULL::timestamptz, NULL::text, NULL::integer, NULL::boolean, NULL::text, NULL::text,
        NULL::text, NULL::text, NULL::text, NULL::text, v_events, v_deliveries;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT l.*, NULL::bigint, NULL::bigint
            FROM {{schema}}.lease_due(p_limit, p_owner, p_lease_ms, p_max_payload,
                p_max_in_flight, p_max_leased, p_ahead, p_skip) l;
    END IF;
END
$$;
