package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// harness holds what every scenario shares: the PostgreSQL server, the relay binary, this
// program's own path (to start the receiver) and where logs go.
type harness struct {
	opts     options
	size     sizes
	server   *url.URL // the server URL from the options; each scenario swaps the database
	admin    *sql.DB  // the server's maintenance database, for CREATE/DROP and statistics
	relayBin string
	self     string
	logDir   string
	riverOnceState
}

// env is one scenario's world: a fresh database, a receiver, the relays, and the probes.
type env struct {
	h        *harness
	name     string
	dbName   string
	dbURL    string   // direct, for the harness; its connections carry harnessAppName
	relayURL *url.URL // what the relays use: through the counting proxy when there is one
	// replicas is how many relays startRelays starts: -replicas, unless the scenario sets it.
	replicas int
	setup    *sql.DB
	proxy    *pgProxy
	recv     *receiverProc
	relays   []*relayProc

	// startedAt is just before the first relay was started; readyAt when the first replica
	// answered /readyz 200, allReadyAt when the last did.
	startedAt, readyAt, allReadyAt time.Time
	xactBefore                     int64
	// harnessTx counts the transactions the harness itself ran in the database between the
	// two statistics snapshots (the steady publisher's inserts), to subtract them.
	harnessTx int64
	stopped   bool
	exitNotes []string
}

// newEnv creates the scenario's database, migrates it, and starts the receiver (and the
// proxy when statements are counted).
func (h *harness) newEnv(ctx context.Context, name string) (_ *env, err error) {
	e := &env{h: h, name: name, dbName: fmt.Sprintf("outbox_relay_bench_%s_%d", name, os.Getpid()), replicas: h.opts.replicas}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	quoted := pq.QuoteIdentifier(e.dbName)
	if _, err := h.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoted+" WITH (FORCE)"); err != nil {
		return nil, fmt.Errorf("dropping old database: %w", err)
	}
	if _, err := h.admin.ExecContext(ctx, "CREATE DATABASE "+quoted); err != nil {
		return nil, fmt.Errorf("creating database: %w", err)
	}
	direct := withDatabase(h.server, e.dbName)
	e.dbURL = withAppName(direct, harnessAppName).String()
	if e.setup, err = sql.Open("postgres", e.dbURL); err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	if _, err := outbox.Migrate(ctx, e.setup, outbox.MigrateOptions{Schema: outbox.DefaultSchema, NotifyTrigger: true}); err != nil {
		return nil, fmt.Errorf("migrating: %w", err)
	}
	e.relayURL = direct
	if h.opts.countStatements {
		if e.proxy, err = startPGProxy(hostPort(h.server)); err != nil {
			return nil, fmt.Errorf("starting the counting proxy: %w", err)
		}
		u := withDatabase(h.server, e.dbName)
		u.Host = e.proxy.Addr()
		q := u.Query()
		if q.Get("sslmode") == "" {
			q.Set("sslmode", "disable") // the proxy counts only what it can read
		}
		u.RawQuery = q.Encode()
		e.relayURL = u
	}
	if e.recv, err = startReceiver(ctx, h.self, filepath.Join(h.logDir, name+"-receiver.log")); err != nil {
		return nil, err
	}
	return e, nil
}

func withDatabase(server *url.URL, db string) *url.URL {
	u := *server
	u.Path = "/" + db
	return &u
}

// harnessAppName is the application_name of the harness's own connections to a scenario's
// database, so that pg_stat_activity can tell them from the relays'.
const harnessAppName = "outbox-relay-bench-harness"

// relayAppPrefix starts the application_name of every relay replica's connections.
const relayAppPrefix = "outbox-relay-bench-relay"

// relayAppName is the application_name relay replica i (from 1) connects with.
func relayAppName(i int) string { return relayAppPrefix + strconv.Itoa(i) }

// withAppName returns u with its application_name set to name.
func withAppName(u *url.URL, name string) *url.URL {
	c := *u
	q := c.Query()
	q.Set("application_name", name)
	c.RawQuery = q.Encode()
	return &c
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "5432")
}

// close stops everything the scenario started and drops its database. Safe to call twice.
func (e *env) close() {
	e.stopRelays()
	if e.recv != nil {
		_, _ = e.recv.proc.stop(5 * time.Second)
	}
	if e.proxy != nil {
		e.proxy.Close()
	}
	if e.setup != nil {
		e.setup.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.h.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(e.dbName)+" WITH (FORCE)"); err != nil {
		fmt.Fprintf(os.Stderr, "bench: dropping %s: %v\n", e.dbName, err)
	}
}

// db returns the harness's own connection pool to the scenario's database, opening it again
// after startRelays closed it.
func (e *env) db() (*sql.DB, error) {
	if e.setup == nil {
		db, err := sql.Open("postgres", e.dbURL)
		if err != nil {
			return nil, err
		}
		e.setup = db
	}
	return e.setup, nil
}

// subscribe creates one active subscription to signup.* per receiver path, all in one
// statement, each with its own ID and secret; tenant "" is none (an operator subscription).
func (e *env) subscribe(ctx context.Context, tenant string, ordered bool, paths ...string) error {
	db, err := e.db()
	if err != nil {
		return err
	}
	n := len(paths)
	subIDs, urls, secrets, descs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, path := range paths {
		if secrets[i], err = newSecret(); err != nil {
			return err
		}
		subIDs[i], urls[i], descs[i] = ids.NewSubscriptionID(), e.recv.URL(path), "bench "+path
	}
	_, err = db.ExecContext(ctx, outbox.Qualify(outbox.DefaultSchema, insertSubscriptions),
		pq.Array(subIDs), pq.Array(urls), pq.Array(secrets), pq.Array(descs),
		nullable(tenant), pq.Array([]string{"signup.*"}), ordered)
	if err != nil {
		return fmt.Errorf("creating %d subscriptions: %w", n, err)
	}
	return nil
}

// groupPaths returns n receiver paths prefix0 ... prefix<n-1>. The prefix ends in "/", so
// that no path of one group starts with another group's prefix.
func groupPaths(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// nullable is nil (SQL NULL) for "".
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// insertBacklog writes n events in autocommit statements of up to 1,000 rows; each payload
// carries the wall clock taken just before its statement was sent. keys > 0 gives them
// ordering keys key_0 ... key_<keys-1>, round-robin; tenant "" is none.
func (e *env) insertBacklog(ctx context.Context, n, keys int, tenant string) error {
	db, err := e.db()
	if err != nil {
		return err
	}
	q := outbox.Qualify(outbox.DefaultSchema, insertBacklog)
	for from := 1; from <= n; from += 1000 {
		to := min(from+999, n)
		if _, err := db.ExecContext(ctx, q, from, to, time.Now().UnixNano(), keys, nullable(tenant)); err != nil {
			return fmt.Errorf("inserting events: %w", err)
		}
	}
	return nil
}

// startRelays closes the harness's own connections (so the statistics snapshot is final),
// takes the snapshot, starts the replicas together and waits until all are ready.
func (e *env) startRelays(ctx context.Context) error {
	if e.setup != nil {
		e.setup.Close()
		e.setup = nil
	}
	var err error
	if e.xactBefore, err = e.h.settledXact(ctx, e.dbName); err != nil {
		return err
	}
	e.startedAt = time.Now()
	for i := range e.replicas {
		logPath := filepath.Join(e.h.logDir, fmt.Sprintf("%s-relay%d.log", e.name, i+1))
		r, err := startRelay(e.h.relayBin, withAppName(e.relayURL, relayAppName(i+1)).String(), logPath, e.h.opts.relayEnv)
		if err != nil {
			return err
		}
		e.relays = append(e.relays, r)
	}
	// Polled side by side: work starts when the first replica is ready, and the measured
	// window starts with it (the others may still be starting: a conservative rate).
	ready := make([]time.Time, len(e.relays))
	errs := make([]error, len(e.relays))
	var wg sync.WaitGroup
	for i, r := range e.relays {
		wg.Go(func() { ready[i], errs[i] = r.waitReady(ctx, 60*time.Second) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.readyAt, e.allReadyAt = slices.MinFunc(ready, time.Time.Compare), slices.MaxFunc(ready, time.Time.Compare)
	return nil
}

// stopRelays sends SIGTERM to every replica and waits for them (SIGKILL after 30s).
func (e *env) stopRelays() {
	if e.stopped || len(e.relays) == 0 {
		return
	}
	e.stopped = true
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, r := range e.relays {
		wg.Go(func() {
			clean, err := r.stop(30 * time.Second)
			var note string
			switch {
			case !clean:
				note = fmt.Sprintf("relay %d did not exit within 30s of SIGTERM (killed)", i+1)
			case err != nil:
				note = fmt.Sprintf("relay %d exited with %v after SIGTERM", i+1, err)
			}
			if note != "" {
				mu.Lock()
				e.exitNotes = append(e.exitNotes, note)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// probe is a snapshot of every counter a scenario measures over a window.
type probe struct {
	at       time.Time
	relayCPU float64 // summed over replicas
	recvCPU  float64
	selfCPU  float64
	pgCPU    map[int]float64
	wire     wireCounts
	busy     uint64 // machine, ticks over all cores
	total    uint64
}

func (e *env) probe() probe {
	p := probe{at: time.Now()}
	for _, r := range e.relays {
		if cpu, err := processCPU(r.pid()); err == nil {
			p.relayCPU += cpu
		}
	}
	if cpu, err := processCPU(e.recv.proc.pid()); err == nil {
		p.recvCPU = cpu
	}
	if cpu, err := processCPU(os.Getpid()); err == nil {
		p.selfCPU = cpu
	}
	p.pgCPU = postgresCPU()
	if e.proxy != nil {
		p.wire = e.proxy.snapshot()
	}
	p.busy, p.total, _ = machineCPU()
	return p
}

// peakRSS returns every replica's VmHWM in MiB; call it before stopping them.
func (e *env) peakRSS() []float64 {
	out := make([]float64, len(e.relays))
	for i, r := range e.relays {
		if b, err := peakRSS(r.pid()); err == nil {
			out[i] = float64(b) / (1 << 20)
		}
	}
	return out
}

func (e *env) relayCPUTotal() float64 {
	var sum float64
	for _, r := range e.relays {
		if cpu, err := processCPU(r.pid()); err == nil {
			sum += cpu
		}
	}
	return sum
}

// want is what waitDelivered waits for: paths receiver paths starting with prefix, each with
// at least each distinct events.
type want struct {
	prefix      string
	paths, each int
}

// waitDelivered polls the receiver until every want is met, or the timeout passes (complete
// is then false). It asks for one total per want, however many paths that covers.
func (e *env) waitDelivered(ctx context.Context, wants ...want) (complete bool, err error) {
	return e.waitUntil(ctx, func(ctx context.Context) (bool, error) {
		for _, w := range wants {
			t, err := e.recv.counts(ctx, w.prefix)
			if err != nil {
				return false, err
			}
			if t.Paths < w.paths || t.MinDistinct < w.each {
				return false, nil
			}
		}
		return true, nil
	})
}

// waitUntil polls done every 25 ms until it answers true, or the timeout passes (met is then
// false). A relay that exits meanwhile is an error.
func (e *env) waitUntil(ctx context.Context, done func(context.Context) (bool, error)) (met bool, err error) {
	deadline := time.Now().Add(e.h.opts.timeout)
	for {
		ok, err := done(ctx)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
		for i, r := range e.relays {
			if r.exited() {
				return false, fmt.Errorf("%s %d exited during the run (%v); its log:\n%s", r.name, i+1, r.err, tail(r.logPath, 20))
			}
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// finish stops the relays and gathers what only exists after they are gone: the final
// transaction count, the delivery states in the database and the relays' logs.
func (e *env) finish(ctx context.Context, r *Result) error {
	if err := e.stopAndCount(ctx, r); err != nil {
		return err
	}
	return e.readDeliveryStates(ctx, r)
}

// stopAndCount stops the processes under test (relays or a River sender), keeps their exit
// notes and logs, and counts the run's transactions once the database has settled.
func (e *env) stopAndCount(ctx context.Context, r *Result) error {
	e.stopRelays()
	r.Notes = append(r.Notes, e.exitNotes...)
	for _, rp := range e.relays {
		r.RelayLog.add(scanLog(rp.logPath))
	}
	after, err := e.h.settledXact(ctx, e.dbName)
	if err != nil {
		return err
	}
	r.Transactions = after - e.xactBefore - e.harnessTx
	return nil
}

// xactCount is the database's committed plus rolled-back transactions so far.
func (h *harness) xactCount(ctx context.Context, db string) (int64, error) {
	var n int64
	err := h.admin.QueryRowContext(ctx, xactCount, db).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading pg_stat_database: %w", err)
	}
	return n, nil
}

// settledXact waits until the transaction count stops moving: backends report their
// statistics when they exit or at most about once a second, so a count read just after the
// last connection closed may still be short.
func (h *harness) settledXact(ctx context.Context, db string) (int64, error) {
	prev, err := h.xactCount(ctx, db)
	if err != nil {
		return 0, err
	}
	for range 20 {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(400 * time.Millisecond):
		}
		n, err := h.xactCount(ctx, db)
		if err != nil {
			return 0, err
		}
		if n == prev {
			return n, nil
		}
		prev = n
	}
	return prev, errors.New("pg_stat_database did not settle within 8s")
}

// readDeliveryStates fills in the delivery states and attempt counts from the relay's tables.
func (e *env) readDeliveryStates(ctx context.Context, r *Result) error {
	db, err := e.db()
	if err != nil {
		return err
	}
	r.DeliveryStates = map[string]int{}
	rows, err := db.QueryContext(ctx, outbox.Qualify(outbox.DefaultSchema, deliveryStates))
	if err != nil {
		return fmt.Errorf("reading delivery states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return err
		}
		r.DeliveryStates[state] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := db.QueryRowContext(ctx, outbox.Qualify(outbox.DefaultSchema, attemptCounts)).Scan(&r.Attempts, &r.FailedAttempts); err != nil {
		return fmt.Errorf("reading attempts: %w", err)
	}
	return nil
}
