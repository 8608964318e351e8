-- The functions this migration created are history: their current definitions live in
-- outbox/functions/, one file each, applied after the migrations.
--
-- lease_deliveries is claim_deliveries (0003) for replicas that claim ahead of what they
-- send. It leases up to p_limit due deliveries to p_owner for p_lease_ms and answers what is
-- needed to send them, in one round trip, under the same rules and the same cross-replica
-- lock, with two differences:
--   * a subscription named in p_ahead may hold up to p_max_leased leases, not p_max_in_flight:
--     the replica queues them and keeps at most p_max_in_flight of them on the wire, so it
--     never waits for the database between waves. The replica names the subscriptions it
--     has seen answer fast; any other gets p_max_in_flight;
--   * a subscription is leased to one replica at a time: while another owner holds a live
--     lease on it, it is skipped. That keeps "at most p_max_in_flight requests per
--     subscription" exact across replicas, since only the holder sends and it counts locally.
-- A holder that dies frees its subscriptions when its leases end, as before.
--
-- claim_deliveries and record_and_claim stay for replicas of the previous release while a
-- rolling update runs; a later migration drops them.
CREATE FUNCTION {{schema}}.lease_deliveries(
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text)
LANGUAGE plpgsql VOLATILE
-- As in claim_deliveries: every step is an index lookup, whatever the statistics say. And
-- one plan for the session: with the default plan_cache_mode PL/pgSQL may plan a statement
-- this size again on every call (measured: 0.25 ms of a 0.3 ms record), for a plan that
-- the settings above already fix.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    -- The lock is held until commit, so the commit of a claim alone must not wait for a
    -- disk flush: make bench saw one slow flush hold every claim of every replica for
    -- hundreds of milliseconds. A claim lost in a database crash costs nothing: its leases
    -- and attempt numbers are gone with it, and the deliveries are claimed again. (Called
    -- from record_and_lease, whose record must be durable, this is overridden there.)
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtext('outbox-relay claim ' || '{{schema}}'));
    RETURN QUERY
    WITH leased AS (
        SELECT x.subscription_id, count(*) AS n, bool_or(x.lease_owner <> p_owner) AS other
        FROM {{schema}}.deliveries x
        WHERE x.lease_owner IS NOT NULL AND x.lease_until > now()
        GROUP BY x.subscription_id
    ), open_subs AS (
        -- Active subscriptions no other replica holds, with room for more leases.
        SELECT s.id, f.free
        FROM {{schema}}.subscriptions s
        LEFT JOIN leased l ON l.subscription_id = s.id
        CROSS JOIN LATERAL (
            SELECT CASE WHEN s.id = ANY (p_ahead) THEN p_max_leased ELSE p_max_in_flight END
                   - coalesce(l.n, 0) AS free
        ) f
        WHERE s.status = 'active' AND s.deleted_at IS NULL
          AND NOT coalesce(l.other, false)
          AND f.free > 0
    ), unordered AS (
        SELECT c.id, c.subscription_id, c.next_attempt_at, s.free
        FROM open_subs s
        CROSS JOIN LATERAL (
            SELECT d.id, d.subscription_id, d.next_attempt_at
            FROM {{schema}}.deliveries d
            WHERE d.subscription_id = s.id
              AND d.status = 'pending' AND d.ordering_key IS NULL
              AND d.next_attempt_at <= now()
              AND (d.lease_until IS NULL OR d.lease_until <= now())
            ORDER BY d.next_attempt_at, d.id
            LIMIT least(s.free, p_limit)
        ) c
    ), heads AS (
        -- The oldest pending delivery of each ordering key: a skip scan, one probe per key.
        SELECT h.id, h.subscription_id, h.next_attempt_at, s.free
        FROM open_subs s
        CROSS JOIN LATERAL (
            WITH RECURSIVE line AS (
                (SELECT d.ordering_key, d.id, d.subscription_id, d.next_attempt_at, d.lease_until
                 FROM {{schema}}.deliveries d
                 WHERE d.subscription_id = s.id AND d.status = 'pending' AND d.ordering_key IS NOT NULL
                 ORDER BY d.ordering_key, d.outbox_id
                 LIMIT 1)
                UNION ALL
                SELECT n.ordering_key, n.id, n.subscription_id, n.next_attempt_at, n.lease_until
                FROM line
                CROSS JOIN LATERAL (
                    SELECT d.ordering_key, d.id, d.subscription_id, d.next_attempt_at, d.lease_until
                    FROM {{schema}}.deliveries d
                    WHERE d.subscription_id = s.id AND d.status = 'pending' AND d.ordering_key IS NOT NULL
                      AND d.ordering_key > line.ordering_key
                    ORDER BY d.ordering_key, d.outbox_id
                    LIMIT 1
                ) n
            )
            SELECT line.id, line.subscription_id, line.next_attempt_at
            FROM line
            WHERE line.next_attempt_at <= now()
              AND (line.lease_until IS NULL OR line.lease_until <= now())
        ) h
    ), candidates AS (
        SELECT * FROM unordered
        UNION ALL
        SELECT * FROM heads
    ), picked AS (
        SELECT c.id
        FROM (
            -- free rides along with each candidate: joining open_subs back here let the
            -- planner run every lookup above once per subscription.
            SELECT c.id, c.next_attempt_at, c.free,
                   row_number() OVER (PARTITION BY c.subscription_id ORDER BY c.next_attempt_at, c.id) AS slot
            FROM candidates c
        ) c
        WHERE c.slot <= c.free
        ORDER BY c.next_attempt_at, c.id
        LIMIT p_limit
    )
    UPDATE {{schema}}.deliveries d
    SET attempt_count = d.attempt_count + 1,
        lease_owner = p_owner,
        lease_until = now() + p_lease_ms * interval '1 millisecond',
        updated_at = now()
    FROM {{schema}}.outbox o, {{schema}}.subscriptions s,
         LATERAL (SELECT o.payload::text AS text) b
    WHERE d.id = ANY (ARRAY(SELECT picked.id FROM picked))
      AND o.id = d.outbox_id AND s.id = d.subscription_id
      AND d.status = 'pending' AND d.next_attempt_at <= now() AND (d.lease_until IS NULL OR d.lease_until <= now())
    RETURNING d.id, d.attempt_count, o.event_id, o.event_type, coalesce(o.tenant_id, ''), o.created_at,
              CASE WHEN octet_length(b.text) <= p_max_payload THEN b.text END, octet_length(b.text),
              d.ordering_key IS NOT NULL, s.id, s.target_url, s.headers::text, s.secret,
              CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,
              coalesce(s.tenant_id, '');
END
$$;

-- record_attempts, as in 0003, in PL/pgSQL: a LANGUAGE sql function that cannot be inlined
-- (this one writes) is parsed and planned again on every call, which cost a millisecond per
-- record; PL/pgSQL keeps its plans for the session, and with force_generic_plan uses them
-- (see lease_deliveries). Its plans are index lookups by primary key, pinned as the claim's
-- are.
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


-- record_and_lease records a batch of results as record_attempts does, then leases as
-- lease_deliveries does (nothing when p_limit is 0), in one round trip. The lease sees the
-- leases the record just ended (same transaction, fresh snapshot).
CREATE FUNCTION {{schema}}.record_and_lease(
    p_ids bigint[], p_attempts integer[], p_started timestamptz[], p_durations integer[],
    p_statuses integer[], p_errors text[], p_responses text[], p_outcomes text[], p_delays bigint[],
    p_owner text, p_healthy text[], p_failing text[], p_disable_after_ms bigint,
    p_limit integer, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- The record must survive a crash: the session's setting, restored after the lease.
    v_sync text := current_setting('synchronous_commit');
BEGIN
    PERFORM {{schema}}.record_attempts(p_ids, p_attempts, p_started, p_durations, p_statuses, p_errors,
        p_responses, p_outcomes, p_delays, p_owner, p_healthy, p_failing, p_disable_after_ms);
    IF p_limit > 0 THEN
        RETURN QUERY SELECT * FROM {{schema}}.lease_deliveries(p_limit, p_owner, p_lease_ms, p_max_payload,
            p_max_in_flight, p_max_leased, p_ahead);
        PERFORM set_config('synchronous_commit', v_sync, true);
    END IF;
END
$$;
