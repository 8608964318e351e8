package main

// Fleet tests: many relays on one database, as sidecars of an application's pods. One is
// the active relay, the others stand by; a killed or stopped active relay is replaced, and
// what each relay costs the database stays small.

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// fleetReceiver answers 200 after a settable delay and records, per webhook-id, how many
// times and when it arrived, and the most requests it had on hand at once.
type fleetReceiver struct {
	*relaytest.Receiver
	delay      atomic.Int64 // nanoseconds
	onHand     atomic.Int64
	maxOnHand  atomic.Int64
	mu         sync.Mutex
	arrivals   map[string][]time.Time
	arrivedAny chan string
}

func newFleetReceiver(t *testing.T) *fleetReceiver {
	fr := &fleetReceiver{Receiver: relaytest.NewReceiver(t), arrivals: map[string][]time.Time{}, arrivedAny: make(chan string, 10000)}
	fr.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		n := fr.onHand.Add(1)
		for m := fr.maxOnHand.Load(); n > m && !fr.maxOnHand.CompareAndSwap(m, n); m = fr.maxOnHand.Load() {
		}
		id := r.Header.Get("webhook-id")
		fr.mu.Lock()
		fr.arrivals[id] = append(fr.arrivals[id], time.Now())
		fr.mu.Unlock()
		time.Sleep(time.Duration(fr.delay.Load()))
		fr.onHand.Add(-1)
		w.WriteHeader(http.StatusOK)
		select {
		case fr.arrivedAny <- id:
		default:
		}
	}
	return fr
}

func (fr *fleetReceiver) received() (distinct, dups int) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	for _, at := range fr.arrivals {
		distinct++
		dups += len(at) - 1
	}
	return distinct, dups
}

// publishOne inserts one event and answers its event ID and the moment before the insert.
func publishOne(t *testing.T, db *sqlx.DB) (string, time.Time) {
	t.Helper()
	start := time.Now()
	var id string
	require.NoError(t, db.Get(&id, `INSERT INTO relay.outbox (event_type, payload) VALUES ('signup.created', '{}') RETURNING event_id`))
	return id, start
}

// waitArrival waits for the event's first arrival and answers it.
func (fr *fleetReceiver) waitArrival(t *testing.T, eventID string, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	relaytest.Eventually(t, timeout, func() bool {
		fr.mu.Lock()
		defer fr.mu.Unlock()
		if a := fr.arrivals[eventID]; len(a) > 0 {
			at = a[0]
			return true
		}
		return false
	}, "event %s never arrived", eventID)
	return at
}

// activeOf answers the index of the relay whose /readyz says it is the active one, or -1.
// /readyz reads no database, so asking costs the relays no connection.
func activeOf(t *testing.T, procs []*relayProcess, gone map[int]bool) []int {
	t.Helper()
	var active []int
	for i, p := range procs {
		if gone[i] {
			continue
		}
		if status, body := p.readyz(t); status == http.StatusOK && strings.TrimSpace(body) == "ok" {
			active = append(active, i)
		}
	}
	return active
}

func waitActive(t *testing.T, procs []*relayProcess, gone map[int]bool, timeout time.Duration) int {
	t.Helper()
	var active []int
	relaytest.Eventually(t, timeout, func() bool {
		active = activeOf(t, procs, gone)
		return len(active) == 1
	}, "not exactly one active relay: %v", active)
	return active[0]
}

// connectionsByRelay counts the client connections of each relay (by application_name).
func connectionsByRelay(t *testing.T, db *sqlx.DB) map[string]int {
	t.Helper()
	rows, err := db.Queryx(`SELECT application_name, count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend' AND application_name LIKE 'fleet-%'
		GROUP BY 1`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		require.NoError(t, rows.Scan(&name, &n))
		out[name] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func TestFleetOneActiveRelayTheOthersStandBy(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newFleetReceiver(t)
	subID := addSubscription(t, db, rc.URL+"/hook")

	const relays, inFlightCap = 4, 4
	// A 5s poll: whatever arrives within 500ms came by a notification.
	env := []string{"RELAY_POLL_INTERVAL=5s", "RELAY_DELIVERY_TIMEOUT=2s", "RELAY_LOG_LEVEL=info",
		fmt.Sprintf("RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION=%d", inFlightCap)}
	procs := make([]*relayProcess, relays)
	for i := range procs {
		procs[i] = startRelay(t, fmt.Sprintf("%s&application_name=fleet-%d", dsn, i), env...)
	}
	started := time.Now()
	gone := map[int]bool{}

	// Exactly one is active; the others say they stand by and name it.
	active := waitActive(t, procs, gone, 15*time.Second)
	for i, p := range procs {
		status, body := p.readyz(t)
		require.Equal(t, http.StatusOK, status, "a standby is ready too: %s", body)
		if i != active {
			// A standby reads the leader row once a second: it may not have seen the election yet.
			relaytest.Eventually(t, 5*time.Second, func() bool {
				_, body = p.readyz(t)
				return strings.Contains(body, "ok (standby; the active relay is ")
			}, "relay %d never named the active relay", i)
		}
	}

	// A new event reaches the receiver through LISTEN/NOTIFY, not at the next poll.
	for range 5 {
		id, at := publishOne(t, db)
		took := rc.waitArrival(t, id, 5*time.Second).Sub(at)
		require.Less(t, took, 500*time.Millisecond, "an event waited for the poll")
	}

	// A test event queued through a standby's API is sent by the active relay at once: the
	// standby notifies it rather than leaving it to the next poll.
	standby := (active + 1) % relays
	sentAt := time.Now()
	status, out := procs[standby].call(t, http.MethodPost, "/v1/subscriptions/"+subID+"/test", nil)
	require.Equal(t, http.StatusAccepted, status, "%v", out)
	testID, _ := out["event_id"].(string)
	require.Less(t, rc.waitArrival(t, testID, 5*time.Second).Sub(sentAt), 500*time.Millisecond, "the test event waited for the poll")

	// At idle a standby holds one connection and the active relay two (LISTEN and one
	// pooled): the rest close after 10s unused. Idle is counted from the last event, not from
	// the start: on a loaded machine the events above may take seconds.
	idleSince := time.Now()
	atIdle := func(conns map[string]int) bool {
		for i := range procs {
			limit := 1
			if i == active {
				limit = 2
			}
			if i == standby && time.Since(idleSince) < 11*time.Second {
				limit = 2 // it served an API request lately: one pooled connection may still be idling
			}
			if conns[fmt.Sprintf("fleet-%d", i)] > limit {
				return false
			}
		}
		return true
	}
	time.Sleep(time.Until(started.Add(13 * time.Second)))
	var conns map[string]int
	relaytest.Eventually(t, time.Until(idleSince.Add(13*time.Second))+time.Second, func() bool {
		conns = connectionsByRelay(t, db)
		return atIdle(conns)
	}, "connections at idle (active: fleet-%d): %v", active, &conns)
	t.Logf("connections at idle: %v (active: fleet-%d)", conns, active)

	// kill -9 the active relay in the middle of a backlog: another takes over, and every
	// event arrives with the in-flight cap kept throughout.
	rc.delay.Store(int64(50 * time.Millisecond))
	insertEvents(t, db, 300, 100)
	relaytest.Eventually(t, 30*time.Second, func() bool { d, _ := rc.received(); return d >= 6+50 }, "the backlog did not start")
	require.NoError(t, procs[active].cmd.Process.Kill())
	<-procs[active].exited
	killed := time.Now()
	gone[active] = true
	next := waitActive(t, procs, gone, 20*time.Second)
	took := time.Since(killed)
	t.Logf("kill -9: relay %d took over after %s", next, took)
	require.Less(t, took, 2*time.Second+10*time.Second, "within RELAY_DELIVERY_TIMEOUT + 10s")
	waitAllSucceeded(t, db, 306, time.Minute, procs[next])

	// SIGTERM the active relay while requests are in flight: it finishes them, resigns at
	// once, and a standby takes over at its next look (about a second), not after the lease.
	rc.delay.Store(int64(300 * time.Millisecond))
	insertEvents(t, db, 40, 40)
	relaytest.Eventually(t, 30*time.Second, func() bool { d, _ := rc.received(); return d >= 306+8 }, "the second backlog did not start")
	stopping := procs[next]
	stopped := make(chan int, 1)
	termAt := time.Now()
	go func() { stopped <- stopping.stop(t) }()
	gone[next] = true
	third := waitActive(t, procs, gone, 10*time.Second)
	handover := time.Since(termAt)
	t.Logf("SIGTERM: relay %d took over after %s", third, handover)
	require.Less(t, handover, 3*time.Second, "the stopping relay resigned; the standby did not wait for its lease to expire")
	require.Equal(t, 0, <-stopped, "SIGTERM drains and exits 0")
	waitAllSucceeded(t, db, 346, time.Minute, procs[third])

	distinct, dups := rc.received()
	require.Equal(t, 346, distinct, "every event arrived")
	// The documented bound (README, Guarantees): duplicates after a crash are bounded by the
	// leases one subscription may hold, 16 x the in-flight cap, since claims run ahead of
	// sends and results wait to be recorded together. Half of that used to be asserted here:
	// on a loaded machine, a record waiting for a slow disk flush holds more answered
	// results, and a CI run saw 47 with a cap of 4.
	require.LessOrEqual(t, dups, inFlightCap*16, "only leases held at the kill are sent again")
	require.LessOrEqual(t, rc.maxOnHand.Load(), int64(inFlightCap), "the in-flight cap held across the hand-overs")

	// The new active relay delivers at once too.
	id, at := publishOne(t, db)
	require.Less(t, rc.waitArrival(t, id, 5*time.Second).Sub(at), 500*time.Millisecond)
	t.Logf("delivered %d events, %d duplicates, at most %d requests at once", distinct+1, dups, rc.maxOnHand.Load())
}
