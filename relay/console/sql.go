package console

// All SQL of the console: reads only. Every change goes through the management API's
// handler (actions.go), which holds the rules of what may change.
//
// Tenancy is one parameter in every query, as in the API: the caller's tenant ID, or NULL
// for the operator, read as "($1::text IS NULL OR ... = $1)". A delivery's tenant is its
// tenant_key (its subscription's tenant, '' for none), so a tenant's scope is tenant_key =
// $1; the operator sees every tenant and the subscriptions without one.

// sqlOverview: $1 tenant scope. The outbox backlog is the relay's, not a tenant's: a tenant
// sees the deliveries waiting for its own subscriptions.
const sqlOverview = `
SELECT
    CASE WHEN $1::text IS NULL THEN (SELECT count(*) FROM {{schema}}.outbox WHERE dispatched_at IS NULL) END AS outbox_backlog,
    CASE WHEN $1::text IS NULL THEN (SELECT min(created_at) FROM {{schema}}.outbox WHERE dispatched_at IS NULL) END AS outbox_oldest,
    (SELECT count(*) FROM {{schema}}.deliveries d
     WHERE d.status = 'pending' AND ($1::text IS NULL OR d.tenant_key = $1)) AS pending,
    (SELECT min(d.created_at) FROM {{schema}}.deliveries d
     WHERE d.status = 'pending' AND ($1::text IS NULL OR d.tenant_key = $1)) AS pending_oldest`

// sqlLastHour counts the attempts of the last hour by outcome: $1 tenant scope. Attempts,
// not deliveries: a delivery retried three times in the hour failed three times.
const sqlLastHour = `
SELECT
    count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
    count(*) FILTER (WHERE a.status_code IS NOT NULL AND a.status_code NOT BETWEEN 200 AND 299) AS http_errors,
    count(*) FILTER (WHERE a.status_code IS NULL) AS no_answer
FROM {{schema}}.attempts a
WHERE a.started_at > now() - interval '1 hour'
  AND ($1::text IS NULL OR EXISTS (
      SELECT 1 FROM {{schema}}.deliveries d WHERE d.id = a.delivery_id AND d.tenant_key = $1))`

// subscriptionsQuery lists the subscriptions that pick (a SELECT of subscriptions s, with
// its order and limit) chooses, with the activity figures the pages show: success over the
// last day (of the deliveries that ended in it: succeeded of succeeded and failed), the last
// attempt, and requests in flight. The day's figures are one pass over the deliveries of the
// chosen subscriptions updated in the day, not one count per subscription.
func subscriptionsQuery(pick string) string {
	return `
WITH subs AS (` + pick + `),
day AS (
    SELECT d.subscription_id,
           count(*) FILTER (WHERE d.status = 'succeeded') AS ok,
           count(*) FILTER (WHERE d.status IN ('succeeded', 'failed')) AS ended
    FROM {{schema}}.deliveries d
    WHERE d.subscription_id IN (SELECT subs.id FROM subs) AND d.updated_at > now() - interval '1 day'
    GROUP BY d.subscription_id
)
SELECT s.seq, s.id, s.tenant_id, s.target_url, s.event_types, s.description, s.status, s.disabled_reason,
       s.failing_since, s.ordered, s.signature_scheme, s.created_at,
       coalesce(day.ended, 0) AS ended_24h, coalesce(day.ok, 0) AS ok_24h,
       last.started_at AS last_attempt_at, last.status_code AS last_status, last.error AS last_error,
       (SELECT count(*) FROM {{schema}}.deliveries x
        WHERE x.subscription_id = s.id AND x.lease_owner IS NOT NULL AND x.lease_until > now()) AS in_flight
FROM subs s
LEFT JOIN day ON day.subscription_id = s.id
LEFT JOIN LATERAL (
    -- The newest delivery with an attempt, from the newest down (deliveries_subscription_idx).
    SELECT a.started_at, a.status_code, a.error
    FROM {{schema}}.deliveries d
    JOIN {{schema}}.attempts a ON a.delivery_id = d.id AND a.attempt = d.attempt_count
    WHERE d.subscription_id = s.id AND d.attempt_count > 0
    ORDER BY d.id DESC
    LIMIT 1
) last ON true
ORDER BY s.ord`
}

// sqlSubscriptions lists live subscriptions, newest first, one page after a cursor: $1
// tenant scope, $2 limit, $3 before this seq (the cursor) or NULL.
var sqlSubscriptions = subscriptionsQuery(`
    SELECT s.*, -s.seq AS ord FROM {{schema}}.subscriptions s
    WHERE s.deleted_at IS NULL AND ($1::text IS NULL OR s.tenant_id = $1)
      AND ($3::bigint IS NULL OR s.seq < $3)
    ORDER BY s.seq DESC LIMIT $2`)

// sqlSubscription reads one: $1 id, $2 tenant scope.
var sqlSubscription = subscriptionsQuery(`
    SELECT s.*, 0 AS ord FROM {{schema}}.subscriptions s
    WHERE s.id = $1 AND s.deleted_at IS NULL AND ($2::text IS NULL OR s.tenant_id = $2)`)

// sqlFailingNow lists the subscriptions whose endpoints are failing now: every attempt
// failed since failing_since, or disabled by the relay. $1 tenant scope, $2 limit.
var sqlFailingNow = subscriptionsQuery(`
    SELECT s.*, row_number() OVER (ORDER BY s.failing_since NULLS LAST, s.seq DESC) AS ord
    FROM {{schema}}.subscriptions s
    WHERE s.deleted_at IS NULL AND ($1::text IS NULL OR s.tenant_id = $1)
      AND (s.failing_since IS NOT NULL OR s.status = 'disabled')
    ORDER BY s.failing_since NULLS LAST, s.seq DESC LIMIT $2`)

// deliveryColumns is a delivery in the log, with its event's type and last attempt.
const deliveryColumns = `
    d.id, d.event_id, d.subscription_id, d.status, d.attempt_count, d.next_attempt_at,
    d.created_at, d.updated_at, o.event_type, s.target_url,
    last.status_code AS last_status, last.error AS last_error`

const deliveryJoins = `
JOIN {{schema}}.outbox o ON o.id = d.outbox_id
JOIN {{schema}}.subscriptions s ON s.id = d.subscription_id
LEFT JOIN LATERAL (
    SELECT a.status_code, a.error FROM {{schema}}.attempts a
    WHERE a.delivery_id = d.id ORDER BY a.attempt DESC LIMIT 1
) last ON true`

// sqlDeliveries is the delivery log, newest first, one page after a cursor: $1 tenant
// scope, $2 status or NULL, $3 event type or NULL, $4 subscription or NULL, $5 created
// from or NULL, $6 created before or NULL, $7 before this id (the cursor) or NULL, $8 limit.
// The failed filter has its own index (deliveries_failed_idx): failures are what people
// look for, and among a day's successes they are few.
const sqlDeliveries = `
SELECT ` + deliveryColumns + `
FROM {{schema}}.deliveries d` + deliveryJoins + `
WHERE ($1::text IS NULL OR d.tenant_key = $1)
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::text IS NULL OR o.event_type = $3)
  AND ($4::text IS NULL OR d.subscription_id = $4)
  AND ($5::timestamptz IS NULL OR d.created_at >= $5)
  AND ($6::timestamptz IS NULL OR d.created_at < $6)
  AND ($7::bigint IS NULL OR d.id < $7)
ORDER BY d.id DESC
LIMIT $8`

// sqlDelivery reads one: $1 id, $2 tenant scope.
const sqlDelivery = `
SELECT ` + deliveryColumns + `, o.payload::text AS payload, o.tenant_id AS event_tenant_id,
    o.created_at AS event_created_at,
    ARRAY(SELECT k FROM jsonb_object_keys(s.headers) k ORDER BY k) AS header_names,
    s.signature_scheme
FROM {{schema}}.deliveries d` + deliveryJoins + `
WHERE d.id = $1 AND ($2::text IS NULL OR d.tenant_key = $2)`

// sqlAttempts lists a delivery's attempts, first to last: $1 delivery id. The response
// body is cut to the first KiB (the pages show no more).
const sqlAttempts = `
SELECT attempt, started_at, duration_ms, status_code, error, left(response_body, 1024) AS response_body
FROM {{schema}}.attempts WHERE delivery_id = $1 ORDER BY attempt`

// sqlEvent reads an event with its payload: $1 event id, $2 tenant scope. A tenant sees an
// event only through a delivery to one of its subscriptions.
const sqlEvent = `
SELECT o.event_id, o.event_type, o.tenant_id, o.created_at, o.dispatched_at, o.payload::text AS payload
FROM {{schema}}.outbox o
WHERE o.event_id = $1
  AND ($2::text IS NULL OR EXISTS (
      SELECT 1 FROM {{schema}}.deliveries d WHERE d.event_id = o.event_id AND d.tenant_key = $2))`

// sqlEventDeliveries lists an event's deliveries within the scope: $1 event id, $2 tenant
// scope.
const sqlEventDeliveries = `
SELECT ` + deliveryColumns + `
FROM {{schema}}.deliveries d` + deliveryJoins + `
WHERE d.event_id = $1 AND ($2::text IS NULL OR d.tenant_key = $2)
ORDER BY d.id`

// sqlEventTypes lists the event types seen lately, for the log's filter: $1 tenant scope.
// From the newest outbox rows only: a filter's list, not a census.
const sqlEventTypes = `
SELECT DISTINCT o.event_type FROM (
    SELECT o.event_type FROM {{schema}}.outbox o
    WHERE $1::text IS NULL OR o.tenant_id = $1
    ORDER BY o.id DESC LIMIT 1000) o
ORDER BY 1`

// Sessions of the operator console (session.go): $1 the SHA-256 of the session ID.
const (
	sqlSessionValid = `SELECT EXISTS (SELECT 1 FROM {{schema}}.console_sessions WHERE id_hash = $1 AND expires_at > now())`
	// $1 hash, $2 lifetime in seconds. Expired sessions go at the same time.
	sqlSessionCreate = `
WITH gone AS (DELETE FROM {{schema}}.console_sessions WHERE expires_at <= now())
INSERT INTO {{schema}}.console_sessions (id_hash, expires_at) VALUES ($1, now() + $2 * interval '1 second')`
	sqlSessionDelete = `DELETE FROM {{schema}}.console_sessions WHERE id_hash = $1`
)
