-- version: 3
-- The current definition of fan_out_and_lease_due, applied with CREATE OR REPLACE after the
-- migrations (outbox/migrate.go) whenever this version is newer than the one the database
-- has: a change to the function is a change to this file and a higher version line.
--
-- fan_out_and_lease_due is the claim made on a notification: it fans out up to p_fan_out new
-- outbox rows and leases their new deliveries as it inserts them (fan_out), then, when
-- p_sweep asks for it or some new delivery could not be leased there (an ordered line, a
-- subscription at its cap), leases due deliveries as lease_due does, up to p_limit in all.
-- In one round trip: a new event's way from its notification to the request is one
-- statement, and without a backlog that statement writes each delivery once and walks no
-- turns. The first row carries the fan-out's counts (fanned_events, fanned_deliveries) and
-- no delivery (delivery_id is null); the leased deliveries follow, their counts null.
--
-- Version 1 had no p_sweep and always leased through lease_due; it is dropped (it was never
-- in a release). Version 3 answers timeout_ms and rate_limit, as lease_due 2 does; a
-- function's result type cannot be replaced, hence the second DROP.
DROP FUNCTION IF EXISTS {{schema}}.fan_out_and_lease_due(integer, integer, text, bigint, integer, integer, integer, text[], text[]);
DROP FUNCTION IF EXISTS {{schema}}.fan_out_and_lease_due(integer, boolean, integer, text, bigint, integer, integer, integer, text[], text[]);
CREATE OR REPLACE FUNCTION {{schema}}.fan_out_and_lease_due(
    p_fan_out integer, p_sweep boolean,
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[], p_skip text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text, timeout_ms integer, rate_limit double precision, fanned_events bigint, fanned_deliveries bigint)
LANGUAGE plpgsql VOLATILE
-- Index lookups only, for the reason fan_out gives.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_events     bigint;
    v_deliveries bigint;
    v_leased     bigint[];
BEGIN
    SELECT f.events, f.deliveries, f.leased INTO v_events, v_deliveries, v_leased
    FROM {{schema}}.fan_out(p_fan_out, p_owner, p_lease_ms, p_limit, p_max_in_flight, p_max_leased, p_ahead, p_skip) f;
    RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::uuid, NULL::text, NULL::text,
        NULL::timestamptz, NULL::text, NULL::integer, NULL::boolean, NULL::text, NULL::text,
        NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer, NULL::double precision, v_events, v_deliveries;
    -- The leased new deliveries, read back by id (they are this transaction's own rows), with
    -- the columns lease_due answers.
    RETURN QUERY
    SELECT d.id, d.attempt_count, o.event_id, o.event_type, coalesce(o.tenant_id, ''),
           CASE WHEN isfinite(o.created_at) THEN o.created_at END,
           CASE WHEN octet_length(b.text) <= p_max_payload THEN b.text END, octet_length(b.text),
           false, s.id, s.target_url, s.headers::text, s.secret,
           CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,
           coalesce(s.tenant_id, ''), s.timeout_seconds * 1000, s.rate_limit, NULL::bigint, NULL::bigint
    FROM {{schema}}.deliveries d
    JOIN {{schema}}.outbox o ON o.id = d.outbox_id
    JOIN {{schema}}.subscriptions s ON s.id = d.subscription_id
    CROSS JOIN LATERAL (SELECT o.payload::text AS text) b
    WHERE d.id = ANY (v_leased)
    ORDER BY d.id;
    IF (p_sweep OR v_deliveries > cardinality(v_leased)) AND p_limit > cardinality(v_leased) THEN
        RETURN QUERY SELECT l.*, NULL::bigint, NULL::bigint
            FROM {{schema}}.lease_due(p_limit - cardinality(v_leased), p_owner, p_lease_ms, p_max_payload,
                p_max_in_flight, p_max_leased, p_ahead, p_skip) l;
    END IF;
END
$$;
