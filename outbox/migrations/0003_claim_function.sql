-- claim_deliveries leases up to p_limit due deliveries to p_owner for p_lease_ms and answers
-- what is needed to send them, in one round trip.
--
-- It is a function so that the advisory lock it takes first is held before the claim's own
-- snapshot is taken (each statement of a volatile PL/pgSQL function gets a fresh snapshot):
-- claims of all replicas take turns, and the in-flight count per subscription each one reads
-- includes every other replica's latest claim. That makes p_max_in_flight exact across
-- replicas. A claim takes a few milliseconds, so the turns cost little.
--
-- Rules, all enforced here and so across replicas:
--   * a delivery is due when pending, next_attempt_at has come, and no live lease holds it;
--   * only deliveries of active, undeleted subscriptions are sent (a paused one's wait);
--   * at most p_max_in_flight leased deliveries per subscription: subscriptions at the cap are
--     skipped in the scan, and the rest get only their free slots;
--   * for deliveries with an ordering key, only the oldest pending one of each
--     (subscription, key) may be sent;
--   * payloads over p_max_payload bytes are not read (body is null), only their size.
CREATE FUNCTION {{schema}}.claim_deliveries(
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer, p_max_in_flight integer)
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('outbox-relay claim ' || '{{schema}}'));
    RETURN QUERY
    WITH inflight AS (
        SELECT x.subscription_id, count(*) AS n
        FROM {{schema}}.deliveries x
        WHERE x.status = 'pending' AND x.lease_until > now()
        GROUP BY x.subscription_id
    ), candidates AS (
        SELECT d.id, d.subscription_id, d.next_attempt_at
        FROM {{schema}}.deliveries d
        JOIN {{schema}}.subscriptions s ON s.id = d.subscription_id
        WHERE d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until <= now())
          AND s.status = 'active' AND s.deleted_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM inflight i WHERE i.subscription_id = d.subscription_id AND i.n >= p_max_in_flight)
          AND (d.ordering_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM {{schema}}.deliveries p
              WHERE p.subscription_id = d.subscription_id
                AND p.ordering_key = d.ordering_key
                AND p.status = 'pending'
                AND p.outbox_id < d.outbox_id))
        ORDER BY d.next_attempt_at, d.id
        LIMIT p_limit * 2
        FOR UPDATE OF d SKIP LOCKED
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
    FROM picked, {{schema}}.outbox o, {{schema}}.subscriptions s,
         LATERAL (SELECT o.payload::text AS text) b
    WHERE d.id = picked.id AND o.id = d.outbox_id AND s.id = d.subscription_id
    RETURNING d.id, d.attempt_count, o.event_id, o.event_type, coalesce(o.tenant_id, ''), o.created_at,
              CASE WHEN octet_length(b.text) <= p_max_payload THEN b.text END, octet_length(b.text),
              d.ordering_key IS NOT NULL, s.id, s.target_url, s.headers::text, s.secret,
              CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,
              coalesce(s.tenant_id, '');
END
$$;
