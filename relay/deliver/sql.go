package deliver

// claimDue leases up to $1 due deliveries to owner $2 for $3 milliseconds and answers
// everything needed to send them; $4 is MaxPayloadBytes, $5 MaxInFlightPerSubscription. The
// claim itself lives in the database (outbox/migrations/0003_claim_function.sql), where it can
// take the cross-replica lock before its snapshot: see the function's comment.
const claimDue = `SELECT * FROM {{schema}}.claim_deliveries($1, $2, $3, $4, $5)`

// recordResults writes a batch of attempt results. Each array holds one element per result.
// The delivery is updated only if this replica still holds the lease for that attempt; the
// attempt row is written whenever the delivery still exists, since the request really was
// made. It answers the number of deliveries updated.
//
// Outcomes: succeeded, retry (pending again after retry_ms), failed, gone (failed; the
// subscription is handled by disableGone).
//
// Endpoint health rides along: $11 lists subscriptions that had a success in this batch
// (their failing_since is cleared), $12 those that had only failures (failing_since is set
// if unset; and if it is older than $13 ms, the subscription is disabled). Both updates
// write only when something changes, so a healthy endpoint costs no subscription write.
// The statement answers the updated delivery count and the subscriptions it disabled, whose
// pending deliveries the caller then cancels (not here: a statement must not update the
// same delivery twice).
const recordResults = `
WITH r AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[], $9::bigint[])
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
    WHERE d.id = ANY ($1::bigint[])
      AND d.id = r.delivery_id
      AND d.attempt_count = r.attempt
      AND d.lease_owner = $10
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
    WHERE id = ANY($11::text[]) AND failing_since IS NOT NULL
), failing AS (
    UPDATE {{schema}}.subscriptions
    SET failing_since = coalesce(failing_since, now()),
        status = CASE WHEN failing_since < now() - $13 * interval '1 millisecond' THEN 'disabled' ELSE status END,
        disabled_reason = CASE WHEN failing_since < now() - $13 * interval '1 millisecond'
            THEN 'every attempt failed since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                 || ' (RELAY_DISABLE_AFTER)'
            ELSE disabled_reason END,
        updated_at = now()
    WHERE id = ANY($12::text[])
      AND deleted_at IS NULL
      AND (failing_since IS NULL OR (failing_since < now() - $13 * interval '1 millisecond' AND status = 'active'))
    RETURNING id, status
)
SELECT (SELECT count(*) FROM upd),
       coalesce((SELECT array_agg(id) FROM failing WHERE status = 'disabled'), '{}')`

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
