-- The indexes of the first claim function. The functions themselves are not created here
-- any more: every function's current definition lives in outbox/functions/, applied after
-- the migrations (claim_deliveries and record_and_claim, the first of them, are gone since
-- 0006). What follows is how the claim worked then.
--
-- claim_deliveries leased up to p_limit due deliveries to p_owner for p_lease_ms and answers
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

-- (functions claim_deliveries, record_attempts, record_and_claim: see outbox/functions/)
