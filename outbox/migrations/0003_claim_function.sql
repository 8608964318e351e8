-- The functions this migration created are history: their current definitions live in
-- outbox/functions/, one file each, applied after the migrations.
--
-- claim_deliveries leases up to p_limit due deliveries to p_owner for p_lease_ms and answers
-- what is needed to send them, in one round trip.
--
-- It is a function so that the advisory lock it takes first is held before the claim's own
-- snapshot is taken (each statement of a volatile PL/pgSQL function gets a fresh snapshot):
-- claims of all replicas take turns, and the in-flight count per subscription each one reads
-- includes every other replica's latest claim. That makes p_max_in_flight exact across
-- replicas. A claim takes a millisecond or two, so the turns cost little.
--
-- Rules, all enforced here and so across replicas:
--   * a delivery is due when pending, next_attempt_at has come, and no live lease holds it;
--   * only deliveries of active, undeleted subscriptions are sent (a paused one's wait);
--   * at most p_max_in_flight leased deliveries per subscription;
--   * for deliveries with an ordering key, only the oldest pending one of each
--     (subscription, key) may be sent;
--   * payloads over p_max_payload bytes are not read (body is null), only their size.
--
-- The work of a claim grows with the number of active subscriptions and ordering keys, not
-- with the backlog (make bench showed a time-ordered scan with filters walking a 20,000-row
-- backlog on every claim):
--   * unordered deliveries are taken per subscription with free slots, at most that many, from
--     an index on (subscription_id, next_attempt_at, id) of pending unordered rows;
--   * ordered heads are found by a skip scan over deliveries_ordered_idx, one probe per key;
--   * the in-flight count reads only leased rows, through a partial index: a lease always sets
--     lease_owner and every end of a lease clears it.

CREATE INDEX deliveries_due_by_subscription_idx ON {{schema}}.deliveries (subscription_id, next_attempt_at, id)
    WHERE status = 'pending' AND ordering_key IS NULL;

CREATE INDEX deliveries_leased_idx ON {{schema}}.deliveries (subscription_id)
    WHERE lease_owner IS NOT NULL;

CREATE FUNCTION {{schema}}.claim_deliveries(
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer, p_max_in_flight integer)
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text)
LANGUAGE plpgsql VOLATILE
-- Every step of a claim is an index lookup by design. On a queue table the statistics are
-- often far from the truth (a fresh database, a burst of thousands of rows within a minute,
-- before autovacuum analyses): make bench caught the planner scanning every due delivery to
-- update sixteen. These settings last only while the function runs.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('outbox-relay claim ' || '{{schema}}'));
    RETURN QUERY
    WITH inflight AS (
        SELECT x.subscription_id, count(*) AS n
        FROM {{schema}}.deliveries x
        -- Only the leased-rows index matches this predicate, whatever the statistics say: a
        -- lease is set only on pending rows and cleared when they leave pending.
        WHERE x.lease_owner IS NOT NULL AND x.lease_until > now()
        GROUP BY x.subscription_id
    ), open_subs AS (
        -- Active subscriptions with free in-flight slots, and how many.
        SELECT s.id, p_max_in_flight - coalesce(i.n, 0) AS free
        FROM {{schema}}.subscriptions s
        LEFT JOIN inflight i ON i.subscription_id = s.id
        WHERE s.status = 'active' AND s.deleted_at IS NULL
          AND coalesce(i.n, 0) < p_max_in_flight
    ), unordered AS (
        SELECT c.id, c.subscription_id, c.next_attempt_at
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
        -- For each open subscription, the oldest pending delivery of each ordering key: a
        -- skip scan that probes the ordered index once per key.
        SELECT h.id, h.subscription_id, h.next_attempt_at
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
            SELECT c.id, c.next_attempt_at,
                   row_number() OVER (PARTITION BY c.subscription_id ORDER BY c.next_attempt_at, c.id)
                     + coalesce(i.n, 0) AS slot
            FROM candidates c
            LEFT JOIN inflight i ON i.subscription_id = c.subscription_id
        ) c
        WHERE c.slot <= p_max_in_flight
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
    -- The picked ids as an array: a primary-key lookup.
    WHERE d.id = ANY (ARRAY(SELECT picked.id FROM picked))
      AND o.id = d.outbox_id AND s.id = d.subscription_id
      -- Re-checked on the row as it is now: another writer (a cancel, a record) may have
      -- changed it since the candidates were read.
      AND d.status = 'pending' AND d.next_attempt_at <= now() AND (d.lease_until IS NULL OR d.lease_until <= now())
    RETURNING d.id, d.attempt_count, o.event_id, o.event_type, coalesce(o.tenant_id, ''), o.created_at,
              CASE WHEN octet_length(b.text) <= p_max_payload THEN b.text END, octet_length(b.text),
              d.ordering_key IS NOT NULL, s.id, s.target_url, s.headers::text, s.secret,
              CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,
              coalesce(s.tenant_id, '');
END
$$;

-- record_attempts writes a batch of attempt results (one element per result in each array)
-- and answers how many deliveries it updated and which subscriptions it disabled. A delivery
-- is updated only if p_owner still holds its lease for that attempt; the attempt row is
-- written whenever the delivery still exists, since the request really was made. Outcomes:
-- succeeded, retry (pending again after p_delays ms), failed, gone (failed; the caller
-- disables the subscription). Endpoint health rides along: p_healthy had a success (their
-- failing_since is cleared), p_failing had only failures (failing_since set if unset, and the
-- subscription disabled once it is older than p_disable_after_ms). Both write only when
-- something changes, so a healthy endpoint costs no subscription write.
CREATE FUNCTION {{schema}}.record_attempts(
    p_ids bigint[], p_attempts integer[], p_started timestamptz[], p_durations integer[],
    p_statuses integer[], p_errors text[], p_responses text[], p_outcomes text[], p_delays bigint[],
    p_owner text, p_healthy text[], p_failing text[], p_disable_after_ms bigint,
    OUT updated bigint, OUT disabled text[])
LANGUAGE sql VOLATILE AS $$
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
       coalesce((SELECT array_agg(id) FROM failing WHERE status = 'disabled'), '{}');
$$;

-- record_and_claim records a batch of results as record_attempts does, then claims up to
-- p_limit due deliveries as claim_deliveries does (nothing when p_limit is 0), in one round
-- trip: a wave of requests ends, and the slots it frees are filled by the same call. The
-- claim sees the leases the record just ended (same transaction, fresh snapshot).
CREATE FUNCTION {{schema}}.record_and_claim(
    p_ids bigint[], p_attempts integer[], p_started timestamptz[], p_durations integer[],
    p_statuses integer[], p_errors text[], p_responses text[], p_outcomes text[], p_delays bigint[],
    p_owner text, p_healthy text[], p_failing text[], p_disable_after_ms bigint,
    p_limit integer, p_lease_ms bigint, p_max_payload integer, p_max_in_flight integer)
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM {{schema}}.record_attempts(p_ids, p_attempts, p_started, p_durations, p_statuses, p_errors,
        p_responses, p_outcomes, p_delays, p_owner, p_healthy, p_failing, p_disable_after_ms);
    IF p_limit > 0 THEN
        RETURN QUERY SELECT * FROM {{schema}}.claim_deliveries(p_limit, p_owner, p_lease_ms, p_max_payload, p_max_in_flight);
    END IF;
END
$$;
