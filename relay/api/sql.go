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
    description, metadata, ordered, rate_limit, timeout_seconds, status, disabled_reason, signature_scheme, client_cert, created_at, updated_at`

// sqlInsertSubscription: $1 id, $2 tenant or NULL, $3 target URL, $4 event types, $5 filter
// (jsonb text or NULL), $6 headers, $7 description, $8 metadata, $9 ordered, $10 stored secret
// (a whsec_ secret or, for v1a, a whsk_ private key, sealed), $11 signature scheme, $12 rate
// limit or NULL, $13 timeout in seconds or NULL, $14 client certificate chain or NULL, $15 its
// key (sealed) or NULL.
const sqlInsertSubscription = `
INSERT INTO {{schema}}.subscriptions
    (id, tenant_id, target_url, event_types, filter, headers, description, metadata, ordered, secret,
     signature_scheme, rate_limit, timeout_seconds, client_cert, client_key)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15)
RETURNING ` + subscriptionColumns

// sqlFindDuplicate finds the live subscription subscriptions_duplicate_idx compared an insert
// or update with: $1 tenant or NULL, $2 target URL, $3 event types, $4 filter or NULL, $5 the
// id of the subscription being updated (never its own duplicate) or NULL.
const sqlFindDuplicate = `
SELECT id FROM {{schema}}.subscriptions
WHERE coalesce(tenant_id, '') = coalesce($1::text, '')
  AND target_url = $2
  AND event_types = $3::text[]
  AND coalesce(filter, 'null'::jsonb) = coalesce($4::jsonb, 'null'::jsonb)
  AND deleted_at IS NULL
  AND id <> coalesce($5::text, '')`

// sqlGetSubscription: $1 id, $2 tenant scope.
const sqlGetSubscription = `
SELECT ` + subscriptionColumns + `
FROM {{schema}}.subscriptions
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)`

// sqlLockSubscription reads a live subscription for an update in the same transaction: $1
// id, $2 tenant scope. The row lock orders a PATCH against the deliverer's own changes
// (disabling on 410 or after RELAY_DISABLE_AFTER), so neither overwrites the other unseen.
const sqlLockSubscription = `
SELECT ` + subscriptionColumns + `
FROM {{schema}}.subscriptions
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)
FOR UPDATE`

// sqlUpdateSubscription writes a PATCH merged with the row sqlLockSubscription locked. $1 id,
// $2 target URL, $3 event types, $4 filter or NULL, $5 headers, $6 description, $7 metadata,
// $8 ordered, $9 status, $10 true to clear disabled_reason (the status was set), $11 true
// to clear failing_since (the subscription becomes active again, so the auto-disable window
// starts afresh), $12 rate limit or NULL, $13 timeout in seconds or NULL, $14 true to set the
// client certificate to $15 (chain or NULL) and $16 (sealed key or NULL); false keeps it.
const sqlUpdateSubscription = `
UPDATE {{schema}}.subscriptions
SET target_url = $2, event_types = $3, filter = $4::jsonb, headers = $5::jsonb, description = $6,
    metadata = $7::jsonb, ordered = $8, status = $9, rate_limit = $12, timeout_seconds = $13,
    client_cert = CASE WHEN $14::boolean THEN $15::text ELSE client_cert END,
    client_key = CASE WHEN $14::boolean THEN $16::text ELSE client_key END,
    disabled_reason = CASE WHEN $10::boolean THEN NULL ELSE disabled_reason END,
    failing_since = CASE WHEN $11::boolean THEN NULL ELSE failing_since END,
    updated_at = now()
WHERE id = $1
RETURNING ` + subscriptionColumns

// sqlRotateSecret makes $3 (stored form) the secret of live subscription $1 within tenant
// scope $2; the current one becomes the previous secret, which the deliverer still signs
// with for $4 milliseconds. A rotation during an overlap drops the older previous secret:
// there is only ever one. $5 is the scheme $3 was made for: the row must still have it (it
// cannot change, but a v1 secret must never replace a v1a key).
const sqlRotateSecret = `
UPDATE {{schema}}.subscriptions
SET previous_secret = secret,
    previous_secret_expires_at = now() + $4 * interval '1 millisecond',
    secret = $3,
    updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2) AND signature_scheme = $5
RETURNING id`

// sqlGetScheme: $1 id, $2 tenant scope.
const sqlGetScheme = `
SELECT signature_scheme
FROM {{schema}}.subscriptions
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)`

// sqlSendTest writes a webhook.test event for live subscription $1 (tenant scope $2) and its
// one delivery, due now, in one statement, but only when the subscription is active. The
// outbox row is born dispatched, so the dispatcher never fans it out to anyone else. $3 is
// the message in the payload. It answers the subscription's status and, when active, the
// event and delivery ids; no row when the subscription is not visible.
const sqlSendTest = `
WITH sub AS (
    SELECT id, tenant_id, status
    FROM {{schema}}.subscriptions
    WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)
), ev AS (
    INSERT INTO {{schema}}.outbox (event_type, tenant_id, payload, dispatched_at)
    SELECT 'webhook.test', sub.tenant_id,
           jsonb_build_object('subscription_id', sub.id, 'message', $3::text), now()
    FROM sub
    WHERE sub.status = 'active'
    RETURNING id, event_id
), dl AS (
    INSERT INTO {{schema}}.deliveries (event_id, outbox_id, subscription_id, tenant_key, status, next_attempt_at)
    SELECT ev.event_id, ev.id, $1, coalesce(sub.tenant_id, ''), 'pending', now()
    FROM ev, sub
    RETURNING id
)
SELECT sub.status, ev.event_id::text, dl.id
FROM sub LEFT JOIN ev ON true LEFT JOIN dl ON true`

// sqlReplay re-queues the deliveries of live subscription $1 (tenant scope $2) in status $3
// created at or after $4: pending, due now, without lease. attempt_count stays, so attempt
// numbers continue. It answers whether the subscription was found and how many it re-queued.
// Only finished deliveries match, so nothing in flight is touched.
//
// tenant_key is set again because claims take turns by it: a delivery that finished before
// the column existed has it empty, and re-queued so it would wait in the no-tenant turn
// instead of its tenant's.
const sqlReplay = `
WITH sub AS (
    SELECT id, tenant_id
    FROM {{schema}}.subscriptions
    WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)
), upd AS (
    UPDATE {{schema}}.deliveries d
    SET status = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL, updated_at = now(),
        tenant_key = coalesce(sub.tenant_id, '')
    FROM sub
    WHERE d.subscription_id = sub.id AND d.status = $3 AND d.created_at >= $4
    RETURNING d.id
)
SELECT (SELECT count(*) FROM sub), (SELECT count(*) FROM upd)`

// sqlLockDelivery reads, and locks, what a retry decides on: $1 delivery row id, $2 tenant
// scope. A delivery is in flight when it is pending under a lease that has not run out.
const sqlLockDelivery = `
SELECT d.status = 'pending' AND coalesce(d.lease_until > now(), false) AS in_flight,
       s.deleted_at IS NOT NULL AS deleted
FROM {{schema}}.deliveries d
JOIN {{schema}}.subscriptions s ON s.id = d.subscription_id
WHERE d.id = $1 AND ($2::text IS NULL OR s.tenant_id = $2)
FOR UPDATE OF d`

// sqlRetryDelivery re-queues delivery $1, locked by sqlLockDelivery: pending, due now, any
// expired lease dropped, in its subscription's tenant turn (tenant_key, as in sqlReplay).
// attempt_count stays, so the next attempt is attempt_count + 1.
const sqlRetryDelivery = `
UPDATE {{schema}}.deliveries d
SET status = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL, updated_at = now(),
    tenant_key = coalesce(s.tenant_id, '')
FROM {{schema}}.subscriptions s
WHERE d.id = $1 AND s.id = d.subscription_id
RETURNING ` + deliveryColumns

// sqlClaimIdempotencyKey claims key $2 of caller $1 for a request with hash $3, unless
// someone holds it: it is free when new, older than $4 ms (the keys' lifetime), or claimed
// more than $5 ms ago by a request that never stored an answer (its process died). It
// answers the claim's time, the token that storing or releasing the claim must present; no
// row when the key is held.
const sqlClaimIdempotencyKey = `
INSERT INTO {{schema}}.idempotency_keys AS k (caller, key, request_hash)
VALUES ($1, $2, $3)
ON CONFLICT (caller, key) DO UPDATE
SET request_hash = excluded.request_hash, status = NULL, body = NULL, created_at = now()
WHERE k.created_at < now() - $4 * interval '1 millisecond'
   OR (k.status IS NULL AND k.created_at < now() - $5 * interval '1 millisecond')
RETURNING created_at`

// sqlGetIdempotencyKey reads key $2 of caller $1: its request hash and, once the first
// request finished, its answer.
const sqlGetIdempotencyKey = `
SELECT request_hash, status, body
FROM {{schema}}.idempotency_keys
WHERE caller = $1 AND key = $2`

// sqlStoreIdempotencyKey records the answer ($4 status, $5 stored body) of the claim $3 of
// key $2 of caller $1.
const sqlStoreIdempotencyKey = `
UPDATE {{schema}}.idempotency_keys
SET status = $4, body = $5
WHERE caller = $1 AND key = $2 AND created_at = $3 AND status IS NULL`

// sqlReleaseIdempotencyKey gives up the claim $3 of key $2 of caller $1 without an answer.
const sqlReleaseIdempotencyKey = `
DELETE FROM {{schema}}.idempotency_keys
WHERE caller = $1 AND key = $2 AND created_at = $3 AND status IS NULL`

// sqlPurgeIdempotencyKeys deletes up to $2 keys older than $1 ms, skipping rows others lock.
const sqlPurgeIdempotencyKeys = `
DELETE FROM {{schema}}.idempotency_keys
WHERE (caller, key) IN (
    SELECT caller, key FROM {{schema}}.idempotency_keys
    WHERE created_at < now() - $1 * interval '1 millisecond'
    ORDER BY created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)`

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
// stay readable.
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

// sqlListEvents answers the outbox events of the scope newest first, each with the number
// of its deliveries the scope can see. $1 tenant scope, $2 event type or NULL, $3 created
// at or after or NULL, $4 created before or NULL, $5 outbox id to start before or NULL, $6
// limit. The operator walks the primary key backwards, a tenant outbox_tenant_idx
// (tenant_id, id); both stop at the page's last row. Filters on type and time are checked
// on the way.
const sqlListEvents = `
SELECT o.id, o.event_id, o.event_type, o.tenant_id, o.ordering_key, o.payload, o.created_at,
    (SELECT count(*) FROM {{schema}}.deliveries d
     WHERE d.event_id = o.event_id AND ($1::text IS NULL OR d.tenant_key = $1)) AS delivery_count
FROM {{schema}}.outbox o
WHERE ($1::text IS NULL OR o.tenant_id = $1)
  AND ($2::text IS NULL OR o.event_type = $2)
  AND ($3::timestamptz IS NULL OR o.created_at >= $3)
  AND ($4::timestamptz IS NULL OR o.created_at < $4)
  AND ($5::bigint IS NULL OR o.id < $5)
ORDER BY o.id DESC
LIMIT $6`

// sqlListDeliveries answers the deliveries of the scope newest first, with their event's
// type and their latest attempt. $1 tenant scope, $2 status or NULL, $3 subscription id or
// NULL, $4 event type or NULL, $5 created at or after or NULL, $6 id to start before or
// NULL, $7 limit.
//
// The tenant is d.tenant_key, which fan-out copies from the subscription (coalesce(
// tenant_id, ”)), so a tenant's page walks deliveries_tenant_idx (tenant_key, id); the
// join to subscriptions checks the same thing again. A subscription's page walks
// deliveries_subscription_idx (subscription_id, id); pending, failed or cancelled ones
// deliveries_status_idx (status, id); everything else the primary key. Each stops at the
// page's last row; the other filters are checked on the way.
const sqlListDeliveries = `
SELECT ` + deliveryColumns + `, o.event_type,
    la.attempt AS last_attempt, la.started_at AS last_started_at, la.duration_ms AS last_duration_ms,
    la.status_code AS last_status_code, la.error AS last_error
FROM {{schema}}.deliveries d
JOIN {{schema}}.outbox o ON o.id = d.outbox_id
LEFT JOIN LATERAL (
    SELECT a.attempt, a.started_at, a.duration_ms, a.status_code, a.error
    FROM {{schema}}.attempts a
    WHERE a.delivery_id = d.id
    ORDER BY a.attempt DESC
    LIMIT 1
) la ON true
WHERE ($1::text IS NULL OR d.tenant_key = $1)
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::text IS NULL OR d.subscription_id = $3)
  AND ($4::text IS NULL OR o.event_type = $4)
  AND ($5::timestamptz IS NULL OR d.created_at >= $5)
  AND ($6::bigint IS NULL OR d.id < $6)
ORDER BY d.id DESC
LIMIT $7`

// queries holds the SQL above with the schema filled in.
type queries struct {
	insertSubscription, findDuplicate, getSubscription, getSecret, getScheme, listSubscriptions,
	deleteSubscription, getDelivery, listSubscriptionDeliveries, listAttempts, getEvent,
	listEventDeliveries, lockSubscription, updateSubscription, rotateSecret, sendTest, replay,
	lockDelivery, retryDelivery, claimIdempotencyKey, getIdempotencyKey, storeIdempotencyKey,
	releaseIdempotencyKey, purgeIdempotencyKeys, listEvents, listDeliveries string
}

func newQueries(schema string) queries {
	q := func(s string) string { return outbox.Qualify(schema, s) }
	return queries{
		insertSubscription:         q(sqlInsertSubscription),
		findDuplicate:              q(sqlFindDuplicate),
		getSubscription:            q(sqlGetSubscription),
		getSecret:                  q(sqlGetSecret),
		getScheme:                  q(sqlGetScheme),
		listSubscriptions:          q(sqlListSubscriptions),
		deleteSubscription:         q(sqlDeleteSubscription),
		getDelivery:                q(sqlGetDelivery),
		listSubscriptionDeliveries: q(sqlListSubscriptionDeliveries),
		listAttempts:               q(sqlListAttempts),
		getEvent:                   q(sqlGetEvent),
		listEventDeliveries:        q(sqlListEventDeliveries),
		lockSubscription:           q(sqlLockSubscription),
		updateSubscription:         q(sqlUpdateSubscription),
		rotateSecret:               q(sqlRotateSecret),
		sendTest:                   q(sqlSendTest),
		replay:                     q(sqlReplay),
		lockDelivery:               q(sqlLockDelivery),
		retryDelivery:              q(sqlRetryDelivery),
		claimIdempotencyKey:        q(sqlClaimIdempotencyKey),
		getIdempotencyKey:          q(sqlGetIdempotencyKey),
		storeIdempotencyKey:        q(sqlStoreIdempotencyKey),
		releaseIdempotencyKey:      q(sqlReleaseIdempotencyKey),
		purgeIdempotencyKeys:       q(sqlPurgeIdempotencyKeys),
		listEvents:                 q(sqlListEvents),
		listDeliveries:             q(sqlListDeliveries),
	}
}
