package main

import (
	"crypto/rand"
	"encoding/base64"
)

// The harness's SQL. {{schema}} is replaced by the quoted relay schema (outbox.Qualify).

// insertSubscriptions creates one subscription per element of the arrays $1 (id), $2 (target
// URL), $3 (secret) and $4 (description), all with tenant $5, event types $6 and ordered $7:
// thousands in one statement.
const insertSubscriptions = `
INSERT INTO {{schema}}.subscriptions (id, tenant_id, target_url, event_types, ordered, secret, description)
SELECT s.id, $5::text, s.url, $6::text[], $7::boolean, s.secret, s.description
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS s(id, url, secret, description)`

// setSubscriptionStatus sets the status ($1) of the subscriptions with target URL $2, as
// PATCH /v1/subscriptions/{id} would.
const setSubscriptionStatus = `
UPDATE {{schema}}.subscriptions SET status = $1, updated_at = now() WHERE target_url = $2`

// insertBacklog writes events $1..$2 with commit stamp $3; $4 > 0 gives ordering keys
// round-robin; $5 is their tenant (NULL: none). The payload has the same shape as the steady
// publisher's (eventPayload).
const insertBacklog = `
INSERT INTO {{schema}}.outbox (event_type, tenant_id, payload, ordering_key)
SELECT 'signup.created', $5::text,
       jsonb_build_object(
           'seq', g,
           'committed_at_unix_ns', $3::bigint,
           'ordering_key', k.key,
           'signup', jsonb_build_object(
               'id', 'su_' || g,
               'email', 'user' || g || '@example.com',
               'position', g,
               'waitlist_id', 'wl_bench',
               'referral_code', 'r' || lpad(g::text, 8, '0'))),
       k.key
FROM generate_series($1::bigint, $2::bigint) AS g,
     LATERAL (SELECT CASE WHEN $4::int > 0 THEN 'key_' || (g % $4::int) END AS key) AS k
ORDER BY g`

const deliveryStates = `SELECT status, count(*) FROM {{schema}}.deliveries GROUP BY status ORDER BY status`

const attemptCounts = `
SELECT count(*), count(*) FILTER (WHERE error IS NOT NULL OR status_code IS NULL OR status_code NOT BETWEEN 200 AND 299)
FROM {{schema}}.attempts`

// connectionsByApp counts the client backends connected to database $1 by application_name
// (autovacuum and parallel workers are not connections anyone holds).
const connectionsByApp = `
SELECT coalesce(application_name, ''), count(*)::int
FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend'
GROUP BY 1`

const xactCount = `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`

// newSecret returns a Standard Webhooks secret: whsec_ and base64 of 32 random bytes.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:]), nil
}

// The relay's SQL cycle, as relay/dispatch/sql.go and relay/deliver/sql.go send it, for the
// limit scenario (limit.go).

// limitFanOut claims up to $1 outbox rows and inserts their deliveries.
const limitFanOut = `SELECT events, deliveries FROM {{schema}}.claim_and_fan_out($1)`

// limitLease leases due deliveries (relay/deliver claimDue).
const limitLease = `SELECT * FROM {{schema}}.lease_due(
    p_limit => $1, p_owner => $2, p_lease_ms => $3, p_max_payload => $4,
    p_max_in_flight => $5, p_max_leased => $6, p_ahead => $7, p_skip => $8)`

// limitRecord records a batch of results (relay/deliver recordResults).
const limitRecord = `SELECT updated, disabled FROM {{schema}}.record_attempts(
    p_ids => $1, p_attempts => $2, p_started => $3, p_durations => $4, p_statuses => $5,
    p_errors => $6, p_responses => $7, p_outcomes => $8, p_delays => $9,
    p_owner => $10, p_healthy => $11, p_failing => $12, p_disable_after_ms => $13)`

// limitRecordAndLease records a batch and leases the next in one statement (relay/deliver
// recordAndClaim).
const limitRecordAndLease = `SELECT * FROM {{schema}}.record_and_lease_due(
    p_ids => $1, p_attempts => $2, p_started => $3, p_durations => $4, p_statuses => $5,
    p_errors => $6, p_responses => $7, p_outcomes => $8, p_delays => $9,
    p_owner => $10, p_healthy => $11, p_failing => $12, p_disable_after_ms => $13,
    p_limit => $14, p_lease_ms => $15, p_max_payload => $16,
    p_max_in_flight => $17, p_max_leased => $18, p_ahead => $19, p_skip => $20)`
