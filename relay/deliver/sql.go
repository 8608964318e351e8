package deliver

// claimDue leases due deliveries and answers everything needed to send them; see
// lease_due in outbox/functions/lease_due.sql for its rules and how claims take
// turns between tenants and subscriptions.
const claimDue = `SELECT * FROM {{schema}}.lease_due(
    p_limit => $1, p_owner => $2, p_lease_ms => $3, p_max_payload => $4,
    p_max_in_flight => $5, p_max_leased => $6, p_ahead => $7, p_skip => $8)`

// fanOutAndClaim fans out up to $1 new outbox rows, leasing their deliveries as it inserts
// them, and with $2 (or when some could not be leased so) claims as claimDue does, up to $3
// in all, in one round trip; its first row carries the fan-out's counts
// (fan_out_and_lease_due in outbox/functions/fan_out_and_lease_due.sql).
const fanOutAndClaim = `SELECT * FROM {{schema}}.fan_out_and_lease_due(p_fan_out => $1, p_sweep => $2,
    p_limit => $3, p_owner => $4, p_lease_ms => $5, p_max_payload => $6,
    p_max_in_flight => $7, p_max_leased => $8, p_ahead => $9, p_skip => $10)`

// recordResults writes a batch of results: see record_attempts in
// outbox/functions/record_attempts.sql. It answers how many deliveries it updated and
// which subscriptions it disabled (RELAY_DISABLE_AFTER).
const recordResults = `SELECT updated, disabled FROM {{schema}}.record_attempts(
    p_ids => $1, p_attempts => $2, p_started => $3, p_durations => $4, p_statuses => $5,
    p_errors => $6, p_responses => $7, p_outcomes => $8, p_delays => $9,
    p_owner => $10, p_healthy => $11, p_failing => $12, p_disable_after_ms => $13)`

// recordAndClaim records a batch as recordResults does, then claims as claimDue does, in
// one round trip (record_and_lease_due).
const recordAndClaim = `SELECT * FROM {{schema}}.record_and_lease_due(
    p_ids => $1, p_attempts => $2, p_started => $3, p_durations => $4, p_statuses => $5,
    p_errors => $6, p_responses => $7, p_outcomes => $8, p_delays => $9,
    p_owner => $10, p_healthy => $11, p_failing => $12, p_disable_after_ms => $13,
    p_limit => $14, p_lease_ms => $15, p_max_payload => $16,
    p_max_in_flight => $17, p_max_leased => $18, p_ahead => $19, p_skip => $20)`

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
// the attempt number is returned. $1 ids, $2 their claimed attempt numbers, $3 owner, $4
// milliseconds before they are due again (0: at once).
const releaseClaims = `
UPDATE {{schema}}.deliveries d
SET attempt_count = d.attempt_count - 1, lease_owner = NULL, lease_until = NULL, updated_at = now(),
    next_attempt_at = CASE WHEN $4::bigint > 0 THEN greatest(d.next_attempt_at, now() + $4::bigint * interval '1 millisecond')
                           ELSE d.next_attempt_at END
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
