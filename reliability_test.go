package main

// Reliability tests: several real relay processes, crashes, database outages, lost
// notifications and misbehaving receivers. Every test ends by checking that each
// (event, subscription) pair was delivered and recorded, and counts duplicates.

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// countingReceiver counts requests per (path, webhook-id) and can be slowed down.
type countingReceiver struct {
	*relaytest.Receiver
	mu     sync.Mutex
	counts map[string]int
	total  atomic.Int64
}

func newCountingReceiver(t *testing.T, delay time.Duration) *countingReceiver {
	cr := &countingReceiver{Receiver: relaytest.NewReceiver(t), counts: map[string]int{}}
	cr.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if delay > 0 {
			time.Sleep(delay)
		}
		cr.mu.Lock()
		cr.counts[r.URL.Path+" "+r.Header.Get("webhook-id")]++
		cr.mu.Unlock()
		cr.total.Add(1)
		w.WriteHeader(http.StatusOK)
	}
	return cr
}

// duplicates answers the number of distinct pairs received and the requests beyond one per
// pair.
func (cr *countingReceiver) duplicates() (pairs, dups int) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for _, n := range cr.counts {
		pairs++
		dups += n - 1
	}
	return pairs, dups
}

func addSubscription(t *testing.T, db *sqlx.DB, url string) string {
	t.Helper()
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	id := ids.NewSubscriptionID()
	_, err = db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ($1, $2, '{*}', $3)`, id, url, secret)
	require.NoError(t, err)
	return id
}

// insertEvents writes n events in transactions of batch rows, as an application would.
func insertEvents(t *testing.T, db *sqlx.DB, n, batch int) {
	t.Helper()
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		_, err := db.Exec(`INSERT INTO relay.outbox (event_type, tenant_id, payload)
			SELECT 'signup.created', 'wl_1', jsonb_build_object('seq', $1::int + g) FROM generate_series(1, $2::int) g`, done, k)
		require.NoError(t, err)
	}
}

func countWhere(t *testing.T, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, query, args...))
	return n
}

// waitAllSucceeded waits until want deliveries exist and all have succeeded.
func waitAllSucceeded(t *testing.T, db *sqlx.DB, want int, timeout time.Duration, procs ...*relayProcess) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok := countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`)
		if ok == want {
			require.Equal(t, want, countWhere(t, db, `SELECT count(*) FROM relay.deliveries`))
			return
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				t.Logf("relay output:\n%s", tail(p.Output(), 40))
			}
			t.Fatalf("%d of %d deliveries succeeded within %s (undispatched events: %d)", ok, want, timeout,
				countWhere(t, db, `SELECT count(*) FROM relay.outbox WHERE dispatched_at IS NULL`))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestReliabilityThreeReplicas(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Empty)
	rc := newCountingReceiver(t, 0)

	// Three replicas start at once on an empty database: they race to migrate.
	var procs [3]*relayProcess
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); procs[i] = startRelay(t, dsn, "RELAY_LOG_LEVEL=info") }()
	}
	wg.Wait()
	addSubscription(t, db, rc.URL+"/a")
	addSubscription(t, db, rc.URL+"/b")

	const events = 5000
	var writers sync.WaitGroup
	for w := range 5 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for done := 0; done < events/5; done += 50 {
				_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload)
					SELECT 'signup.created', jsonb_build_object('writer', $1::int, 'seq', $2::int + g) FROM generate_series(1, 50) g`, w, done)
				require.NoError(t, err)
			}
		}()
	}
	writers.Wait()

	waitAllSucceeded(t, db, 2*events, 3*time.Minute, procs[:]...)
	time.Sleep(500 * time.Millisecond) // let any straggling duplicate arrive before counting
	pairs, dups := rc.duplicates()
	t.Logf("3 replicas, 2 subscriptions, %d events: %d pairs delivered, %d requests, %d duplicates", events, pairs, rc.total.Load(), dups)
	require.Equal(t, 2*events, pairs, "every (event, subscription) pair arrived")
	require.Zero(t, dups, "no duplicates with healthy receivers")
	require.Equal(t, 2*events, countWhere(t, db, `SELECT count(*) FROM relay.attempts`), "one attempt recorded per delivery")
	for _, p := range procs {
		require.Equal(t, 0, p.stop(t))
	}
}

func TestReliabilityKill9MidBacklog(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 10*time.Millisecond)
	addSubscription(t, db, rc.URL+"/slow")
	const events = 2000
	insertEvents(t, db, events, 500)

	// Delivery timeout 2s: a dead replica's claims are free again 7s after they were taken.
	env := []string{"RELAY_DELIVERY_TIMEOUT=2s", "RELAY_LOG_LEVEL=info"}
	first := startRelay(t, dsn, env...)
	relaytest.Eventually(t, time.Minute, func() bool { return rc.total.Load() >= 300 }, "first relay delivered too little")
	require.NoError(t, first.cmd.Process.Kill()) // kill -9: no drain, no release
	<-first.exited
	killedAt := rc.total.Load()

	second := startRelay(t, dsn, env...)
	waitAllSucceeded(t, db, events, 3*time.Minute, second)
	pairs, dups := rc.duplicates()
	t.Logf("kill -9 after %d requests of %d: %d delivered, %d duplicates", killedAt, events, pairs, dups)
	require.Equal(t, events, pairs, "nothing lost")
	// Only requests sent and not yet recorded at the kill can be sent twice: at most the
	// leases one subscription may hold (8 x the in-flight cap of 16), and in practice far
	// fewer; claims queued and never sent are not duplicates.
	require.LessOrEqual(t, dups, 128)
	require.Zero(t, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE lease_owner IS NOT NULL`))
	require.Equal(t, 0, second.stop(t))
}

func TestReliabilityDatabaseOutage(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	proxy := relaytest.NewProxy(t, relaytest.TargetOf(t, dsn))
	rc := newCountingReceiver(t, 0)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, proxy.ProxyURL(t, dsn), "RELAY_LOG_LEVEL=info")

	insertEvents(t, db, 300, 100)
	relaytest.Eventually(t, 30*time.Second, func() bool { return rc.total.Load() >= 300 }, "first events not delivered")

	// The network to the database goes away while the application keeps writing.
	proxy.Cut()
	insertEvents(t, db, 300, 100)
	relaytest.Eventually(t, 15*time.Second, func() bool { return readyStatus(p) == http.StatusServiceUnavailable }, "readyz stayed 200 with the database unreachable")
	time.Sleep(2 * time.Second)
	proxy.Restore()

	waitAllSucceeded(t, db, 600, time.Minute, p)
	relaytest.Eventually(t, 15*time.Second, func() bool { return readyStatus(p) == http.StatusOK }, "readyz never recovered")

	// The server itself drops every connection of the relay (as on a failover or restart).
	insertEvents(t, db, 200, 100)
	_, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	require.NoError(t, err)
	insertEvents(t, db, 200, 100)
	waitAllSucceeded(t, db, 1000, time.Minute, p)

	pairs, dups := rc.duplicates()
	t.Logf("database outage: %d delivered, %d duplicates", pairs, dups)
	require.Equal(t, 1000, pairs, "nothing lost")
	require.Equal(t, 0, p.stop(t))
}

func readyStatus(p *relayProcess) int {
	resp, err := http.Get(p.opsURL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReliabilityLostNotificationIsPolled(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	listenProxy := relaytest.NewProxy(t, relaytest.TargetOf(t, dsn))
	rc := newCountingReceiver(t, 0)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn, "RELAY_LISTEN_DATABASE_URL="+listenProxy.ProxyURL(t, dsn), "RELAY_POLL_INTERVAL=2s")

	// With LISTEN up, a row arrives well before the next poll.
	insertEvents(t, db, 1, 1)
	start := time.Now()
	relaytest.Eventually(t, 10*time.Second, func() bool { return rc.total.Load() == 1 }, "notified row not delivered")
	t.Logf("with LISTEN: delivered %s after commit", time.Since(start).Round(time.Millisecond))

	// Cut the LISTEN connection: notifications are lost; the poll still finds the rows.
	listenProxy.Cut()
	relaytest.Eventually(t, 10*time.Second, func() bool { return readyStatus(p) == http.StatusServiceUnavailable }, "readyz stayed 200 without LISTEN")
	insertEvents(t, db, 10, 10)
	start = time.Now()
	relaytest.Eventually(t, 10*time.Second, func() bool { return rc.total.Load() == 11 }, "rows inserted while LISTEN was down never delivered")
	took := time.Since(start)
	t.Logf("without LISTEN: delivered %s after commit (poll interval 2s)", took.Round(time.Millisecond))
	require.Less(t, took, 3*time.Second, "within the poll interval, plus slack")

	listenProxy.Restore()
	relaytest.Eventually(t, 30*time.Second, func() bool { return readyStatus(p) == http.StatusOK }, "readyz never recovered after LISTEN came back")
	require.Equal(t, 0, p.stop(t))
}

func TestReliabilityBadReceiversDoNotSlowOthers(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	mux := http.NewServeMux()
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("z", 64<<10))
		w.WriteHeader(http.StatusInternalServerError)
		for range 160 { // 10 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://example.com/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
	})
	var healthy atomic.Int64
	mux.HandleFunc("/healthy", func(w http.ResponseWriter, r *http.Request) {
		healthy.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	rc := relaytest.NewReceiver(t)
	rc.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) { mux.ServeHTTP(w, r) }
	for _, path := range []string{"/hang", "/huge", "/redirect", "/close", "/healthy"} {
		addSubscription(t, db, rc.URL+path)
	}
	p := startRelay(t, dsn, "RELAY_DELIVERY_TIMEOUT=1s", "RELAY_RETRY_SCHEDULE=", "RELAY_WORKERS=32", "RELAY_LOG_LEVEL=info")

	const events = 100
	insertEvents(t, db, events, events)
	start := time.Now()
	relaytest.Eventually(t, 30*time.Second, func() bool { return healthy.Load() == events }, "healthy subscription starved")
	healthyTook := time.Since(start)
	// The hanging endpoint alone needs events/16 rounds of 1s; the healthy one must not wait
	// for it.
	t.Logf("healthy endpoint got all %d events in %s beside a hanging one", events, healthyTook.Round(time.Millisecond))
	require.Less(t, healthyTook, 5*time.Second)

	waitFinished := func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending'`) == 0
	}
	relaytest.Eventually(t, 2*time.Minute, waitFinished, "deliveries still pending")
	errorsByPath := map[string]string{}
	rows, err := db.Query(`SELECT DISTINCT ON (s.target_url) s.target_url, d.status, coalesce(a.error, '') FROM relay.deliveries d
		JOIN relay.subscriptions s ON s.id = d.subscription_id JOIN relay.attempts a ON a.delivery_id = d.id ORDER BY s.target_url`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var url, status, msg string
		require.NoError(t, rows.Scan(&url, &status, &msg))
		errorsByPath[strings.TrimPrefix(url, rc.URL)] = status + ": " + msg
	}
	require.Equal(t, "failed: timeout: no answer within 1s", errorsByPath["/hang"])
	require.Equal(t, "failed: HTTP 500", errorsByPath["/huge"])
	require.True(t, strings.HasPrefix(errorsByPath["/redirect"], "failed: HTTP 301: redirects are not followed"), errorsByPath["/redirect"])
	require.Equal(t, "failed: connection closed by the receiver before a response", errorsByPath["/close"])
	require.Equal(t, "succeeded: ", errorsByPath["/healthy"])
	require.Equal(t, 5*events, countWhere(t, db, `SELECT count(*) FROM relay.attempts`))
	require.Equal(t, 0, p.stop(t))
}

func TestReliabilitySigtermFinishesInFlightAndReleasesTheRest(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 500*time.Millisecond)
	addSubscription(t, db, rc.URL+"/slow")
	const events = 100
	insertEvents(t, db, events, events)
	p := startRelay(t, dsn, "RELAY_SHUTDOWN_GRACE=5s", "RELAY_LOG_LEVEL=info")
	relaytest.Eventually(t, 30*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE lease_owner IS NOT NULL`) > 0
	}, "nothing in flight")
	require.Equal(t, 0, p.stop(t), "SIGTERM exits 0")

	// What was on the wire finished and was recorded; nothing is left leased.
	require.Zero(t, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE lease_owner IS NOT NULL`), "claims left behind:\n%s", p.Output())
	sent := int(rc.total.Load())
	require.Equal(t, sent, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`))
	require.Less(t, sent, events, "the relay stopped claiming")
	require.Contains(t, p.Output(), "shutting down")

	next := startRelay(t, dsn)
	waitAllSucceeded(t, db, events, time.Minute, next)
	_, dups := rc.duplicates()
	require.Zero(t, dups, "a clean shutdown sends nothing twice")
	require.Equal(t, 0, next.stop(t))
}

// A recorder that cannot reach the database must not hold SIGTERM past the grace: the
// process exits within RELAY_SHUTDOWN_GRACE (Kubernetes kills at 30s by default; the
// default grace is 25s), the unrecorded request is sent again later, nothing is lost.
func TestReliabilitySigtermWithStuckRecorderEndsWithinGrace(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	proxy := relaytest.NewProxy(t, relaytest.TargetOf(t, dsn))
	rc := newCountingReceiver(t, time.Second)
	addSubscription(t, db, rc.URL+"/slow")
	const grace = 4 * time.Second
	p := startRelay(t, proxy.ProxyURL(t, dsn), "RELAY_SHUTDOWN_GRACE="+grace.String(), "RELAY_LOG_LEVEL=info")
	insertEvents(t, db, 5, 5)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE lease_owner IS NOT NULL`) > 0
	}, "nothing in flight")

	proxy.Cut() // the requests on the wire finish; their results cannot be written
	start := time.Now()
	require.Equal(t, 0, p.stop(t), "SIGTERM exits 0")
	took := time.Since(start)
	require.Less(t, took, grace+1500*time.Millisecond, "shutdown took %s with grace %s:\n%s", took, grace, tail(p.Output(), 20))
	require.Contains(t, p.Output(), "giving up recording attempts at shutdown")

	// Once the database is back another relay sends what was not recorded.
	proxy.Restore()
	next := startRelay(t, dsn)
	waitAllSucceeded(t, db, 5, time.Minute, next)
	pairs, _ := rc.duplicates()
	require.Equal(t, 5, pairs, "nothing lost")
	require.Equal(t, 0, next.stop(t))
}
