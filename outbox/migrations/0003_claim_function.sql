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
