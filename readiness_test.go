package main

// Readiness tests: /readyz must tell the truth when the relay's own work keeps failing
// while the database is still reachable (a function or column gone after a bad manual
// change, say), and return to 200 once the work succeeds again, with nothing lost.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// readinessBreakLimit is how long /readyz may take to turn 503 once every claim fails
// (health.FailingLimit is 3s, plus slack for a loaded machine), and to turn 200 again once
// the claims succeed (the next retry after a backoff, then the failure ratio clearing).
const readinessBreakLimit = 8 * time.Second

// readinessRelay starts one relay on a new migrated database with one subscription to
// everything, and waits until it is the active relay and has delivered one event and
// recorded it.
func readinessRelay(t *testing.T) (*sqlx.DB, *relayProcess, *fleetReceiver) {
	t.Helper()
	db, dsn := relaytest.NewDB(t)
	rc := newFleetReceiver(t)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn, "RELAY_LOG_LEVEL=info")

	id, _ := publishOne(t, db)
	rc.waitArrival(t, id, 15*time.Second)
	// Its result recorded too: no record is left to retry once the tests break something.
	relaytest.Eventually(t, 10*time.Second, func() bool {
		status, ev := p.call(t, http.MethodGet, "/v1/events/"+id, nil)
		deliveries, _ := ev["deliveries"].([]any)
		return status == http.StatusOK && len(deliveries) == 1 && deliveries[0].(map[string]any)["status"] == "succeeded"
	}, "the first delivery was never recorded as succeeded")
	status, body := p.readyz(t)
	require.Equal(t, http.StatusOK, status, "ready after a delivery: %s", body)
	require.Equal(t, "ok", strings.TrimSpace(body), "the only relay is the active one")
	return db, p, rc
}

// waitReadyz polls /readyz until it answers want, and answers how long that took and the
// body it gave.
func waitReadyz(t *testing.T, p *relayProcess, want int, timeout time.Duration, what string) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	var status int
	var body string
	relaytest.Eventually(t, timeout, func() bool {
		status, body = p.readyz(t)
		return status == want
	}, "%s: /readyz did not answer %d within %s; last %d %q\nrelay output:\n%s",
		what, want, timeout, status, body, tail(p.Output(), 30))
	return time.Since(start), strings.TrimSpace(body)
}

// requireStaysUnready polls /readyz for d and requires every answer to be 503 naming
// reason: past health.FailingLimit, so that both of its rules (failing as often as
// succeeding, and failing without a success for longer than the limit) are seen to hold
// while the work keeps failing.
func requireStaysUnready(t *testing.T, p *relayProcess, d time.Duration, reason string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		status, body := p.readyz(t)
		require.Equal(t, http.StatusServiceUnavailable, status, "ready again while still broken: %s", body)
		require.Contains(t, body, reason)
	}
}

// requireNotArrived checks that the event has not reached the receiver (yet).
func (fr *fleetReceiver) requireNotArrived(t *testing.T, eventID, why string) {
	t.Helper()
	fr.mu.Lock()
	defer fr.mu.Unlock()
	require.Empty(t, fr.arrivals[eventID], why)
}

func TestReadinessWhenDeliveryClaimsFail(t *testing.T) {
	t.Parallel()
	db, p, rc := readinessRelay(t)

	// Every claim of due deliveries now fails: lease_due, and the notification's claim, which
	// leases new deliveries as it fans them out; the database answers everything else (the
	// dispatcher's fan-out too).
	const args = `(integer, text, bigint, integer, integer, integer, text[], text[])`
	const notified = `(integer, boolean, integer, text, bigint, integer, integer, integer, text[], text[])`
	_, err := db.Exec(`ALTER FUNCTION relay.lease_due` + args + ` RENAME TO lease_due_broken`)
	require.NoError(t, err)
	_, err = db.Exec(`ALTER FUNCTION relay.fan_out_and_lease_due` + notified + ` RENAME TO fan_out_and_lease_due_broken`)
	require.NoError(t, err)
	id, _ := publishOne(t, db)

	took, body := waitReadyz(t, p, http.StatusServiceUnavailable, readinessBreakLimit, "claims failing")
	t.Logf("claims failing: /readyz 503 after %s: %s", took.Round(10*time.Millisecond), body)
	require.Contains(t, body, "claiming deliveries", "the reason names the failing work")
	require.Contains(t, body, "lease_due", "the reason carries the database's error")
	requireStaysUnready(t, p, 4*time.Second, "claiming deliveries")

	// Meanwhile the event was fanned out, but not sent: the API shows it pending.
	rc.requireNotArrived(t, id, "an event was sent while every claim failed")
	status, ev := p.call(t, http.MethodGet, "/v1/events/"+id, nil)
	require.Equal(t, http.StatusOK, status, "%v", ev)
	deliveries, _ := ev["deliveries"].([]any)
	require.Len(t, deliveries, 1, "the dispatcher still fans out: %v", ev)
	require.Equal(t, "pending", deliveries[0].(map[string]any)["status"], "%v", ev)

	requireRepaired(t, db, p, rc, id, "claims", `ALTER FUNCTION relay.lease_due_broken`+args+` RENAME TO lease_due;
		ALTER FUNCTION relay.fan_out_and_lease_due_broken`+notified+` RENAME TO fan_out_and_lease_due`)
}

// requireRepaired runs repair, then requires /readyz to answer 200 "ok" again, the event
// written while broken (id) to arrive, a new event to go out as usual, nothing lost or
// doubled (the readiness relay's first event, id, and the new one), and SIGTERM to exit 0.
func requireRepaired(t *testing.T, db *sqlx.DB, p *relayProcess, rc *fleetReceiver, id, what, repair string) {
	t.Helper()
	_, err := db.Exec(repair)
	require.NoError(t, err)
	repaired := time.Now()

	took, body := waitReadyz(t, p, http.StatusOK, readinessBreakLimit, what+" repaired")
	t.Logf("%s repaired: /readyz 200 after %s: %s", what, took.Round(10*time.Millisecond), body)
	require.Equal(t, "ok", body)
	at := rc.waitArrival(t, id, readinessBreakLimit)
	t.Logf("%s repaired: the event written while broken arrived %s after the repair", what, at.Sub(repaired).Round(10*time.Millisecond))

	id2, _ := publishOne(t, db)
	rc.waitArrival(t, id2, 10*time.Second)
	distinct, dups := rc.received()
	require.Equal(t, 3, distinct)
	require.Zero(t, dups)
	require.Equal(t, 0, p.stop(t), "SIGTERM exits 0")
}

func TestReadinessWhenDispatchFails(t *testing.T) {
	t.Parallel()
	db, p, rc := readinessRelay(t)

	// Every fan-out of outbox rows now fails (it reads and sets dispatched_at); the
	// application can still write events.
	_, err := db.Exec(`ALTER TABLE relay.outbox RENAME COLUMN dispatched_at TO dispatched_at_broken`)
	require.NoError(t, err)
	id, _ := publishOne(t, db)

	took, body := waitReadyz(t, p, http.StatusServiceUnavailable, readinessBreakLimit, "fan-outs failing")
	t.Logf("fan-outs failing: /readyz 503 after %s: %s", took.Round(10*time.Millisecond), body)
	require.Contains(t, body, "dispatching outbox rows", "the reason names the failing work")
	require.Contains(t, body, "dispatched_at", "the reason carries the database's error")
	requireStaysUnready(t, p, 4*time.Second, "dispatching outbox rows")

	// The event was not fanned out: the API shows it with no delivery.
	rc.requireNotArrived(t, id, "an event was sent while every fan-out failed")
	status, ev := p.call(t, http.MethodGet, "/v1/events/"+id, nil)
	require.Equal(t, http.StatusOK, status, "%v", ev)
	deliveries, _ := ev["deliveries"].([]any)
	require.Empty(t, deliveries, "no delivery while fan-outs fail: %v", ev)

	requireRepaired(t, db, p, rc, id, "fan-outs", `ALTER TABLE relay.outbox RENAME COLUMN dispatched_at_broken TO dispatched_at`)
}
