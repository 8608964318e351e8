// Package deliver sends due deliveries: claim with a lease, POST the signed body, record the
// attempt, schedule the retry.
//
// # Claims and leases
//
// A delivery is claimed by one short statement that bumps its attempt_count and sets a lease
// (lease_owner, lease_until); no transaction is held while the request is in flight. The
// result is recorded with a guard on (id, attempt_count, lease_owner), so a replica whose
// lease expired can never overwrite what a newer attempt wrote. A delivery whose owner died is
// free again once its lease ends (DeliveryTimeout plus a margin), and the next claim sends it
// again with the next attempt number: at-least-once, never lost.
//
// The claim also enforces, inside the database and so across replicas:
//   - at most MaxInFlightPerSubscription leased deliveries per subscription, so one slow
//     endpoint cannot take every worker;
//   - for deliveries with an ordering key (ordered subscriptions), only the oldest pending
//     delivery of each (subscription, key) may be sent, so the next waits until the previous
//     has succeeded, failed for good or been cancelled;
//   - only deliveries of active subscriptions are sent: a paused subscription's pending
//     deliveries wait until it is active again.
//
// # Batching
//
// Requests go out in waves: a claim leases up to a batch for the free workers, the results
// of requests that end close together are recorded by one statement, and for a wave with
// no failure that same call (record_and_claim) claims the next wave for the slots it freed.
// Statements are prepared, and the claim and record logic lives in PL/pgSQL functions
// (outbox/migrations/0003_claim_function.sql), so a wave costs one round trip.
//
// # Outcomes
//
// Any 2xx is success. Everything else fails the attempt: another status (3xx included:
// redirects are never followed), a timeout, a connection or TLS error. A failed attempt is
// retried after the next delay of the schedule (or later, when a 429 or 503 carries
// Retry-After); after the last, the delivery is failed. A 410 fails the delivery at once,
// disables the subscription and cancels its other pending deliveries. A payload larger
// than MaxPayloadBytes fails without a request.
//
// # Database trouble
//
// A database error is never a failed attempt. Results wait in memory and are written in
// batches; a failed write is retried with backoff until it succeeds or shutdown ends. If a
// lease expires meanwhile another replica may send the same attempt again, which
// at-least-once allows and receivers dedupe on webhook-id.
//
// # Shutdown
//
// When Run's context ends the deliverer stops claiming, lets requests in flight finish
// within ShutdownGrace, records their results, and releases every claim it did not use (the
// attempt number is given back), so another replica takes them at once.
package deliver
