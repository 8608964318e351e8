// Package relay runs outbox-relay: it migrates the schema, then runs side by side
//
//   - leader: elects the active relay among all that share the schema;
//   - notify: a LISTEN connection that says when rows are inserted;
//   - deliver: claims due deliveries, sends signed requests, records attempts; a claim
//     made after a notification first fans the new rows out, in the same statement, so a
//     new event reaches its request in one round trip;
//   - dispatch: fans outbox rows out into deliveries where the deliverer does not: a
//     backlog (in growing batches), at each poll, and while the deliverer's fan-outs fail;
//   - keycheck: finds active subscriptions whose secrets no configured key opens;
//   - retention: deletes finished rows older than RELAY_RETENTION;
//   - api: the management API on RELAY_LISTEN_ADDR;
//   - the ops server on RELAY_OPS_ADDR: /healthz, /readyz, /metrics.
//
// Run blocks until its context ends, then stops claiming, lets requests in flight finish,
// releases what it did not send, and returns, all within RELAY_SHUTDOWN_GRACE. A database
// that is down at start-up or goes away later is waited for and retried; it is never a
// reason to exit.
//
// # One active relay
//
// The relay's shape is a sidecar in every application pod, so a deployment runs as many
// relays as the application runs pods, all on the application's database. When every one of
// them claimed, each added relay added its polls, its LISTEN connection, its pool, and a share
// of every notification (all of them woke for each insert and raced for the same rows): 16
// relays cost the database 11 times the transactions of one per event, held 65 connections
// and made the application's own INSERTs 4 times slower at the 99th percentile.
//
// So one relay of those sharing a schema is active: it listens, fans out, claims, sends and
// cleans up. The others stand by: each serves the API (in reverse-proxy mode, its pod's
// customers) and reads the election row once a second over one pooled connection, and that
// is all they cost. What the fleet costs the database no longer grows with its size (make
// bench -scenarios fleet: 16 relays cost 1.04 times one relay's transactions per event, and
// hold 17 connections at idle). The price is that one relay's RELAY_WORKERS carry the
// fleet's webhooks, which on two cores is thousands per second; a deployment that needs more
// runs the standalone chart with more workers.
//
// The alternatives were weighed. Every relay claiming with SKIP LOCKED (River's model for
// jobs) is what cost the above. Assigning subscriptions or hash ranges to live relays
// (Kafka's consumer groups) keeps every relay's pool and LISTEN connection busy, and moves
// work on every pod start and stop, which a rolling deploy of 50 pods makes constant. One
// elected relay needs no assignment, no rebalancing, and only its own connections.
//
// The election (relay/leader) is a row with an expiry, renewed every second for 5 seconds, in
// the database's clock. No session state: no advisory lock and no LISTEN, so it works through
// PgBouncer in transaction mode, and nothing is held while a standby waits.
//
// How it fails:
//
//   - The active relay is killed (kill -9, OOM, node loss): its row expires within 5s and the
//     first standby to look takes over within a second of that. The deliveries the dead relay
//     had claimed come free when their own leases end (RELAY_DELIVERY_TIMEOUT + 5s) and the
//     new relay claims them: within RELAY_DELIVERY_TIMEOUT + 10s, as before.
//   - The active relay is stopped (SIGTERM, a rolling deploy): it stops claiming and resigns
//     at once (the row's expiry is set to now), so a standby takes over at its next look,
//     about a second, while the old one finishes its requests in flight and records them.
//   - The active relay cannot reach the database: it cannot renew, and it stands down on its
//     own clock one heartbeat before its row could expire (measured from before it sent its
//     last successful renewal, so never later than the database would let another take
//     over). A standby that can reach the database takes over; if none can, nothing could be
//     claimed anyway.
//   - Two relays both believe they are active, for a moment: one paused (a stop-the-world
//     pause, a frozen VM) past its lease and resumed before it noticed, or a clock that
//     jumped. This is safe because the election only decides who tries to claim; what may be
//     claimed is still decided by the database, row by row. A delivery is leased to one owner
//     with an expiry and its result is recorded only by the owner of that lease for that
//     attempt; the in-flight cap of a subscription counts the leases in the database, whoever
//     holds them; ordered keys let only the oldest unfinished delivery be claimed; and outbox
//     rows are claimed with FOR UPDATE SKIP LOCKED and fanned out with ON CONFLICT DO NOTHING.
//     Two active relays cost more; they cannot send what another holds, exceed a cap, reorder
//     a key or create a delivery twice. Every guarantee held with any number of claiming
//     relays before the election existed, and the deliver and dispatch tests still run several
//     claimers at once.
//   - No relay is active (all standbys failing to reach the database, or between a kill and
//     the takeover): events wait in the outbox, committed, and go out once one is active.
//
// # Readiness
//
// /readyz answers 200 only while the relay can do its work, and otherwise 503 with the
// reason: the schema is not migrated yet, the election row cannot be read or renewed, results
// could not be recorded for 5s, a request failed for a reason of this process (out of file
// descriptors, say) within the last 10s, or an active subscription's secret cannot be opened
// with the configured keys; on the active relay also fan-outs or claims failing, or the LISTEN
// connection down. "Failing" means for 3s without a success, or at least as often as
// succeeding over 10s (internal/health), so that an error every other statement, which lets
// a trickle through while the work stalls, is not called healthy. A standby is ready, and says
// which relay is active: it serves the API and takes over within seconds, and as a sidecar its
// readiness is its pod's, which an unready standby would take out of service.
//
// # Listeners
//
// Every listener bounds its connections and their read, write and idle times (servers.go),
// so that clients cannot take the file descriptors webhook requests and the database need.
package relay
