-- version: 2
-- The current definition of fan_out, applied with CREATE OR REPLACE after the migrations
-- (outbox/migrate.go) whenever this version is newer than the one the database has: a change
-- to the function is a change to this file and a higher version line.
--
-- fan_out claims up to p_limit undispatched outbox rows, marks them and inserts their
-- deliveries, all in one statement, and answers how many events it claimed and how many
-- deliveries it created. claim_and_fan_out (the dispatcher) and fan_out_and_lease_due (a
-- claim after a notification) are made of it.
--
-- With p_lease_max > 0 it also leases up to p_lease_max of the new deliveries to p_owner as
-- it inserts them (attempt 1, lease_until now + p_lease_ms), and answers their ids in
-- leased: a new event goes to its receivers without a second write of each delivery. The
-- rules are lease_due's (whose lock it takes first, so that it sees every claim's leases):
-- a subscription held by another replica, or in p_skip, gets none; a subscription gets no
-- more than its free leases (p_max_in_flight, or p_max_leased when in p_ahead, less those
-- it holds). Deliveries with an ordering key are never leased here: the oldest of its line
-- goes first, which lease_due decides; nor are those of a subscription with a rate_limit:
-- its token bucket is lease_due's to read and charge. Those left unleased are lease_due's as
-- usual. A subscription with its own timeout_seconds is leased that much longer (as in
-- lease_due).
--
-- "*" matches every event but the relay's own operational events (delivery.failed,
-- subscription.disabled): those go only to subscriptions that name them (or a prefix of
-- them), so that an endpoint subscribed to everything is not sent reports about itself.
--
-- The commit does not wait for the WAL flush (synchronous_commit off for this transaction
-- only): a flush that stalls for a moment would otherwise hold every new event back. A
-- fan-out lost in a database crash is redone: its outbox rows are undispatched again and
-- ON CONFLICT keeps a delivery that did survive from being doubled; its leases and attempt
-- numbers are lost with it, as any claim's. A later record, which does wait for the flush,
-- makes every fan-out before it durable too.
--
-- The data-modifying CTEs run even though the final SELECT only counts them. ORDER BY on the
-- insert keeps delivery ids in outbox order, which the deliverer's claim order relies on.
CREATE OR REPLACE FUNCTION {{schema}}.fan_out(
    p_limit integer, p_owner text, p_lease_ms bigint, p_lease_max integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[], p_skip text[],
    OUT events bigint, OUT deliveries bigint, OUT leased bigint[])
LANGUAGE plpgsql VOLATILE
-- Every step is an index lookup by design, whatever the statistics say: a plan made while
-- the tables were nearly empty (a fresh database, before autovacuum's first ANALYZE) would
-- otherwise be kept for the server session. make bench caught exactly that: marking the
-- claimed outbox rows, and fan_out_and_lease_due's read-back of the leased deliveries,
-- scanned the whole of outbox and deliveries, which grew with every event, and made the
-- notification's claim slower than the one it replaced.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
PERFORM set_config('synchronous_commit', 'off', true);
IF p_lease_max > 0 THEN
    PERFORM pg_advisory_xact_lock(hashtext('outbox-relay claim ' || '{{schema}}'));
END IF;
p_ahead := coalesce(p_ahead, '{}');
p_skip := coalesce(p_skip, '{}');
WITH claimed AS (
    SELECT id, event_id, event_type, tenant_id, payload, ordering_key
    FROM {{schema}}.outbox
    WHERE dispatched_at IS NULL
    ORDER BY id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE {{schema}}.outbox o
    SET dispatched_at = now()
    FROM claimed c
    WHERE o.id = c.id
    RETURNING o.id
), matched AS (
    SELECT c.event_id, c.id AS outbox_id, s.id AS subscription_id, coalesce(s.tenant_id, '') AS tenant_key,
           CASE WHEN s.ordered THEN c.ordering_key END AS ordering_key,
           s.rate_limit IS NOT NULL AS limited, coalesce(s.timeout_seconds, 0) AS timeout_s,
           row_number() OVER (PARTITION BY s.id ORDER BY c.id) AS nth
    FROM claimed c
    JOIN {{schema}}.subscriptions s
      ON s.status = 'active'
     AND s.deleted_at IS NULL
     AND (s.tenant_id IS NULL OR s.tenant_id = c.tenant_id)
     AND (s.filter IS NULL OR c.payload @> s.filter)
     AND EXISTS (
         SELECT 1 FROM unnest(s.event_types) AS p(pattern)
         WHERE (p.pattern = '*' AND c.event_type NOT IN ('delivery.failed', 'subscription.disabled'))
            OR p.pattern = c.event_type
            OR (right(p.pattern, 2) = '.*' AND starts_with(c.event_type, left(p.pattern, -1)))
     )
), held AS (
    -- Live leases of the matched subscriptions (deliveries_leased_idx); none are read when
    -- nothing is to be leased.
    SELECT x.subscription_id, count(*) AS n, bool_or(x.lease_owner <> p_owner) AS other
    FROM {{schema}}.deliveries x
    WHERE p_lease_max > 0 AND x.lease_owner IS NOT NULL AND x.lease_until > now()
      AND x.subscription_id IN (SELECT m.subscription_id FROM matched m)
    GROUP BY x.subscription_id
), may AS (
    SELECT m.*,
           p_lease_max > 0 AND m.ordering_key IS NULL AND NOT m.limited AND NOT m.subscription_id = ANY (p_skip)
           AND NOT coalesce(h.other, false)
           AND m.nth <= CASE WHEN m.subscription_id = ANY (p_ahead) THEN p_max_leased ELSE p_max_in_flight END
                        - coalesce(h.n, 0) AS may
    FROM matched m LEFT JOIN held h ON h.subscription_id = m.subscription_id
), picked AS (
    -- Within p_lease_max: every subscription's first, then every one's second, ...
    SELECT z.*, z.may AND row_number() OVER (PARTITION BY z.may ORDER BY z.nth, z.outbox_id, z.subscription_id) <= p_lease_max AS lease
    FROM may z
), fanned AS (
    INSERT INTO {{schema}}.deliveries AS d (event_id, outbox_id, subscription_id, tenant_key, ordering_key,
        next_attempt_at, attempt_count, lease_owner, lease_until)
    SELECT p.event_id, p.outbox_id, p.subscription_id, p.tenant_key, p.ordering_key, now(),
           CASE WHEN p.lease THEN 1 ELSE 0 END, CASE WHEN p.lease THEN p_owner END,
           CASE WHEN p.lease THEN now() + (p_lease_ms + p.timeout_s * 1000) * interval '1 millisecond' END
    FROM picked p
    ORDER BY p.outbox_id, p.subscription_id
    ON CONFLICT (event_id, subscription_id) DO NOTHING
    RETURNING d.id, d.lease_owner IS NOT NULL AS leased
)
SELECT (SELECT count(*) FROM marked), count(*), coalesce(array_agg(f.id ORDER BY f.id) FILTER (WHERE f.leased), '{}')
INTO events, deliveries, leased
FROM fanned f;
END
$$;
