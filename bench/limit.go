package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/outbox"
)

// The limit scenario: the database-only ceiling of the relay's own work for the drain shape
// (DrainEvents events, 1 subscription). No relay process and no HTTP: the harness runs the
// relay's SQL cycle itself, as fast as the database answers it. The fan-out claims batches
// of 100 with claim_and_fan_out on a connection of its own (the relay's dispatcher, at the
// relay's default RELAY_BATCH_SIZE); beside it, each lease connection leases due deliveries
// with lease_due and records every one of them as succeeded with record_attempts at once
// (or, "combined", records a batch and leases the next in one record_and_lease_due, the
// statement the relay sends under load), until every delivery has succeeded. The arguments
// are the relay's (relay/deliver: one owner, RELAY_DELIVERY_TIMEOUT + 5 s leases, 256 KiB
// payloads, 16 in flight per subscription), except that the one subscription may hold as
// many leases as every connection's batch (the relay's default allows 128): this is the
// database's ceiling, not the relay's.
//
// Several settings (connections x batch) are run, each on a fresh backlog in the same
// database; the best is the scenario's figure, the others are in the details.

// limitConfig is one way of running the cycle.
type limitConfig struct {
	Conns    int  `json:"connections"` // lease/record connections; the fan-out has one more
	Batch    int  `json:"batch"`       // deliveries leased (and recorded) per statement
	Combined bool `json:"combined"`    // record_and_lease_due instead of lease_due + record_attempts
}

func (c limitConfig) String() string {
	s := fmt.Sprintf("%dx%d", c.Conns, c.Batch)
	if c.Combined {
		s += "+"
	}
	return s
}

// describe is the setting in words, for the details.
func (c limitConfig) describe() string {
	how := "lease_due, then record_attempts"
	if c.Combined {
		how = "record_and_lease_due"
	}
	return fmt.Sprintf("%d connection(s), batches of %d, %s", c.Conns, c.Batch, how)
}

// defaultLimitConfigs is what -limit-configs runs unless told otherwise.
const defaultLimitConfigs = "2x100,2x250,3x250,4x250,2x250+,3x250+"

// parseLimitConfigs reads a comma-separated list of CONNSxBATCH, each with an optional "+"
// for the combined statement: "2x100,4x500+".
func parseLimitConfigs(s string) ([]limitConfig, error) {
	var out []limitConfig
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var c limitConfig
		spec, combined := strings.CutSuffix(item, "+")
		c.Combined = combined
		conns, batch, ok := strings.Cut(spec, "x")
		if !ok {
			return nil, fmt.Errorf("limit setting %q: want CONNSxBATCH, e.g. 2x250 (a trailing + for record_and_lease_due)", item)
		}
		var err1, err2 error
		c.Conns, err1 = strconv.Atoi(conns)
		c.Batch, err2 = strconv.Atoi(batch)
		if err1 != nil || err2 != nil || c.Conns < 1 || c.Conns > 32 || c.Batch < 1 || c.Batch > 10000 {
			return nil, fmt.Errorf("limit setting %q: connections 1-32 and batch 1-10000", item)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no limit setting")
	}
	return out, nil
}

// limitRun is one setting's figures.
type limitRun struct {
	limitConfig
	Seconds          float64 `json:"seconds"` // first fan-out to the last record
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Transactions     int64   `json:"transactions"`
	Statements       int64   `json:"statements"`
	RoundTrips       int64   `json:"round_trips"`
	// Leases is how many lease statements (lease_due or record_and_lease_due) were sent,
	// Empty how many of them leased nothing (the fan-out had not caught up, or every due
	// delivery was leased).
	Leases int64 `json:"leases"`
	Empty  int64 `json:"empty_leases"`
	// FanOuts is how many claim_and_fan_out calls it took.
	FanOuts int64   `json:"fan_outs"`
	Result  *Result `json:"-"`
}

// limitStats is what "limit" measures.
type limitStats struct {
	FanOutBatch int        `json:"fan_out_batch"`
	Runs        []limitRun `json:"runs"`
	Best        int        `json:"best"` // index into Runs
	// Skipped says why the scenario did not run (the relay's schema has no
	// claim_and_fan_out: an older build).
	Skipped string `json:"skipped,omitempty"`
}

// limitFanOutBatch is what one claim_and_fan_out claims: the relay's RELAY_BATCH_SIZE default.
const limitFanOutBatch = 100

// limitOwner is the lease owner of every limit connection: one relay, several connections.
const limitOwner = "outbox-relay-bench-limit"

// The relay's lease arguments (relay/deliver leaseArgs with the defaults).
const (
	limitLeaseMs        = 10000 // RELAY_DELIVERY_TIMEOUT 5 s + LeaseMargin 5 s
	limitMaxPayload     = 256 << 10
	limitMaxInFlight    = 16
	limitDisableAfterMs = int64(120 * time.Hour / time.Millisecond)
)

func runLimit(ctx context.Context, e *env, r *Result) error {
	n := e.h.size.DrainEvents
	r.Description = fmt.Sprintf("database only: %d events, 1 subscription, the relay's SQL cycle (fan-out, lease, record as succeeded) run by the harness, no HTTP", n)
	r.Events, r.Subscriptions, r.Expected = n, 1, n
	r.Process = "none"
	ls := &limitStats{FanOutBatch: limitFanOutBatch}
	r.Limit = ls
	db, err := e.db()
	if err != nil {
		return err
	}
	var have bool
	if err := db.QueryRowContext(ctx, outbox.Qualify(outbox.DefaultSchema, `SELECT to_regprocedure('{{schema}}.claim_and_fan_out(integer)') IS NOT NULL`)).Scan(&have); err != nil {
		return fmt.Errorf("looking for claim_and_fan_out: %w", err)
	}
	if !have {
		ls.Skipped = "the relay's schema has no claim_and_fan_out(integer) (outbox/functions/claim_and_fan_out.sql): a build from before it; limit skipped"
		r.Notes = append(r.Notes, ls.Skipped)
		progress("%s: SKIPPED: %s", e.name, ls.Skipped)
		return nil
	}
	const path = "/hook/limit"
	if err := e.subscribe(ctx, "", false, path); err != nil {
		return err
	}
	configs := e.h.opts.limitConfigs
	for i, c := range configs {
		progress("%s: %s (%d of %d)", e.name, c.describe(), i+1, len(configs))
		run, err := limitOnce(ctx, e, c, n)
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		progress("%s: %s: %.0f deliveries/s", e.name, c, run.DeliveriesPerSec)
		ls.Runs = append(ls.Runs, run)
		if run.DeliveriesPerSec > ls.Runs[ls.Best].DeliveriesPerSec {
			ls.Best = len(ls.Runs) - 1
		}
	}
	best := ls.Runs[ls.Best]
	br := best.Result
	r.Delivered, r.Complete = br.Delivered, br.Complete
	r.DeliveriesPerSec, r.RateWindowS = best.DeliveriesPerSec, best.Seconds
	r.MeasureWindowSeconds = br.MeasureWindowSeconds
	r.HarnessCPUSeconds, r.ReceiverCPUSeconds = br.HarnessCPUSeconds, br.ReceiverCPUSeconds
	r.PostgresCPUSeconds, r.OtherCPUSeconds, r.MachineBusyPercent = br.PostgresCPUSeconds, br.OtherCPUSeconds, br.MachineBusyPercent
	r.Transactions, r.Wire, r.StatementsPerSecond = br.Transactions, br.Wire, br.StatementsPerSecond
	r.DeliveryStates, r.Attempts, r.FailedAttempts = br.DeliveryStates, br.Attempts, br.FailedAttempts
	r.Notes = append(r.Notes, br.Notes...)
	return nil
}

// limitOnce runs one setting on a fresh backlog of n events.
func limitOnce(ctx context.Context, e *env, c limitConfig, n int) (limitRun, error) {
	run := limitRun{limitConfig: c}
	res := &Result{Scenario: "limit/" + c.String(), Expected: n}
	run.Result = res
	db, err := e.db()
	if err != nil {
		return run, err
	}
	if _, err := db.ExecContext(ctx, outbox.Qualify(outbox.DefaultSchema,
		`TRUNCATE {{schema}}.attempts, {{schema}}.deliveries, {{schema}}.outbox`)); err != nil {
		return run, fmt.Errorf("emptying the outbox: %w", err)
	}
	if err := e.insertBacklog(ctx, n, 0, ""); err != nil {
		return run, err
	}
	var sub string
	if err := db.QueryRowContext(ctx, outbox.Qualify(outbox.DefaultSchema, `SELECT id FROM {{schema}}.subscriptions`)).Scan(&sub); err != nil {
		return run, fmt.Errorf("reading the subscription: %w", err)
	}
	// As startRelays does: the harness's own connections closed, then the snapshot.
	e.setup.Close()
	e.setup = nil
	xactBefore, err := e.h.settledXact(ctx, e.dbName)
	if err != nil {
		return run, err
	}
	work, err := pgstmt.Open(withAppName(e.relayURL, limitAppName).String())
	if err != nil {
		return run, err
	}
	defer work.Close()
	work.SetMaxOpenConns(c.Conns + 1)
	work.SetMaxIdleConns(c.Conns + 1)

	l := &limiter{
		db: work, cfg: c, want: int64(n), sub: sub,
		fanOutQ: outbox.Qualify(outbox.DefaultSchema, limitFanOut),
		leaseQ:  outbox.Qualify(outbox.DefaultSchema, limitLease),
		recordQ: outbox.Qualify(outbox.DefaultSchema, limitRecord),
		bothQ:   outbox.Qualify(outbox.DefaultSchema, limitRecordAndLease),
	}
	runCtx, cancel := context.WithTimeout(ctx, e.h.opts.timeout)
	defer cancel()
	before := e.probe()
	start := time.Now()
	lastAt, err := l.run(runCtx)
	after := e.probe()
	if err != nil && (ctx.Err() != nil || runCtx.Err() == nil) {
		return run, err // failed, or interrupted; a timeout (runCtx alone ended) is reported below
	}
	res.Complete = err == nil
	e.measure(res, before, after)
	if lastAt.IsZero() {
		lastAt = after.at
	}
	run.Seconds = lastAt.Sub(start).Seconds()
	res.Delivered = int(l.succeeded.Load())
	if run.Seconds > 0 {
		run.DeliveriesPerSec = float64(res.Delivered) / run.Seconds
	}
	run.Leases, run.Empty, run.FanOuts = l.leases.Load(), l.empty.Load(), l.fanOuts.Load()
	if res.Wire != nil {
		run.Statements, run.RoundTrips = res.Wire.Statements, res.Wire.RoundTrips
	}
	if !res.Complete {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: timed out after %s: %d of %d succeeded", c, e.h.opts.timeout, res.Delivered, n))
	}
	work.Close()
	xactAfter, err := e.h.settledXact(ctx, e.dbName)
	if err != nil {
		return run, err
	}
	res.Transactions = xactAfter - xactBefore
	run.Transactions = res.Transactions
	if err := e.readDeliveryStates(ctx, res); err != nil {
		return run, err
	}
	if got := res.DeliveryStates["succeeded"]; got != n && res.Complete {
		return run, fmt.Errorf("%d of %d deliveries succeeded in the database after the run", got, n)
	}
	return run, nil
}

// limitAppName is the application_name of the limit's connections.
const limitAppName = "outbox-relay-bench-limit"

// limiter runs the cycle on its connections until want deliveries have succeeded.
type limiter struct {
	db                              *sql.DB
	cfg                             limitConfig
	want                            int64
	sub                             string // the one subscription
	fanOutQ, leaseQ, recordQ, bothQ string

	succeeded atomic.Int64
	leases    atomic.Int64
	empty     atomic.Int64
	fanOuts   atomic.Int64

	mu     sync.Mutex
	lastAt time.Time // when the last record that counted returned
}

// run starts the fan-out and the lease connections, and returns when every delivery has
// succeeded (lastAt: the last record's return), on the first error, or when ctx ends.
func (l *limiter) run(ctx context.Context) (lastAt time.Time, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, l.cfg.Conns+1)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- l.fanOut(ctx) })
	for range l.cfg.Conns {
		wg.Go(func() { errs <- l.deliver(ctx) })
	}
	var first error
	for range l.cfg.Conns + 1 {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastAt, first
}

func (l *limiter) done() bool { return l.succeeded.Load() >= l.want }

// fanOut claims the outbox in batches until a claim finds nothing.
func (l *limiter) fanOut(ctx context.Context) error {
	for !l.done() {
		var events, deliveries int64
		if err := l.db.QueryRowContext(ctx, l.fanOutQ, limitFanOutBatch).Scan(&events, &deliveries); err != nil {
			return fmt.Errorf("claim_and_fan_out: %w", err)
		}
		l.fanOuts.Add(1)
		if events == 0 {
			return nil
		}
	}
	return nil
}

// leased is one lease statement's answer.
type leased struct {
	ids, attempts pq.Int64Array
	subs          []string
}

// deliver leases and records on one connection until every delivery has succeeded.
func (l *limiter) deliver(ctx context.Context) error {
	var prev leased
	for !l.done() {
		var got leased
		var err error
		if l.cfg.Combined && len(prev.ids) > 0 {
			// The relay's hot path: record the batch and lease the next in one statement.
			args := append(append(l.recordArgs(prev), l.cfg.Batch), l.leaseTail()...)
			if got, err = l.lease(ctx, l.bothQ, args); err == nil {
				l.recorded(int64(len(prev.ids)))
			}
		} else {
			if len(prev.ids) > 0 {
				if err := l.record(ctx, prev); err != nil {
					return err
				}
			}
			got, err = l.lease(ctx, l.leaseQ, append([]any{l.cfg.Batch, limitOwner}, l.leaseTail()...))
		}
		if err != nil {
			return err
		}
		prev = got
		if len(got.ids) == 0 && !l.done() {
			// Nothing due: the fan-out has not caught up, or the rest is leased elsewhere.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	return nil
}

// leaseTail is the end of lease_due's arguments, after limit and owner: lease, max payload,
// in flight, leased, ahead (the subscription, so that it may hold every connection's batch)
// and skip.
func (l *limiter) leaseTail() []any {
	return []any{limitLeaseMs, limitMaxPayload, limitMaxInFlight,
		max(l.cfg.Batch*l.cfg.Conns, limitMaxInFlight), pq.StringArray{l.sub}, pq.StringArray{}}
}

// lease sends a lease statement (lease_due, or record_and_lease_due) and reads every
// column, as the relay does.
func (l *limiter) lease(ctx context.Context, q string, args []any) (leased, error) {
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return leased{}, fmt.Errorf("leasing: %w", err)
	}
	defer rows.Close()
	l.leases.Add(1)
	var out leased
	// delivery_id, attempt, then 15 more: event_id ... subscription_tenant_id, timeout_ms,
	// rate_limit.
	cols := make([]sql.RawBytes, 15)
	var id, attempt int64
	dest := []any{&id, &attempt}
	for i := range cols {
		dest = append(dest, &cols[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return leased{}, err
		}
		out.ids = append(out.ids, id)
		out.attempts = append(out.attempts, attempt)
		if sub := string(cols[7]); len(out.subs) == 0 || out.subs[len(out.subs)-1] != sub {
			out.subs = append(out.subs, sub)
		}
	}
	if err := rows.Err(); err != nil {
		return leased{}, fmt.Errorf("leasing: %w", err)
	}
	if len(out.ids) == 0 {
		l.empty.Add(1)
	}
	return out, nil
}

// recordArgs are record_attempts' arguments for a batch that all succeeded.
func (l *limiter) recordArgs(b leased) []any {
	n := len(b.ids)
	started, durations, statuses := make(pq.StringArray, n), make(pq.Int64Array, n), make(pq.Int64Array, n)
	errs, responses, outcomes, delays := make(pq.StringArray, n), make(pq.StringArray, n), make(pq.StringArray, n), make(pq.Int64Array, n)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := range n {
		started[i], durations[i], statuses[i], outcomes[i] = now, 1, 200, "succeeded"
	}
	healthy := pq.StringArray(uniq(b.subs))
	return []any{b.ids, b.attempts, started, durations, statuses, errs, responses, outcomes, delays,
		limitOwner, healthy, pq.StringArray{}, limitDisableAfterMs}
}

func (l *limiter) record(ctx context.Context, b leased) error {
	var updated int64
	var disabled pq.StringArray
	if err := l.db.QueryRowContext(ctx, l.recordQ, l.recordArgs(b)...).Scan(&updated, &disabled); err != nil {
		return fmt.Errorf("record_attempts: %w", err)
	}
	if updated != int64(len(b.ids)) {
		return fmt.Errorf("record_attempts updated %d of %d deliveries", updated, len(b.ids))
	}
	l.recorded(updated)
	return nil
}

// recorded counts n succeeded deliveries whose record has just returned.
func (l *limiter) recorded(n int64) {
	l.mu.Lock()
	l.succeeded.Add(n)
	l.lastAt = time.Now()
	l.mu.Unlock()
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
