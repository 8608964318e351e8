-- version: 2
-- The current definition of record_and_lease_due, applied with CREATE OR REPLACE after the migrations
-- (outbox/migrate.go) whenever this version is newer than the one the database has: a change
-- to the function is a change to this file and a higher version line.
--
-- record_and_lease_due records a batch of results as record_attempts does, then leases as
-- lease_due does (nothing when p_limit is 0), in one round trip. The lease sees the leases
-- the record just ended (same transaction, fresh snapshot).
--
-- Version 2 answers timeout_ms and rate_limit, as lease_due 2 does; a function's result
-- type cannot be replaced, hence the DROP.
DROP FUNCTION IF EXISTS {{schema}}.record_and_lease_due(bigint[], integer[], timestamptz[], integer[], integer[], text[], text[], text[], bigint[],
    text, text[], text[], bigint, integer, bigint, integer, integer, integer, text[], text[]);
CREATE OR REPLACE FUNCTION {{schema}}.record_and_lease_due(
    p_ids bigint[], p_attempts integer[], p_started timestamptz[], p_durations integer[],
    p_statuses integer[], p_errors text[], p_responses text[], p_outcomes text[], p_delays bigint[],
    p_owner text, p_healthy text[], p_failing text[], p_disable_after_ms bigint,
    p_limit integer, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[], p_skip text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text, timeout_ms integer, rate_limit double precision)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- The record must survive a crash: the session's setting, restored after the lease.
    v_sync text := current_setting('synchronous_commit');
BEGIN
    PERFORM {{schema}}.record_attempts(p_ids, p_attempts, p_started, p_durations, p_statuses, p_errors,
        p_responses, p_outcomes, p_delays, p_owner, p_healthy, p_failing, p_disable_after_ms);
    IF p_limit > 0 THEN
        RETURN QUERY SELECT * FROM {{schema}}.lease_due(p_limit, p_owner, p_lease_ms, p_max_payload,
            p_max_in_flight, p_max_leased, p_ahead, p_skip);
        PERFORM set_config('synchronous_commit', v_sync, true);
    END IF;
END
$$;
