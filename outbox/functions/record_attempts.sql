-- version: 1
-- The current definition of record_attempts, applied with CREATE OR REPLACE after the migrations
-- (outbox/migrate.go) whenever this version is newer than the one the database has: a change
-- to the function is a change to this file and a higher version line.
--
-- record_attempts writes a batch of attempt results (one element per result in each array)
-- and answers how many deliveries it updated and which subscriptions it disabled. A delivery
-- is updated only if p_owner still holds its lease for that attempt; the attempt row is
-- written whenever the delivery still exists, since the request really was made. Outcomes:
-- succeeded, retry (pending again after p_delays ms), failed, gone (failed; the caller
-- disables the subscription). Endpoint health rides along: p_healthy had a success (their
-- failing_since is cleared), p_failing had only failures (failing_since set if unset, and the
-- subscription disabled once it is older than p_disable_after_ms). Both write only when
-- something changes, so a healthy endpoint costs no subscription write.
--
-- PL/pgSQL rather than SQL: a LANGUAGE sql function that cannot be inlined (this one writes)
-- is parsed and planned again on every call, which cost a millisecond per record; PL/pgSQL
-- keeps its plans for the session, and with force_generic_plan uses them. Its plans are
-- primary-key lookups, pinned as the claim's are (see lease_due.sql).
CREATE OR REPLACE FUNCTION {{schema}}.record_attempts(
    p_ids bigint[], p_attempts integer[], p_started timestamptz[], p_durations integer[],
    p_statuses integer[], p_errors text[], p_responses text[], p_outcomes text[], p_delays bigint[],
    p_owner text, p_healthy text[], p_failing text[], p_disable_after_ms bigint,
    OUT updated bigint, OUT disabled text[])
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
WITH r AS (
    SELECT *
    FROM unnest(p_ids, p_attempts, p_started, p_durations, p_statuses, p_errors, p_responses, p_outcomes, p_delays)
      AS r(delivery_id, attempt, started_at, duration_ms, status_code, error, response_body, outcome, retry_ms)
), upd AS (
    UPDATE {{schema}}.deliveries d
    SET status = CASE r.outcome WHEN 'succeeded' THEN 'succeeded' WHEN 'retry' THEN 'pending' ELSE 'failed' END,
        next_attempt_at = CASE WHEN r.outcome = 'retry' THEN now() + r.retry_ms * interval '1 millisecond' END,
        lease_owner = NULL,
        lease_until = NULL,
        updated_at = now()
    FROM r
    -- The id list as well as the join: a primary-key lookup whatever the statistics say.
    WHERE d.id = ANY (p_ids)
      AND d.id = r.delivery_id
      AND d.attempt_count = r.attempt
      AND d.lease_owner = p_owner
      AND d.status = 'pending'
    RETURNING d.id
), ins AS (
    INSERT INTO {{schema}}.attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_body)
    SELECT r.delivery_id, r.attempt, r.started_at, r.duration_ms, nullif(r.status_code, 0), nullif(r.error, ''),
           CASE WHEN r.status_code = 0 THEN NULL ELSE r.response_body END
    FROM r
    WHERE EXISTS (SELECT 1 FROM {{schema}}.deliveries d WHERE d.id = r.delivery_id)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
), healthy AS (
    UPDATE {{schema}}.subscriptions
    SET failing_since = NULL
    WHERE id = ANY(p_healthy) AND failing_since IS NOT NULL
), failing AS (
    UPDATE {{schema}}.subscriptions
    SET failing_since = coalesce(failing_since, now()),
        status = CASE WHEN failing_since < now() - p_disable_after_ms * interval '1 millisecond' THEN 'disabled' ELSE status END,
        disabled_reason = CASE WHEN failing_since < now() - p_disable_after_ms * interval '1 millisecond'
            THEN 'every attempt failed since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                 || ' (RELAY_DISABLE_AFTER)'
            ELSE disabled_reason END,
        updated_at = now()
    WHERE id = ANY(p_failing)
      AND deleted_at IS NULL
      AND (failing_since IS NULL OR (failing_since < now() - p_disable_after_ms * interval '1 millisecond' AND status = 'active'))
    RETURNING id, status
)
SELECT (SELECT count(*) FROM upd),
       coalesce((SELECT array_agg(id) FROM failing WHERE status = 'disabled'), '{}')
INTO updated, disabled;
END
$$;
