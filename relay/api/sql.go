package api

import "github.com/referralloop/outbox-relay/outbox"

// All SQL of the API. {{schema}} becomes the quoted schema name once, in New; values travel
// as bind parameters only.
//
// Tenancy is one parameter in every query that reads or writes a caller's objects: the
// caller's tenant ID, or NULL for the operator, read as "($n::text IS NULL OR tenant_id =
// $n)". A tenant therefore never sees operator subscriptions (tenant_id NULL) nor another
// tenant's, and what it cannot see answers "no row", hence 404.

const subscriptionColumns = `seq, id, tenant_id, target_url, event_types, filter, headers,
    description, metadata, ordered, status, disabled_reason, created_at, updated_at`

// sqlInsertSubscription: $1 id, $2 tenant or NULL, $3 target URL, $4 event types, $5 filter
// (jsonb text or NULL), $6 headers, $7 description, $8 metadata, $9 ordered, $10 stored secret.
const sqlInsertSubscription = `
INSERT INTO {{schema}}.subscriptions
    (id, tenant_id, target_url, event_types, filter, headers, description, metadata, ordered, secret)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8::jsonb, $9, $10)
RETURNING ` + subscriptionColumns

// sqlFindDuplicate finds the live subscription subscriptions_duplicate_idx compared an insert
// with: $1 tenant or NULL, $2 target URL, $3 event types, $4 filter or NULL.
const sqlFindDuplicate = `
SELECT id FROM {{schema}}.subscriptions
WHERE coalesce(tenant_id, '') = coalesce($1::text, '')
  AND target_url = $2
  AND event_types = $3::text[]
  AND coalesce(filter, 'null'::jsonb) = coalesce($4::jsonb, 'null'::jsonb)
  AND deleted_at IS NULL`

// sqlGetSubscription: $1 id, $2 tenant scope.
const sqlGetSubscription = `
SELECT ` + subscriptionColumns + `
FROM {{schema}}.subscriptions
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)`

// sqlGetSecret: $1 id, $2 tenant scope.
const sqlGetSecret = `
SELECT secret
FROM {{schema}}.subscriptions
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)`

// sqlListSubscriptions answers live subscriptions newest first. $1 tenant scope, $2 status or
// NULL, $3 event type or NULL, $4 true when $3 is an exact type (then every pattern that
// matches it counts, as at fan-out) and false when it is a pattern itself (then only that
// pattern), $5 seq to start before or NULL, $6 limit.
const sqlListSubscriptions = `
SELECT ` + subscriptionColumns + `
FROM {{schema}}.subscriptions
WHERE deleted_at IS NULL
  AND ($1::text IS NULL OR tenant_id = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR EXISTS (
      SELECT 1 FROM unnest(event_types) AS p(pattern)
      WHERE p.pattern = $3
         OR ($4::boolean AND (
             p.pattern = '*'
             OR (right(p.pattern, 2) = '.*' AND starts_with($3, left(p.pattern, -1)))))))
  AND ($5::bigint IS NULL OR seq < $5)
ORDER BY seq DESC
LIMIT $6`

// sqlDeleteSubscription soft-deletes a live subscription and cancels its pending deliveries
// in one statement, and answers how many of each. Deliveries in flight lose their lease the
// way the deliverer's own cancellation (410 Gone) does: their attempt is still recorded, the
// delivery stays cancelled. $1 id, $2 tenant scope.
const sqlDeleteSubscription = `
WITH deleted AS (
    UPDATE {{schema}}.subscriptions
    SET deleted_at = now(), updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)
    RETURNING id
), cancelled AS (
    UPDATE {{schema}}.deliveries d
    SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
    FROM deleted
    WHERE d.subscription_id = deleted.id AND d.status = 'pending'
    RETURNING d.id
)
SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM cancelled)`

const deliveryColumns = `d.id, d.event_id, d.subscription_id, d.status, d.attempt_count,
    d.next_attempt_at, d.created_at, d.updated_at`

// sqlGetDelivery: $1 delivery row id, $2 tenant scope. Deliveries of deleted subscriptions
// stay readable (SPEC section 11).
const sqlGetDelivery = `
SELECT ` + deliveryColumns + `
FROM {{schema}}.deliveries d
JOIN {{schema}}.subscriptions s ON s.id = d.subscription_id
WHERE d.id = $1 AND ($2::text IS NULL OR s.tenant_id = $2)`

// sqlListSubscriptionDeliveries answers a subscription's deliveries newest first; the caller
// has checked the subscription is visible. $1 subscription id, $2 status or NULL, $3 id to
// start before or NULL, $4 limit.
const sqlListSubscriptionDeliveries = `
SELECT ` + deliveryColumns + `
FROM {{schema}}.deliveries d
WHERE d.subscription_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::bigint IS NULL OR d.id < $3)
ORDER BY d.id DESC
LIMIT $4`

// sqlListAttempts: $1 delivery row ids.
const sqlListAttempts = `
SELECT delivery_id, attempt, started_at, duration_ms, status_code, error, response_body
FROM {{schema}}.attempts
WHERE delivery_id = ANY($1::bigint[])
ORDER BY delivery_id, attempt`

// sqlGetEvent: $1 event id, $2 tenant scope.
const sqlGetEvent = `
SELECT event_id, event_type, tenant_id, ordering_key, payload, created_at
FROM {{schema}}.outbox
WHERE event_id = $1::uuid AND ($2::text IS NULL OR tenant_id = $2)`

// sqlListEventDeliveries answers an event's deliveries in creation order, only those of the
// scope's subscriptions. $1 event id, $2 tenant scope.
const sqlListEventDeliveries = `
SELECT ` + deliveryColumns + `
FROM {{schema}}.deliveries d
JOIN {{schema}}.subscriptions s ON s.id = d.subscription_id
WHERE d.event_id = $1::uuid AND ($2::text IS NULL OR s.tenant_id = $2)
ORDER BY d.id`

// queries holds the SQL above with the schema filled in.
type queries struct {
	insertSubscription, findDuplicate, getSubscription, getSecret, listSubscriptions,
	deleteSubscription, getDelivery, listSubscriptionDeliveries, listAttempts, getEvent,
	listEventDeliveries string
}

func newQueries(schema string) queries {
	q := func(s string) string { return outbox.Qualify(schema, s) }
	return queries{
		insertSubscription:         q(sqlInsertSubscription),
		findDuplicate:              q(sqlFindDuplicate),
		getSubscription:            q(sqlGetSubscription),
		getSecret:                  q(sqlGetSecret),
		listSubscriptions:          q(sqlListSubscriptions),
		deleteSubscription:         q(sqlDeleteSubscription),
		getDelivery:                q(sqlGetDelivery),
		listSubscriptionDeliveries: q(sqlListSubscriptionDeliveries),
		listAttempts:               q(sqlListAttempts),
		getEvent:                   q(sqlGetEvent),
		listEventDeliveries:        q(sqlListEventDeliveries),
	}
}
