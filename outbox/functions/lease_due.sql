-- version: 2
-- The current definition of lease_due, applied with CREATE OR REPLACE after the migrations
-- (outbox/migrate.go) whenever this version is newer than the one the database has: a change
-- to the function is a change to this file and a higher version line.
--
-- lease_due leases up to p_limit due deliveries to p_owner for p_lease_ms and answers what
-- is needed to send them, in one round trip. Rules, all enforced here and so across
-- replicas (claims take turns on an advisory lock taken before the claim's snapshot, so
-- each sees every other replica's latest leases):
--   * a delivery is due when pending, next_attempt_at has come, and no live lease holds it;
--   * only deliveries of active, undeleted subscriptions are sent (a paused one's wait);
--   * a subscription is leased to one replica at a time, so the holder alone keeps
--     "at most p_max_in_flight requests" exact by counting its own;
--   * a subscription holds at most p_max_in_flight leases, or p_max_leased when named in
--     p_ahead (a subscription the replica has seen answer fast: it queues the extra leases
--     and sends at most p_max_in_flight at once);
--   * subscriptions in p_skip are left alone (this replica cannot sign for them: no
--     configured key opens their secret);
--   * for deliveries with an ordering key, only the oldest pending one of each
--     (subscription, key) may be sent;
--   * payloads over p_max_payload bytes are not read (body is null), only their size;
--   * created_at is null when the row's is not finite (written before the outbox's CHECK on it,
--     migration 0006);
--   * a subscription with a rate_limit gets no more leases than its token bucket
--     (rate_buckets) holds whole tokens, and each lease spends one, in this transaction: it
--     is passed over while the bucket holds less than one, so it takes neither a share of
--     the claim nor a lease before it may be sent. The bucket holds at most one second's
--     worth (at least one token) and refills at rate_limit per second;
--   * a subscription with its own timeout_seconds is leased for that much longer than
--     p_lease_ms (the default timeout plus the margin), so the lease outlasts its request.
--     Additive rather than exact so that the function needs no second parameter: a lease
--     a few seconds too long only delays the resending of a dead replica's claim.
--
-- Version 2 answers each delivery's timeout_ms and rate_limit (version 1 did not, and a
-- function's result type cannot be replaced, hence the DROP).
--
-- Indexes it relies on: deliveries_turns_idx and deliveries_ordered_turns_idx (pending
-- deliveries by tenant and subscription), deliveries_leased_idx (live leases).
--
-- Turns. The claim first picks which subscriptions to serve, then leases from them:
--   1. tenants with pending work, starting after turn_of_tenants (wrapping round), at most
--      p_limit of them;
--   2. each of those tenants gets an equal share of p_limit, and gives it to its
--      subscriptions with due work, starting after its turn_in_tenant (wrapping round);
--   3. from those subscriptions, deliveries are taken round-robin: every tenant's first,
--      then every tenant's second, where a tenant's k-th is its subscriptions' first due
--      deliveries in turn order, then their second.
-- So a tenant's new event is claimed by the next claim whatever another tenant's backlog,
-- a subscription's backlog does not delay another subscription's first delivery, and the
-- work of a claim is bounded by p_limit, not by the number of subscriptions.
DROP FUNCTION IF EXISTS {{schema}}.lease_due(integer, text, bigint, integer, integer, integer, text[], text[]);
CREATE OR REPLACE FUNCTION {{schema}}.lease_due(
    p_limit integer, p_owner text, p_lease_ms bigint, p_max_payload integer,
    p_max_in_flight integer, p_max_leased integer, p_ahead text[], p_skip text[])
RETURNS TABLE (
    delivery_id bigint, attempt integer, event_id uuid, event_type text, event_tenant_id text,
    created_at timestamptz, body text, body_size integer, ordered boolean,
    subscription_id text, target_url text, headers text, secret text, previous_secret text,
    subscription_tenant_id text, timeout_ms integer, rate_limit double precision)
LANGUAGE plpgsql VOLATILE
-- Every step is an index lookup by design. On a queue table the statistics are often far
-- from the truth (a fresh database, a burst of thousands of rows before autovacuum
-- analyses): make bench caught the planner scanning every due delivery to update sixteen.
-- One plan for the session: with the default plan_cache_mode PL/pgSQL may plan again on
-- every call, for a plan these settings already fix.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_busy          text[];  -- held by another replica, or no free lease
    v_after_tenant  text;
    v_tenants       text[] := '{}';
    v_tenant        text;
    v_share         integer;
    v_after_sub     text;
    v_sub           text;
    v_found         integer;
    v_visits        integer;
    v_full_circle   boolean;
    v_pass          integer;
    v_pass_subs     text[];
    v_pass_tenants  text[];
    v_pass_unordered boolean[];
    v_pass_ordered  boolean[];
    v_pass_allow    integer[];
    v_sub_allow     integer[] := '{}';
    v_walk_after    text;
    v_walk_upto     text;
    v_walk_visits   integer;
    v_walk_share    integer;
    v_sub_unordered boolean[] := '{}';
    v_sub_ordered   boolean[] := '{}';
    v_pass_last     text;
    v_pass_visits   integer;
    v_pass_found    integer;
    v_subs          text[] := '{}';
    v_sub_tenants   text[] := '{}';
BEGIN
    -- The lock is held until commit, so the commit of a claim alone must not wait for a
    -- disk flush: make bench saw one slow flush hold every claim of every replica for
    -- hundreds of milliseconds. A claim lost in a database crash costs nothing: its leases
    -- and attempt numbers are gone with it, and the deliveries are claimed again. (Called
    -- from record_and_lease_due, whose record must be durable, this is undone there.)
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtext('outbox-relay claim ' || '{{schema}}'));
    -- A null list (a driver's nil slice) names nothing.
    p_ahead := coalesce(p_ahead, '{}');
    p_skip := coalesce(p_skip, '{}');

    SELECT coalesce(array_agg(l.subscription_id), '{}') INTO v_busy
    FROM (
        SELECT x.subscription_id, count(*) AS n, bool_or(x.lease_owner <> p_owner) AS other
        FROM {{schema}}.deliveries x
        WHERE x.lease_owner IS NOT NULL AND x.lease_until > now()
        GROUP BY x.subscription_id
    ) l
    WHERE l.other
       OR l.n >= CASE WHEN l.subscription_id = ANY (p_ahead) THEN p_max_leased ELSE p_max_in_flight END;

    -- 1. Tenants with pending work, after the last one served, round once: from after it
    --    to the last, then from the first up to and including it. Each step is one probe of
    --    each index ('' is a tenant too: those without one).
    SELECT t.after_tenant INTO v_after_tenant FROM {{schema}}.turn_of_tenants t WHERE t.only_row; -- by its key
    FOR v_pass IN 1..2 LOOP
        IF v_pass = 1 AND v_after_tenant IS NULL THEN
            CONTINUE;
        END IF;
        WITH RECURSIVE tw AS (
            SELECT f.tenant_key, 1 AS n
            -- OFFSET 0 keeps the anchor a subquery, evaluated once (not once per use).
            FROM (SELECT least(
                -- Four anchors, two of which run (v_pass decides): each keeps its index.
                (SELECT d.tenant_key FROM {{schema}}.deliveries d
                 WHERE v_pass = 2 AND d.status = 'pending' AND d.ordering_key IS NULL
                 ORDER BY d.tenant_key LIMIT 1),
                (SELECT d.tenant_key FROM {{schema}}.deliveries d
                 WHERE v_pass = 2 AND d.status = 'pending' AND d.ordering_key IS NOT NULL
                 ORDER BY d.tenant_key LIMIT 1),
                (SELECT d.tenant_key FROM {{schema}}.deliveries d
                 WHERE v_pass = 1 AND d.status = 'pending' AND d.ordering_key IS NULL AND d.tenant_key > v_after_tenant
                 ORDER BY d.tenant_key LIMIT 1),
                (SELECT d.tenant_key FROM {{schema}}.deliveries d
                 WHERE v_pass = 1 AND d.status = 'pending' AND d.ordering_key IS NOT NULL AND d.tenant_key > v_after_tenant
                 ORDER BY d.tenant_key LIMIT 1)) AS tenant_key OFFSET 0) f
            WHERE f.tenant_key IS NOT NULL
              AND (v_pass = 1 OR v_after_tenant IS NULL OR f.tenant_key <= v_after_tenant)
            UNION ALL
            SELECT nx.tenant_key, tw.n + 1
            FROM tw
            CROSS JOIN LATERAL (SELECT least(
                (SELECT d.tenant_key FROM {{schema}}.deliveries d
                 WHERE d.status = 'pending' AND d.ordering_key IS NULL AND d.tenant_key > tw.tenant_key
                 ORDER BY d.tenant_key LIMIT 1),
                (SELECT d.tenant_key FROM {{schema}}.deliveries d
                 WHERE d.status = 'pending' AND d.ordering_key IS NOT NULL AND d.tenant_key > tw.tenant_key
                 ORDER BY d.tenant_key LIMIT 1)) AS tenant_key OFFSET 0) nx
            WHERE nx.tenant_key IS NOT NULL AND tw.n < p_limit - cardinality(v_tenants)
              AND (v_pass = 1 OR v_after_tenant IS NULL OR nx.tenant_key <= v_after_tenant)
        )
        SELECT coalesce(array_agg(tw.tenant_key ORDER BY tw.n), '{}') INTO v_pass_tenants FROM tw;
        v_tenants := v_tenants || v_pass_tenants;
        EXIT WHEN cardinality(v_tenants) >= p_limit;
    END LOOP;
    v_tenant := v_tenants[cardinality(v_tenants)];
    IF cardinality(v_tenants) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(v_tenants) >= p_limit THEN
        -- Stopped before serving every tenant: the next claim starts after the last.
        INSERT INTO {{schema}}.turn_of_tenants AS t (after_tenant) VALUES (v_tenant)
        ON CONFLICT (only_row) DO UPDATE SET after_tenant = excluded.after_tenant;
    END IF;

    -- 2. An equal share of the claim for each tenant, given to its subscriptions in turn:
    --    from after the last one served to the end, then from the start round to it.
    --    Subscriptions with only later retries, paused or busy are passed over, but a
    --    claim stops looking after a few times its share.
    v_share := greatest(1, (p_limit + cardinality(v_tenants) - 1) / cardinality(v_tenants));
    FOREACH v_tenant IN ARRAY v_tenants LOOP
        v_after_sub := NULL;
        SELECT t.after_subscription INTO v_after_sub FROM {{schema}}.turn_in_tenant t WHERE t.tenant_key = v_tenant;
        v_visits := 0;
        v_found := 0;
        v_full_circle := false;
        v_sub := NULL;
        FOR v_pass IN 1..2 LOOP
            IF v_pass = 1 AND v_after_sub IS NULL THEN
                CONTINUE; -- no turn yet: the second pass starts at the start and goes round
            END IF;
            v_walk_after := CASE WHEN v_pass = 1 THEN v_after_sub END;
            v_walk_upto := CASE WHEN v_pass = 2 THEN v_after_sub END;
            v_walk_visits := 4 * v_share + 16 - v_visits;
            v_walk_share := v_share - v_found;
            -- The walk: from after v_walk_after (after '' when null: every id is longer),
            -- up to and including v_walk_upto (to the last when null), one probe of each
            -- index per subscription; it stops after v_walk_visits subscriptions or
            -- v_walk_share that may be claimed for now. Visit 0 is the starting point.
            WITH RECURSIVE walk AS (
                -- From after v_walk_after, or after '' (every id is longer): visit 0 is no visit.
                SELECT coalesce(v_walk_after, '') AS subscription_id, false AS ok, 0 AS visit, 0 AS found,
                       false AS has_unordered, false AS has_ordered, NULL::integer AS allow
                UNION ALL
                SELECT n.subscription_id, q.ok, w.visit + 1, w.found + q.ok::integer,
                       coalesce(u.subscription_id = n.subscription_id, false), coalesce(o.subscription_id = n.subscription_id, false),
                       sa.allow
                FROM walk w
                LEFT JOIN LATERAL (
                    SELECT d.subscription_id, d.next_attempt_at FROM {{schema}}.deliveries d
                    WHERE d.status = 'pending' AND d.ordering_key IS NULL
                      AND d.tenant_key = v_tenant AND d.subscription_id > w.subscription_id
                    ORDER BY d.subscription_id, d.next_attempt_at LIMIT 1
                ) u ON true
                LEFT JOIN LATERAL (
                    SELECT d.subscription_id FROM {{schema}}.deliveries d
                    WHERE d.status = 'pending' AND d.ordering_key IS NOT NULL
                      AND d.tenant_key = v_tenant AND d.subscription_id > w.subscription_id
                    ORDER BY d.subscription_id LIMIT 1
                ) o ON true
                CROSS JOIN LATERAL (SELECT least(u.subscription_id, o.subscription_id) AS subscription_id) n
                -- The subscription, looked up by id alone (with its status in the condition
                -- the planner may walk subscriptions_active_idx), and for a rate-limited one
                -- the whole tokens its bucket holds now (its row read only then).
                LEFT JOIN LATERAL (
                    SELECT s.status = 'active' AND s.deleted_at IS NULL AS active,
                           CASE WHEN s.rate_limit IS NOT NULL THEN floor(least(greatest(1, s.rate_limit),
                               coalesce((SELECT b.tokens + s.rate_limit * extract(epoch FROM now() - b.at)::float8
                                         FROM {{schema}}.rate_buckets b
                                         WHERE s.rate_limit IS NOT NULL AND b.subscription_id = s.id),
                                        greatest(1, s.rate_limit))))::integer END AS allow
                    FROM {{schema}}.subscriptions s WHERE s.id = n.subscription_id
                ) sa ON true
                CROSS JOIN LATERAL (
                    -- May be claimed for now: an unordered delivery due or an ordered line pending
                    -- (its heads decide), active, neither busy nor skipped, and with a token
                    -- when rate-limited.
                    SELECT ((u.subscription_id = n.subscription_id AND u.next_attempt_at <= now())
                            OR o.subscription_id = n.subscription_id)
                       AND NOT n.subscription_id = ANY (v_busy) AND NOT n.subscription_id = ANY (p_skip)
                       AND coalesce(sa.active, false) AND coalesce(sa.allow >= 1, true) AS ok
                ) q
                WHERE n.subscription_id IS NOT NULL
                  AND w.visit < v_walk_visits AND w.found < v_walk_share
                  AND (v_walk_upto IS NULL OR n.subscription_id <= v_walk_upto)
            )
            SELECT coalesce(array_agg(w.subscription_id ORDER BY w.visit) FILTER (WHERE w.ok), '{}'),
                   coalesce(array_agg(w.has_unordered ORDER BY w.visit) FILTER (WHERE w.ok), '{}'),
                   coalesce(array_agg(w.has_ordered ORDER BY w.visit) FILTER (WHERE w.ok), '{}'),
                   coalesce(array_agg(w.allow ORDER BY w.visit) FILTER (WHERE w.ok), '{}'),
                   (array_agg(w.subscription_id ORDER BY w.visit DESC))[1],
                   count(*), count(*) FILTER (WHERE w.ok)
            INTO v_pass_subs, v_pass_unordered, v_pass_ordered, v_pass_allow, v_pass_last, v_pass_visits, v_pass_found
            FROM walk w WHERE w.visit > 0;
            v_subs := v_subs || v_pass_subs;
            v_sub_unordered := v_sub_unordered || v_pass_unordered;
            v_sub_ordered := v_sub_ordered || v_pass_ordered;
            v_sub_allow := v_sub_allow || v_pass_allow;
            v_sub_tenants := v_sub_tenants || array_fill(v_tenant, ARRAY[cardinality(v_pass_subs)]);
            v_sub := coalesce(v_pass_last, v_sub);
            v_visits := v_visits + v_pass_visits;
            v_found := v_found + v_pass_found;
            -- Stopped by a cap: the next claim goes on from here.
            EXIT WHEN v_found >= v_share OR v_visits >= 4 * v_share + 16;
            -- Otherwise this pass ran out of subscriptions: round once the second.
            v_full_circle := v_pass = 2;
        END LOOP;
        IF NOT v_full_circle AND v_sub IS NOT NULL THEN
            INSERT INTO {{schema}}.turn_in_tenant AS t (tenant_key, after_subscription) VALUES (v_tenant, v_sub)
            ON CONFLICT (tenant_key) DO UPDATE SET after_subscription = excluded.after_subscription;
        END IF;
    END LOOP;
    IF cardinality(v_subs) = 0 THEN
        RETURN;
    END IF;

    -- 3. Lease from the chosen subscriptions, round-robin between tenants, then between a
    --    tenant's subscriptions. A rate-limited subscription gets no more than its whole
    --    tokens (allow), and its bucket is charged for what it got.
    RETURN QUERY
    WITH chosen AS (
        SELECT c.id, c.tenant_key, c.has_unordered, c.has_ordered, c.allow, c.turn
        FROM unnest(v_subs, v_sub_tenants, v_sub_unordered, v_sub_ordered, v_sub_allow)
             WITH ORDINALITY AS c(id, tenant_key, has_unordered, has_ordered, allow, turn)
    ), leased AS (
        SELECT x.subscription_id, count(*) AS n
        FROM {{schema}}.deliveries x
        WHERE x.lease_owner IS NOT NULL AND x.lease_until > now() AND x.subscription_id = ANY (v_subs)
        GROUP BY x.subscription_id
    ), open_subs AS (
        SELECT c.id, c.tenant_key, c.turn, c.has_unordered, c.has_ordered,
               least(CASE WHEN c.id = ANY (p_ahead) THEN p_max_leased ELSE p_max_in_flight END
                     - coalesce(l.n, 0), coalesce(c.allow, p_max_leased)) AS free
        FROM chosen c
        LEFT JOIN leased l ON l.subscription_id = c.id
    ), unordered AS (
        SELECT c.id, c.subscription_id, c.next_attempt_at, s.free, s.tenant_key, s.turn
        FROM open_subs s
        CROSS JOIN LATERAL (
            SELECT d.id, d.subscription_id, d.next_attempt_at
            FROM {{schema}}.deliveries d
            WHERE d.tenant_key = s.tenant_key AND d.subscription_id = s.id
              AND d.status = 'pending' AND d.ordering_key IS NULL
              AND d.next_attempt_at <= now()
              AND (d.lease_until IS NULL OR d.lease_until <= now())
            ORDER BY d.next_attempt_at, d.id
            LIMIT greatest(0, least(s.free, p_limit))
        ) c
        WHERE s.has_unordered
    ), heads AS (
        -- The oldest pending delivery of each ordering key: a skip scan, one probe per key.
        SELECT h.id, h.subscription_id, h.next_attempt_at, s.free, s.tenant_key, s.turn
        FROM open_subs s
        CROSS JOIN LATERAL (
            WITH RECURSIVE line AS (
                (SELECT d.ordering_key, d.id, d.subscription_id, d.next_attempt_at, d.lease_until
                 FROM {{schema}}.deliveries d
                 WHERE d.tenant_key = s.tenant_key AND d.subscription_id = s.id
                   AND d.status = 'pending' AND d.ordering_key IS NOT NULL
                 ORDER BY d.ordering_key, d.outbox_id
                 LIMIT 1)
                UNION ALL
                SELECT n.ordering_key, n.id, n.subscription_id, n.next_attempt_at, n.lease_until
                FROM line
                CROSS JOIN LATERAL (
                    SELECT d.ordering_key, d.id, d.subscription_id, d.next_attempt_at, d.lease_until
                    FROM {{schema}}.deliveries d
                    WHERE d.tenant_key = s.tenant_key AND d.subscription_id = s.id
                      AND d.status = 'pending' AND d.ordering_key IS NOT NULL
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
        WHERE s.free > 0 AND s.has_ordered
    ), candidates AS (
        SELECT * FROM unordered
        UNION ALL
        SELECT * FROM heads
    ), slotted AS (
        SELECT c.id, c.tenant_key, c.turn, c.free,
               row_number() OVER (PARTITION BY c.subscription_id ORDER BY c.next_attempt_at, c.id) AS slot
        FROM candidates c
    ), ranked AS (
        SELECT s.id, s.turn,
               row_number() OVER (PARTITION BY s.tenant_key ORDER BY s.slot, s.turn) AS tenant_slot
        FROM slotted s
        WHERE s.slot <= s.free
    ), picked AS (
        SELECT r.id FROM ranked r ORDER BY r.tenant_slot, r.turn LIMIT p_limit
    ), leased_now AS (
    UPDATE {{schema}}.deliveries d
    SET attempt_count = d.attempt_count + 1,
        lease_owner = p_owner,
        lease_until = now() + (p_lease_ms + coalesce(s.timeout_seconds, 0) * 1000) * interval '1 millisecond',
        updated_at = now()
    FROM {{schema}}.outbox o, {{schema}}.subscriptions s,
         LATERAL (SELECT o.payload::text AS text) b
    -- The picked ids as an array: a primary-key lookup.
    WHERE d.id = ANY (ARRAY(SELECT picked.id FROM picked))
      AND o.id = d.outbox_id AND s.id = d.subscription_id
      -- Re-checked on the row as it is now: another writer (a cancel, a record) may have
      -- changed it since the candidates were read. As one "IS TRUE" expression, which no
      -- index can answer: given the due-time check on its own, the planner walked
      -- deliveries_turns_idx instead of looking the picked ids up.
      AND (d.status = 'pending' AND d.next_attempt_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until <= now())) IS TRUE
    RETURNING d.id AS l_id, d.attempt_count AS l_attempt, o.event_id AS l_event_id, o.event_type AS l_event_type,
              coalesce(o.tenant_id, '') AS l_event_tenant,
              CASE WHEN isfinite(o.created_at) THEN o.created_at END AS l_created_at,
              CASE WHEN octet_length(b.text) <= p_max_payload THEN b.text END AS l_body, octet_length(b.text) AS l_size,
              d.ordering_key IS NOT NULL AS l_ordered, s.id AS l_sub, s.target_url AS l_url, s.headers::text AS l_headers,
              s.secret AS l_secret,
              CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END AS l_previous,
              coalesce(s.tenant_id, '') AS l_sub_tenant, s.timeout_seconds * 1000 AS l_timeout_ms, s.rate_limit AS l_rate
    ), spent AS (
        -- Rate-limited subscriptions pay a token per lease: the bucket as it is now (as
        -- the walk read it: only claims write it, and they hold the claim lock), less what
        -- was leased. Nothing to do, and no row read, for unlimited ones.
        INSERT INTO {{schema}}.rate_buckets AS rb (subscription_id, tokens, at)
        SELECT c.id, least(greatest(1, u.rate), c.allow_exact) - u.n, now()
        FROM (SELECT l.l_sub AS sub, min(l.l_rate) AS rate, count(*) AS n
              FROM leased_now l WHERE l.l_rate IS NOT NULL GROUP BY l.l_sub) u
        CROSS JOIN LATERAL (
            SELECT u.sub AS id, coalesce((SELECT b.tokens + u.rate * extract(epoch FROM now() - b.at)::float8
                                          FROM {{schema}}.rate_buckets b WHERE b.subscription_id = u.sub),
                                         greatest(1, u.rate)) AS allow_exact
        ) c
        ON CONFLICT (subscription_id) DO UPDATE SET tokens = excluded.tokens, at = excluded.at
    )
    SELECT l.l_id, l.l_attempt, l.l_event_id, l.l_event_type, l.l_event_tenant, l.l_created_at, l.l_body, l.l_size,
           l.l_ordered, l.l_sub, l.l_url, l.l_headers, l.l_secret, l.l_previous, l.l_sub_tenant, l.l_timeout_ms, l.l_rate
    FROM leased_now l;
END
$$;
