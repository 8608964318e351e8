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
// A subscription may have its own timeout (1 to 30 seconds), which bounds its requests
// instead of DeliveryTimeout. The claim functions lease its deliveries for that much longer
// (DeliveryTimeout + margin + its timeout), so a request that may take 30s under a 5s
// default cannot outlive its lease and be sent again by another replica meanwhile. The lease
// is computed per row in the database rather than by the relay for the largest timeout,
// which would have made every crash's claims wait the longest lease. sendBy (half the margin
// after the claim) needs no change: the rest of such a lease still covers the request.
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
// # Rate limits
//
// A subscription may have a rate_limit (requests per second, fractions allowed). It is a
// token bucket of one second's worth (at least one token) that refills continuously, kept
// in the database (rate_buckets) and spent by the claim itself: lease_due gives a
// rate-limited subscription no more leases than its whole tokens and charges them in the
// same transaction, under the claim lock. So:
//   - the limit holds across replicas and hand-overs: a new active relay, or two relays
//     that both believe they are active for a moment, continue the same bucket, and a
//     leader change lets no burst through. (A bucket in the active relay's memory would
//     start full on every hand-over, or need a rule to start empty that throttles a
//     subscription that was idle.) A claim lost in a database crash (claims commit without
//     waiting for the flush) loses its charge too, and may let one second's worth through;
//   - a subscription waiting for tokens holds nothing: its deliveries stay pending in the
//     database, unleased, so it takes no worker, lane slot, lease or share of a claim (the
//     turn walk passes over a subscription without a whole token), and no lease of it runs
//     out while it waits;
//   - the notification's claim (fan_out) never leases a rate-limited subscription's new
//     deliveries at insert; lease_due does, from the bucket.
//
// Claims are made when something calls for them (a notification, a record, a poll), not
// when a token is earned, so each claim that leases for a rate-limited subscription
// schedules a claim for one token interval (1/rate_limit) later (paceRateLimited): the
// claim empties the bucket of whole tokens, so by then it holds one. A backlog thus goes
// out evenly at the rate, and the chain ends when the claim finds nothing more; the poll
// restarts it after a restart or a hand-over. Unlimited subscriptions pay nothing for
// this: the bucket is read only for a subscription with a rate_limit.
//
// # Turns
//
// A claim does not take the oldest due deliveries of all (one tenant's backlog of thousands
// would hold every other tenant's new event back), nor probe every active subscription (its
// cost would grow with their number). It takes turns: tenants with pending work first, after
// the tenant served last, each with an equal share of the claim; within a tenant, its
// subscriptions with due work, after the subscription served last; then deliveries
// round-robin between tenants and between a tenant's subscriptions. Where each turn stopped
// is kept in the database, so every replica continues it. See lease_due in
// outbox/functions/lease_due.sql.
//
// # Claiming ahead
//
// Claimed jobs wait in lanes, one per subscription, that take turns handing jobs to the
// workers, each keeping at most MaxInFlightPerSubscription on the wire. A subscription seen
// answering fast may hold up to MaxLeasedPerSubscription leases (16 waves by default), so its
// workers never wait for the database between waves; any other (new, slow, hanging) holds no
// more than it may send at once. A job that waited in its lane for half the lease margin is
// not sent but released, so no lease ends while its request is on the wire.
//
// # Batching
//
// The results of requests that end within a few milliseconds of each other are recorded by
// one statement, and for a batch with no failure that same call (record_and_lease) claims as
// many as it freed. A kick (new deliveries fanned out) that arrives while such a record is
// on its way is left to it rather than sent as a second claim. Each statement goes out in
// one round trip (internal/pgstmt), and the claim and record logic lives in PL/pgSQL
// functions (outbox/functions/), so under load one round trip records and refills up to
// hundreds of deliveries: a record takes up to maxRecordBatch results, and a claim the room
// they free, up to defaults.BacklogBatches times BatchSize.
//
// # Client certificates
//
// A subscription with a client certificate (mTLS) is sent to through a client of its own,
// made by Config.ClientWithCertificate and cached per subscription and certificate; all
// others share Config.Client. The claims do not carry the certificate: the deliverer looks
// it up by subscription id, at most once per 15 seconds per subscription and in one query
// per claim (clientcert.go says why). A key no configured key opens blocks the subscription
// like an unopenable secret; a subscription never looked up while that query fails is
// given back unsent rather than sent without a certificate it may need.
//
// # Outcomes
//
// Any 2xx is success. Everything else fails the attempt: another status (3xx included:
// redirects are never followed), a timeout, a connection or TLS error, an egress proxy that
// refused or dropped the tunnel (its answer is the attempt's error; relay/egress builds the
// client). A failed attempt is retried after the next delay of the schedule (or later, when
// a 429 or 503 carries Retry-After); after the last, the delivery is failed. A 410 fails the delivery at once,
// disables the subscription and cancels its other pending deliveries. A payload larger
// than MaxPayloadBytes, or an event whose created_at is not a finite time, fails without a
// request.
//
// Every text from the receiver (a Location, a body, the text of a TLS error quoting a
// certificate) goes through internal/pgtext before it is stored.
//
// # Faults of the relay itself
//
// Some failures are this relay's, not the receiver's, and are never recorded as attempts:
//   - a request that cannot be made for want of a file descriptor, memory, buffer space or
//     a local port: the claim is released (its attempt number given back) and due again
//     after localFaultRetry; Trouble reports it for a while;
//   - a subscription whose secret or sealed header no configured key opens: the claim is
//     released unsent, the subscription reported (KeyProblems) and passed over by this
//     replica's claims, until a relay with the right key (or a rotated secret) takes it;
//   - a database error (see below).
//
// Each is counted in the local-faults metric by kind.
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
// batches; a failed write is retried with backoff until it succeeds or the shutdown
// deadline passes, and Trouble reports a recorder that has not written for
// recordStallLimit. A batch the database refuses for its data (internal/pgerr.RefusedData)
// is not retried as it is: it is written row by row, and a row refused alone is recorded
// with its texts replaced by a note. If a lease expires meanwhile another replica may send
// the same attempt again, which at-least-once allows and receivers dedupe on webhook-id.
//
// # Shutdown
//
// When Run's context ends the deliverer stops claiming, releases every claim still queued
// (the attempt number is given back) so another replica takes them at once, lets requests in
// flight finish, and records their results, all within ShutdownGrace: requests still on the
// wire recordReserve before its end are cut, and results not written by then are given up.
//
// # Duplicates
//
// A crash (kill -9) between a receiver's answer and its record means that request is sent
// again after the lease ends: at most the leases one subscription holds, and in practice the
// few results awaiting their batch. Claims queued and never sent are not duplicates.
package deliver
