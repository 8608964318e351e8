// Package relay runs outbox-relay: it migrates the schema, then runs side by side
//
//   - notify: a LISTEN connection that wakes the dispatcher when rows are inserted;
//   - dispatch: claims outbox rows and fans them out into deliveries;
//   - deliver: claims due deliveries, sends signed requests, records attempts;
//   - retention: deletes finished rows older than RELAY_RETENTION;
//   - api: the management API on RELAY_LISTEN_ADDR;
//   - the ops server on RELAY_OPS_ADDR: /healthz, /readyz.
//
// Every replica runs all of them; PostgreSQL row locks and leases coordinate replicas, so
// there is no leader and nothing to elect. Run blocks until its context ends, then stops
// claiming, lets requests in flight finish within RELAY_SHUTDOWN_GRACE, releases what it
// did not send, and returns. A database that is down at start-up or goes away later is
// waited for and retried; it is never a reason to exit.
package relay
