package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/referralloop/outbox-relay/outbox"
)

// sizes are the scenario sizes: full by default, scaled down with -quick.
type sizes struct {
	DrainEvents   int           `json:"drain_events"`
	FanoutEvents  int           `json:"fanout_events"`
	FanoutSubs    int           `json:"fanout_subscriptions"`
	SteadyRate    int           `json:"steady_events_per_sec"`
	SteadyFor     time.Duration `json:"steady_duration_ns"`
	SlowDelay     time.Duration `json:"slow_endpoint_delay_ns"`
	IdleFor       time.Duration `json:"idle_duration_ns"`
	OrderedEvents int           `json:"ordered_events"`
	OrderedKeys   int           `json:"ordered_keys"`
	// ManyEvents x ManySubs is as many deliveries as DrainEvents, so that the two rates
	// compare one subscription with many.
	ManyEvents int `json:"many_events"`
	ManySubs   int `json:"many_subscriptions"`
	WideEvents int `json:"wide_events"`
	WideSubs   int `json:"wide_subscriptions"`
	// Tenant A's backlog is TenantASubs x TenantAEvents deliveries; tenant B publishes an
	// event every TenantBEvery once TenantBAfter of A's deliveries have arrived.
	TenantASubs   int           `json:"tenants_a_subscriptions"`
	TenantAEvents int           `json:"tenants_a_events"`
	TenantBAfter  int           `json:"tenants_b_after_a_deliveries"`
	TenantBEvery  time.Duration `json:"tenants_b_every_ns"`
	// The fleet publishes FleetRate events/s for FleetFor with each count of FleetRelays
	// relays, after letting them idle for FleetIdle.
	FleetRelays []int         `json:"fleet_relays"`
	FleetRate   int           `json:"fleet_events_per_sec"`
	FleetFor    time.Duration `json:"fleet_duration_ns"`
	FleetIdle   time.Duration `json:"fleet_idle_ns"`
	// FleetRepeats is how many more times the smallest and the largest counts run after
	// the first pass, alternating (largest first) and with a short idle: the application's
	// INSERT latency is compared by the medians over all their runs, since on a shared
	// machine one run's p99 drifts with everything else the machine does.
	FleetRepeats int `json:"fleet_repeats"`
}

var fullSizes = sizes{
	DrainEvents: 20000, FanoutEvents: 2000, FanoutSubs: 10,
	SteadyRate: 500, SteadyFor: 20 * time.Second, SlowDelay: 2 * time.Second,
	IdleFor: 60 * time.Second, OrderedEvents: 20000, OrderedKeys: 200,
	ManyEvents: 10, ManySubs: 2000, WideEvents: 5, WideSubs: 2000,
	TenantASubs: 2000, TenantAEvents: 5, TenantBAfter: 300, TenantBEvery: 300 * time.Millisecond,
	FleetRelays: []int{1, 4, 16}, FleetRate: 500, FleetFor: 10 * time.Second, FleetIdle: 15 * time.Second, FleetRepeats: 2,
}

var quickSizes = sizes{
	DrainEvents: 2000, FanoutEvents: 200, FanoutSubs: 10,
	SteadyRate: 500, SteadyFor: 5 * time.Second, SlowDelay: 2 * time.Second,
	IdleFor: 10 * time.Second, OrderedEvents: 2000, OrderedKeys: 200,
	ManyEvents: 10, ManySubs: 200, WideEvents: 5, WideSubs: 200,
	TenantASubs: 200, TenantAEvents: 5, TenantBAfter: 30, TenantBEvery: 100 * time.Millisecond,
	FleetRelays: []int{1, 4, 16}, FleetRate: 500, FleetFor: 3 * time.Second, FleetIdle: 3 * time.Second,
}

// scenario is one named measurement; run fills in a Result on a fresh env.
type scenario struct {
	name string
	run  func(ctx context.Context, e *env, r *Result) error
}

var scenarios = []scenario{
	{"drain", runDrain},
	{"limit", runLimit},
	{"fanout", runFanout},
	{"steady", runSteady},
	{"slow", runSlow},
	{"idle", runIdle},
	{"ordered", runOrdered},
	{"many", runMany},
	{"wide", runWide},
	{"tenants", runTenants},
	{"fleet", runFleet},
	{"river", runRiver},
}

// Result is everything measured in one scenario. Latencies are commit-to-receipt, in ms.
type Result struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	// Process is what the "relay" figures (CPU, peak RSS, log) measure when it is not the
	// relay: "River sender" in the river scenario, "none" in limit (the harness does the work).
	Process       string `json:"process,omitempty"`
	Events        int    `json:"events"`
	Subscriptions int    `json:"subscriptions"`
	// Expected and Delivered count the measured deliveries: distinct (event, subscription)
	// pairs seen by the receiver (the slow subscription of "slow" is reported apart).
	Expected   int  `json:"expected_deliveries"`
	Delivered  int  `json:"delivered"`
	Duplicates int  `json:"duplicate_requests"`
	Complete   bool `json:"complete"`

	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// RateWindowS is the time DeliveriesPerSec divides by: ready to last receipt for backlog
	// scenarios, first commit to last receipt for steady ones.
	RateWindowS     float64 `json:"rate_window_s"`
	StartToReady    float64 `json:"relay_start_to_ready_s"` // the first replica
	StartToAllReady float64 `json:"relay_start_to_all_ready_s"`
	StartToLast     float64 `json:"relay_start_to_last_receipt_s,omitempty"`
	Latency         Summary `json:"latency"`

	// RelayCPUSeconds is over the measurement window, summed over replicas.
	RelayCPUSeconds      float64   `json:"relay_cpu_s"`
	RelayCPUSecondsTotal float64   `json:"relay_cpu_s_process_lifetime"`
	RelayCPUPer10k       float64   `json:"relay_cpu_s_per_10k_deliveries,omitempty"`
	RelayCPUPercent      float64   `json:"relay_cpu_percent_of_one_core"`
	RelayPeakRSSMiB      float64   `json:"relay_peak_rss_mib"`
	RelayPeakRSSEachMiB  []float64 `json:"relay_peak_rss_each_mib"`
	ReceiverCPUSeconds   float64   `json:"receiver_cpu_s"`
	HarnessCPUSeconds    float64   `json:"harness_cpu_s"`
	// PostgresCPUSeconds is every postgres process on the machine (other databases too).
	PostgresCPUSeconds float64 `json:"postgres_cpu_s"`
	// OtherCPUSeconds is the machine's busy time not accounted for above: other programs,
	// the kernel's network work, backends that exited during the window.
	OtherCPUSeconds      float64 `json:"other_cpu_s"`
	MachineBusyPercent   float64 `json:"machine_busy_percent_all_cores"`
	MeasureWindowSeconds float64 `json:"measure_window_s"`

	// Transactions is the xact_commit + xact_rollback delta of the scenario's database
	// (pg_stat_database) from just before the relays started to after they exited, minus
	// the harness's own transactions.
	Transactions            int64   `json:"transactions"`
	TransactionsPerDelivery float64 `json:"transactions_per_delivery"`
	// Wire is what the relays sent through the counting proxy during the measurement
	// window (nil with -count-statements=false).
	Wire                  *wireCounts `json:"wire,omitempty"`
	StatementsPerDelivery float64     `json:"statements_per_delivery,omitempty"`
	RoundTripsPerDelivery float64     `json:"round_trips_per_delivery,omitempty"`
	StatementsPerSecond   float64     `json:"statements_per_sec,omitempty"`

	DeliveryStates  map[string]int `json:"delivery_states"`
	Attempts        int            `json:"attempts"`
	FailedAttempts  int            `json:"failed_attempts"`
	OrderViolations *int           `json:"order_violations,omitempty"`
	Publish         *publishStats  `json:"publish,omitempty"`
	SlowReceipts    *int           `json:"slow_subscription_receipts,omitempty"`
	// SlowPaired compares, within the slow run, the healthy subscription's latency while
	// the slow subscription is active with its latency while the slow one is paused.
	SlowPaired *pairedLatency `json:"slow_paired,omitempty"`
	Wide       *wideStats     `json:"wide,omitempty"`
	Tenants    *tenantStats   `json:"tenants,omitempty"`
	Fleet      *fleetStats    `json:"fleet,omitempty"`
	Limit      *limitStats    `json:"limit,omitempty"`
	River      *riverStats    `json:"river,omitempty"`
	RelayLog   logSummary     `json:"relay_log"`
	Notes      []string       `json:"notes,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// backlog describes a scenario whose events are all in the outbox before the relay starts.
type backlog struct {
	events, subs int
	ordered      bool
	keys         int
}

func runDrain(ctx context.Context, e *env, r *Result) error {
	n := e.h.size.DrainEvents
	r.Description = fmt.Sprintf("%d events already in the outbox, 1 subscription", n)
	return runBacklog(ctx, e, r, backlog{events: n, subs: 1})
}

func runFanout(ctx context.Context, e *env, r *Result) error {
	n, subs := e.h.size.FanoutEvents, e.h.size.FanoutSubs
	r.Description = fmt.Sprintf("%d events already in the outbox, %d subscriptions", n, subs)
	return runBacklog(ctx, e, r, backlog{events: n, subs: subs})
}

func runMany(ctx context.Context, e *env, r *Result) error {
	n, subs := e.h.size.ManyEvents, e.h.size.ManySubs
	r.Description = fmt.Sprintf("%d events already in the outbox, %d subscriptions", n, subs)
	return runBacklog(ctx, e, r, backlog{events: n, subs: subs})
}

func runOrdered(ctx context.Context, e *env, r *Result) error {
	n, keys := e.h.size.OrderedEvents, e.h.size.OrderedKeys
	r.Description = fmt.Sprintf("%d events already in the outbox, 1 ordered subscription, %d ordering keys", n, keys)
	return runBacklog(ctx, e, r, backlog{events: n, subs: 1, ordered: true, keys: keys})
}

// runBacklog inserts the events, starts the relays, and times them from ready to the last
// receipt.
func runBacklog(ctx context.Context, e *env, r *Result, b backlog) error {
	const group = "/hook/s/"
	r.Events, r.Subscriptions, r.Expected = b.events, b.subs, b.events*b.subs
	if err := e.subscribe(ctx, "", b.ordered, groupPaths(group, b.subs)...); err != nil {
		return err
	}
	progress("%s: inserting %d events", e.name, b.events)
	if err := e.insertBacklog(ctx, b.events, b.keys, ""); err != nil {
		return err
	}
	progress("%s: starting %d relay(s)", e.name, e.replicas)
	if err := e.startRelays(ctx); err != nil {
		return err
	}
	before := e.probe()
	complete, err := e.waitDelivered(ctx, want{prefix: group, paths: b.subs, each: b.events})
	if err != nil {
		return err
	}
	after := e.probe()
	r.Complete = complete
	e.measure(r, before, after)

	byPath, err := e.recv.receipts(ctx, group)
	if err != nil {
		return err
	}
	var last int64
	var lat []float64
	for _, rs := range byPath {
		got := analyse(rs)
		r.Delivered += got.distinct
		r.Duplicates += got.duplicates
		lat = append(lat, got.latencies...)
		last = max(last, got.last)
		if b.ordered {
			v := orderViolations(rs)
			r.OrderViolations = &v
		}
	}
	r.Latency = Summarize(lat)
	lastAt := time.Unix(0, last)
	r.StartToLast = lastAt.Sub(e.startedAt).Seconds()
	r.RateWindowS = lastAt.Sub(e.readyAt).Seconds()
	if r.RateWindowS > 0 {
		r.DeliveriesPerSec = float64(r.Delivered) / r.RateWindowS
	}
	if !complete {
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s: %d of %d delivered", e.h.opts.timeout, r.Delivered, r.Expected))
	}
	return e.finish(ctx, r)
}

func runSteady(ctx context.Context, e *env, r *Result) error {
	s := e.h.size
	r.Description = fmt.Sprintf("%d events/s for %s, 1 subscription", s.SteadyRate, s.SteadyFor)
	return runSteadyLoad(ctx, e, r, false)
}

func runSlow(ctx context.Context, e *env, r *Result) error {
	s := e.h.size
	r.Description = fmt.Sprintf("%d events/s for %s, 1 healthy subscription + 1 answering in %s", s.SteadyRate, s.SteadyFor, s.SlowDelay)
	return runSteadyLoad(ctx, e, r, true)
}

// runSteadyLoad publishes at a steady rate and measures the healthy subscription's latency.
func runSteadyLoad(ctx context.Context, e *env, r *Result, withSlow bool) error {
	const healthy, slow = "/hook/healthy", "/slow/slow"
	r.Subscriptions = 1
	if err := e.subscribe(ctx, "", false, healthy); err != nil {
		return err
	}
	if withSlow {
		r.Subscriptions = 2
		if err := e.subscribe(ctx, "", false, slow); err != nil {
			return err
		}
	}
	var windows *slowWindows
	if withSlow {
		windows = &slowWindows{}
	}
	progress("%s: starting %d relay(s)", e.name, e.replicas)
	if err := e.startRelays(ctx); err != nil {
		return err
	}
	progress("%s: publishing %d events/s for %s", e.name, e.h.size.SteadyRate, e.h.size.SteadyFor)
	before := e.probe()
	toggled := make(chan error, 1)
	if windows != nil {
		go func() { toggled <- e.toggleSlow(ctx, slow, e.h.size.SteadyFor, windows) }()
	} else {
		toggled <- nil
	}
	pub, err := e.publishSteady(ctx, e.h.size.SteadyRate, e.h.size.SteadyFor)
	if terr := <-toggled; err == nil {
		err = terr
	}
	if err != nil {
		return err
	}
	r.Publish = &pub
	r.Events, r.Expected = pub.Events, pub.Events
	complete, err := e.waitDelivered(ctx, want{prefix: healthy, paths: 1, each: pub.Events})
	if err != nil {
		return err
	}
	after := e.probe()
	r.Complete = complete
	e.measure(r, before, after)

	got, rs, err := e.receivedOn(ctx, r, healthy)
	if err != nil {
		return err
	}
	if windows != nil {
		r.SlowPaired = windows.pair(rs, e.h.size.SlowDelay)
	}
	r.RateWindowS = time.Unix(0, got.last).Sub(time.Unix(0, pub.FirstCommitNs)).Seconds()
	if r.RateWindowS > 0 {
		r.DeliveriesPerSec = float64(r.Delivered) / r.RateWindowS
	}
	if withSlow {
		counts, err := e.recv.counts(ctx, slow)
		if err != nil {
			return err
		}
		n := counts.Distinct
		r.SlowReceipts = &n
		r.Notes = append(r.Notes, fmt.Sprintf("slow subscription: %d of %d events received by the time the healthy one had all (the rest stay pending)", n, pub.Events))
	}
	if !complete {
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s: %d of %d delivered", e.h.opts.timeout, r.Delivered, r.Expected))
	}
	return e.finish(ctx, r)
}

// slowWindows records when the slow subscription was switched on and off during a run.
type slowWindows struct {
	mu       sync.Mutex
	switches []slowSwitch
}

type slowSwitch struct {
	atNs int64
	on   bool
}

// pairedLatency is the healthy subscription's latency with the slow endpoint active and
// paused, in alternating windows of one run: a comparison that the drift of a shared
// machine between two runs does not blur.
type pairedLatency struct {
	Active Summary  `json:"active"`
	Paused Summary  `json:"paused"`
	Ratio  *float64 `json:"p99_ratio,omitempty"` // active p99 / paused p99
}

// toggleSlow switches the slow subscription paused and active in four equal windows over d,
// as an operator would with PATCH, and records when.
func (e *env) toggleSlow(ctx context.Context, path string, d time.Duration, w *slowWindows) error {
	db, err := e.db()
	if err != nil {
		return err
	}
	window := d / 4
	for i := range 4 {
		// Paused first: the run's first seconds (connections, plans, warming up) fall in a
		// paused window before it counts, not in an active one.
		on := i%2 == 1
		status := "paused"
		if on {
			status = "active"
		}
		if _, err := db.ExecContext(ctx, outbox.Qualify(outbox.DefaultSchema, setSubscriptionStatus), status, e.recv.URL(path)); err != nil {
			return fmt.Errorf("switching the slow subscription %s: %w", status, err)
		}
		w.mu.Lock()
		w.switches = append(w.switches, slowSwitch{atNs: time.Now().UnixNano(), on: on})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(window):
		}
	}
	return nil
}

// pair splits the healthy receipts by the window their event was committed in. A paused
// window counts only after the slow requests sent before the pause have ended (slowDelay
// and half a second); nil when a side has too few events for a p99.
func (w *slowWindows) pair(rs []receipt, slowDelay time.Duration) *pairedLatency {
	w.mu.Lock()
	defer w.mu.Unlock()
	settle := (slowDelay + 500*time.Millisecond).Nanoseconds()
	var active, paused []float64
	seen := map[string]bool{}
	for _, rc := range rs {
		if seen[rc.EventID] {
			continue
		}
		seen[rc.EventID] = true
		idx := -1
		for i, sw := range w.switches {
			if rc.CommitNs >= sw.atNs {
				idx = i
			}
		}
		if idx < 0 {
			continue
		}
		sw, lat := w.switches[idx], float64(rc.ArrivalNs-rc.CommitNs)/1e6
		switch {
		case sw.on:
			active = append(active, lat)
		case rc.CommitNs >= sw.atNs+settle:
			paused = append(paused, lat)
		}
	}
	if len(active) < 100 || len(paused) < 100 {
		return nil
	}
	p := &pairedLatency{Active: Summarize(active), Paused: Summarize(paused)}
	if p.Paused.P99 > 0 {
		ratio := p.Active.P99 / p.Paused.P99
		p.Ratio = &ratio
	}
	return p
}

// runIdle measures what the relay costs with nothing to do: one subscription, no events.
func runIdle(ctx context.Context, e *env, r *Result) error {
	d := e.h.size.IdleFor
	r.Description = fmt.Sprintf("relay running %s with nothing to do (1 subscription, empty outbox)", d)
	r.Subscriptions, r.Complete = 1, true
	if err := e.subscribe(ctx, "", false, "/hook/idle"); err != nil {
		return err
	}
	if err := e.startRelays(ctx); err != nil {
		return err
	}
	// Start-up (migration check, first claims, connection pool) is not idling.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	progress("%s: watching the relay idle for %s", e.name, d)
	before := e.probe()
	if err := sleep(ctx, d); err != nil {
		return err
	}
	after := e.probe()
	e.measure(r, before, after)
	return e.finish(ctx, r)
}

// measure fills in the window figures: CPU, memory, machine load and the wire counts.
func (e *env) measure(r *Result, before, after probe) {
	window := after.at.Sub(before.at).Seconds()
	r.MeasureWindowSeconds = window
	r.StartToReady = e.readyAt.Sub(e.startedAt).Seconds()
	r.StartToAllReady = e.allReadyAt.Sub(e.startedAt).Seconds()
	r.RelayCPUSeconds = after.relayCPU - before.relayCPU
	r.RelayCPUSecondsTotal = e.relayCPUTotal()
	if window > 0 {
		r.RelayCPUPercent = 100 * r.RelayCPUSeconds / window
	}
	r.ReceiverCPUSeconds = after.recvCPU - before.recvCPU
	r.HarnessCPUSeconds = after.selfCPU - before.selfCPU
	r.PostgresCPUSeconds = cpuDelta(before.pgCPU, after.pgCPU)
	if after.total > before.total {
		busy := after.busy - before.busy
		r.MachineBusyPercent = 100 * float64(busy) / float64(after.total-before.total)
		r.OtherCPUSeconds = float64(busy)/clockTicks - r.RelayCPUSeconds - r.ReceiverCPUSeconds - r.HarnessCPUSeconds - r.PostgresCPUSeconds
		capacity := window * float64(runtime.NumCPU())
		if capacity > 0 && r.OtherCPUSeconds > 0.25*capacity {
			r.Notes = append(r.Notes, fmt.Sprintf("the machine was busy with other work: %.1fs of CPU (%.0f%% of its capacity) went to processes outside this benchmark; these figures are pessimistic",
				r.OtherCPUSeconds, 100*r.OtherCPUSeconds/capacity))
		}
	}
	r.RelayPeakRSSEachMiB = e.peakRSS()
	r.RelayPeakRSSMiB = slices.Max(append([]float64{0}, r.RelayPeakRSSEachMiB...))
	if e.proxy != nil {
		w := after.wire.sub(before.wire)
		r.Wire = &w
		if window > 0 {
			r.StatementsPerSecond = float64(w.Statements) / window
		}
	}
}

// derive computes the per-delivery ratios once Delivered is known.
func (r *Result) derive() {
	if r.Delivered == 0 {
		return
	}
	d := float64(r.Delivered)
	r.RelayCPUPer10k = r.RelayCPUSeconds / d * 10000
	r.TransactionsPerDelivery = float64(r.Transactions) / d
	if r.Wire != nil {
		r.StatementsPerDelivery = float64(r.Wire.Statements) / d
		r.RoundTripsPerDelivery = float64(r.Wire.RoundTrips) / d
	}
}

// received is what analyse makes of one path's receipts.
type received struct {
	distinct, duplicates int
	latencies            []float64 // ms, the first receipt of each event
	last                 int64     // latest arrival of a first receipt, Unix ns
}

// receivedOn reads the receipts of path and records on r what they show: deliveries,
// duplicates, latencies. It answers the analysis and the receipts.
func (e *env) receivedOn(ctx context.Context, r *Result, path string) (received, []receipt, error) {
	byPath, err := e.recv.receipts(ctx, path)
	if err != nil {
		return received{}, nil, err
	}
	rs := byPath[path]
	got := analyse(rs)
	r.Delivered, r.Duplicates = got.distinct, got.duplicates
	r.Latency = Summarize(got.latencies)
	return got, rs, nil
}

func analyse(rs []receipt) received {
	var out received
	seen := make(map[string]struct{}, len(rs))
	for _, rc := range rs {
		if _, dup := seen[rc.EventID]; dup {
			out.duplicates++
			continue
		}
		seen[rc.EventID] = struct{}{}
		out.distinct++
		out.latencies = append(out.latencies, float64(rc.ArrivalNs-rc.CommitNs)/1e6)
		out.last = max(out.last, rc.ArrivalNs)
	}
	return out
}

// orderViolations counts receipts that arrived after a later event of the same ordering key
// (receipts come in arrival order; Seq follows outbox order within a key).
func orderViolations(rs []receipt) int {
	lastSeq := map[string]int64{}
	n := 0
	for _, rc := range rs {
		if rc.Key == "" {
			continue
		}
		if prev, ok := lastSeq[rc.Key]; ok && rc.Seq < prev {
			n++
			continue
		}
		lastSeq[rc.Key] = rc.Seq
	}
	return n
}

// publishStats describes the steady publisher's side.
type publishStats struct {
	Events        int     `json:"events"`
	Publishers    int     `json:"publishers"`
	FirstCommitNs int64   `json:"first_commit_unix_ns"`
	AchievedRate  float64 `json:"achieved_events_per_sec"`
	MaxLagMs      float64 `json:"max_schedule_lag_ms"`
	// Insert is how long each autocommit INSERT (outbox.Publish) took: the commit stamp is
	// taken just before it, so latencies include up to this much of the commit itself.
	Insert Summary `json:"insert_statement"`
}

const publishers = 4

// publishSteady publishes rate events per second for d through outbox.Publish, one event
// per autocommit statement (its own small transaction), from a few connections so that a
// slow commit does not hold up the schedule. Each payload carries the wall clock taken just
// before its statement was sent.
func (e *env) publishSteady(ctx context.Context, rate int, d time.Duration) (publishStats, error) {
	n := int(float64(rate) * d.Seconds())
	st := publishStats{Events: n, Publishers: publishers}
	db, err := sql.Open("postgres", e.dbURL)
	if err != nil {
		return st, err
	}
	// Closed before the final statistics snapshot, so its transactions are all reported.
	defer db.Close()
	db.SetMaxOpenConns(publishers)
	db.SetMaxIdleConns(publishers)
	if err := warmPool(ctx, db, publishers); err != nil {
		return st, err
	}
	// PostgreSQL counts a transaction per connection start-up and one per Sync message:
	// the warm-up SELECT is one, each parameterised INSERT two (lib/pq: Parse/Sync, then
	// Bind/Execute/Sync).
	e.harnessTx += 2 * publishers

	interval := time.Second / time.Duration(rate)
	commits := make([]int64, n)
	took := make([]float64, n)
	jobs := make(chan int, 1024)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range publishers {
		wg.Go(func() {
			for i := range jobs {
				commitNs := time.Now().UnixNano()
				err := outbox.Publish(ctx, db, outbox.Event{Type: "signup.created", Payload: json.RawMessage(eventPayload(i+1, commitNs))})
				took[i] = float64(time.Now().UnixNano()-commitNs) / 1e6
				commits[i] = commitNs
				if err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	start := time.Now()
	var lag time.Duration
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		} else {
			lag = max(lag, -wait)
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	e.harnessTx += 2 * int64(n)
	if firstErr != nil {
		return st, fmt.Errorf("publishing: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	st.FirstCommitNs = slices.Min(commits)
	st.AchievedRate = float64(n) / elapsed.Seconds()
	st.MaxLagMs = float64(lag) / 1e6
	st.Insert = Summarize(took)
	return st, nil
}

// warmPool opens n connections (one SELECT each) before the clock starts.
func warmPool(ctx context.Context, db *sql.DB, n int) error {
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if _, err := c.ExecContext(ctx, "SELECT 1"); err != nil {
			return err
		}
	}
	return nil
}

// eventPayload is the steady publisher's payload: the shape insertBacklog builds in SQL.
func eventPayload(seq int, commitNs int64) []byte {
	s := strconv.Itoa(seq)
	b := make([]byte, 0, 256)
	b = append(b, `{"seq":`...)
	b = append(b, s...)
	b = append(b, `,"committed_at_unix_ns":`...)
	b = strconv.AppendInt(b, commitNs, 10)
	b = append(b, `,"ordering_key":null,"signup":{"id":"su_`...)
	b = append(b, s...)
	b = append(b, `","email":"user`...)
	b = append(b, s...)
	b = append(b, `@example.com","position":`...)
	b = append(b, s...)
	b = append(b, `,"waitlist_id":"wl_bench","referral_code":"r`...)
	b = append(b, fmt.Sprintf("%08d", seq)...)
	b = append(b, `"}}`...)
	return b
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
