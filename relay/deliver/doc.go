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
//   - a subscription is leased to one replica at a time: while another replica holds a live
//     lease on it, it is skipped. The holder sends at most MaxInFlightPerSubscription of its
//     requests at once, so one slow endpoint cannot take every worker, and the cap holds
//     across replicas without counting every replica's requests;
//   - for deliveries with an ordering key (ordered subscriptions), only the oldest pending
//     delivery of each (subscription, key) may be sent, so the next waits until the previous
//     has succeeded, failed for good or been cancelled;
//   - only deliveries of active subscriptions are sent: a paused subscription's pending
//     deliveries wait until it is active again.
//
// # Claiming ahead
//
// Claimed jobs wait in lanes, one per subscription, that take turns handing jobs to the
// workers, each keeping at most MaxInFlightPerSubscription on the wire. A subscription seen
// answering fast may hold up to MaxLeasedPerSubscription leases (8 waves by default), so its
// workers never wait for the database between waves; any other (new, slow, hanging) holds no
// more than it may send at once. A job that waited in its lane for half the lease margin is
// not sent but released, so no lease ends while its request is on the wire.
//
// # Batching
//
// The results of requests that end within a few milliseconds of each other are recorded by
// one statement, and for a batch with no failure that same call (record_and_lease) claims as
// many as it freed. A kick (new deliveries fanned out) that arrives while such a record is
// on its way is left to it rather than sent as a second claim. Statements are prepared, and
// the claim and record logic lives in PL/pgSQL functions (outbox/migrations/), so under load
// one round trip records and refills dozens of deliveries.
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
// # Durability
//
// A record waits for the WAL flush like any commit. A claim made alone does not
// (synchronous_commit off for its transaction): it holds the claim lock until it commits, and
// one slow flush would hold every claim back, while a claim lost in a database crash only
// means its deliveries are claimed again.
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
// When Run's context ends the deliverer stops claiming, releases every claim still queued
// (the attempt number is given back) so another replica takes them at once, lets requests in
// flight finish within ShutdownGrace, and records their results.
//
// # Duplicates
//
// A crash (kill -9) between a receiver's answer and its record means that request is sent
// again after the lease ends: at most the leases one subscription holds, and in practice the
// few results awaiting their batch. Claims queued and never sent are not duplicates.
package deliver
