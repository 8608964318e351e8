package deliver

// claimDue leases up to $1 due deliveries to owner $2 for $3 milliseconds and answers
// everything needed to send them; $4 is MaxPayloadBytes, $5 MaxInFlightPerSubscription, $6
// MaxLeasedPerSubscription and $7 the subscriptions that may lease that many (fast lanes). The claim
// lives in the database (outbox/migrations/0005_lease_ahead.sql), where it can take the
// cross-replica lock before its snapshot: see the function's comment.
const claimDue = `SELECT * FROM {{schema}}.lease_deliveries($1, $2, $3, $4, $5, $6, $7)`

// recordResults writes a batch of results: see record_attempts in
// outbox/migrations/0003_claim_function.sql. $1 to $9 are the per-result arrays, $10 the
// owner, $11 and $12 the healthy and failing subscriptions, $13 RELAY_DISABLE_AFTER in ms.
const recordResults = `SELECT updated, disabled FROM {{schema}}.record_attempts($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`

// recordAndClaim records a batch as recordResults does, then claims up to $14 deliveries as
// claimDue does ($15 lease ms, $16 MaxPayloadBytes, $17 MaxInFlightPerSubscription, $18
// MaxLeasedPerSubscription, $19 fast lanes), in one round trip.
const recordAndClaim = `SELECT * FROM {{schema}}.record_and_lease($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`

// disableGone disables the subscriptions in $1 (they answered 410 Gone) with reason $2 and
// cancels their pending deliveries. For subscriptions already disabled (by the failure
// window) it only cancels.
const disableGone = `
WITH dis AS (
    UPDATE {{schema}}.subscriptions
    SET status = 'disabled', disabled_reason = $2, updated_at = now()
    WHERE id = ANY($1::text[]) AND status <> 'disabled' AND deleted_at IS NULL
    RETURNING id
)
UPDATE {{schema}}.deliveries d
SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
WHERE d.subscription_id = ANY($1::text[]) AND d.status = 'pending'`

// releaseClaims gives back claims this replica took but did not use: the lease ends now and
// the attempt number is returned. $1 ids, $2 their claimed attempt numbers, $3 owner.
const releaseClaims = `
UPDATE {{schema}}.deliveries d
SET attempt_count = d.attempt_count - 1, lease_owner = NULL, lease_until = NULL, updated_at = now()
FROM unnest($1::bigint[], $2::int[]) AS r(id, attempt)
WHERE d.id = r.id AND d.attempt_count = r.attempt AND d.lease_owner = $3 AND d.status = 'pending'`

// insertOperationalEvents publishes the relay's own events into the outbox, where they are
// fanned out like any other. Their IDs are derived from what they report ($1), so writing
// the same batch twice (a retried record) publishes each once.
const insertOperationalEvents = `
INSERT INTO {{schema}}.outbox (event_id, event_type, tenant_id, payload)
SELECT md5(e.key)::uuid, e.event_type, nullif(e.tenant_id, ''), e.payload::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS e(key, event_type, tenant_id, payload)
ON CONFLICT (event_id) DO NOTHING`
