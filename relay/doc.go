// Package relay runs outbox-relay: it migrates the schema, then runs side by side
//
//   - notify: a LISTEN connection that wakes the dispatcher when rows are inserted;
//   - dispatch: claims outbox rows and fans them out into deliveries;
//   - deliver: claims due deliveries, sends signed requests, records attempts;
//   - keycheck: finds active subscriptions whose secrets no configured key opens;
//   - retention: deletes finished rows older than RELAY_RETENTION;
//   - api: the management API on RELAY_LISTEN_ADDR;
//   - the ops server on RELAY_OPS_ADDR: /healthz, /readyz, /metrics.
//
// Every replica runs all of them; PostgreSQL row locks and leases coordinate replicas, so
// there is no leader and nothing to elect. Run blocks until its context ends, then stops
// claiming, lets requests in flight finish, releases what it did not send, and returns, all
// within RELAY_SHUTDOWN_GRACE. A database that is down at start-up or goes away later is
// waited for and retried; it is never a reason to exit.
//
// # Readiness
//
// /readyz answers 200 only while the relay can do its work, and otherwise 503 with the
// reason: the schema is not migrated yet, claims or fan-outs do not reach the database,
// attempt results could not be recorded for 5s, a request failed for a reason of this
// process (out of file descriptors, say) within the last 10s, an active subscription's
// secret cannot be opened with the configured keys, or the LISTEN connection is down.
//
// # Listeners
//
// Every listener bounds its connections and their read, write and idle times (servers.go),
// so that clients cannot take the file descriptors webhook requests and the database need.
package relay
