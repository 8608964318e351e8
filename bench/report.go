package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// machine describes where the figures come from.
type machine struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GitCommit string `json:"git_commit"`
	GitDirty  bool   `json:"git_dirty"`
	Postgres  string `json:"postgres_version"`
	Hostname  string `json:"hostname"`
}

type settings struct {
	Quick           bool     `json:"quick"`
	Replicas        int      `json:"replicas"`
	Scenarios       []string `json:"scenarios"`
	CountStatements bool     `json:"count_statements"`
	RelayEnv        []string `json:"relay_env,omitempty"`
	RelayBinary     string   `json:"relay_binary"`
	Sizes           sizes    `json:"sizes"`
}

// target is one goal from the design notes and whether this run met it.
type target struct {
	Name     string  `json:"name"`
	Scenario string  `json:"scenario"`
	Goal     string  `json:"goal"`
	Value    float64 `json:"value"`
	Display  string  `json:"display"`
	Status   string  `json:"status"` // PASS, MISS or n/a (scenario not run or failed)
}

type report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Machine     machine   `json:"machine"`
	Settings    settings  `json:"settings"`
	Scenarios   []Result  `json:"scenarios"`
	Targets     []target  `json:"targets"`
	// SlowVsSteadyP99 is the healthy subscription's p99 in "slow" over the p99 in "steady".
	SlowVsSteadyP99 *float64          `json:"slow_vs_steady_p99_ratio,omitempty"`
	Definitions     map[string]string `json:"definitions"`
}

var definitions = map[string]string{
	"deliveries_per_sec":        "distinct deliveries received / rate_window_s (backlog scenarios: relay ready to last receipt; steady: first commit to last receipt)",
	"latency":                   "receiver arrival wall clock minus the commit stamp in the payload: the harness's wall clock just before the autocommit INSERT that wrote (and committed) the event was sent",
	"relay_cpu_s":               "utime+stime from /proc/<pid>/stat of the relay processes over the measurement window (ready to all delivered; idle: the idle period)",
	"relay_peak_rss_mib":        "VmHWM from /proc/<pid>/status at the end of the window, the largest replica",
	"transactions_per_delivery": "pg_stat_database xact_commit+xact_rollback delta of the scenario's database from before the relays started to after they exited (start-up, idle polls and shutdown included), minus the harness's own, per delivery. PostgreSQL counts one per Sync or simple Query (a lib/pq parameterised statement counts two) and one per new connection, so this tracks round trips, not statements",
	"statements_per_delivery":   "Execute + simple Query messages the relays sent (counting TCP proxy) during the window, per delivery",
	"round_trips_per_delivery":  "Sync + simple Query messages the relays sent during the window (each waits for ReadyForQuery), per delivery; lib/pq uses two per parameterised statement",
	"fleet.runs":                "one run per relay count, each in a fresh database: the relays idle for fleet_idle_ns, then the harness publishes fleet_events_per_sec events/s for fleet_duration_ns",
	"idle_connections":          "the most client backends at once in the run's database whose application_name is not the harness's (pg_stat_activity every 100 ms), over the last second of the idle period",
	"load_connections":          "the same, from the start of publishing to the last receipt",
	"transactions_per_event":    "transactions (relay start to exit, the idle period included, the harness's own left out) per published event",
	"river.runs":                "the River sender (bench/river, its own module) in place of the relay, one run per mode and setting, each in a fresh database: drain (drain_events jobs inserted with InsertManyFast before it starts, ready to last receipt) and steady (steady_events_per_sec jobs/s, one client.Insert transaction each, from a publisher process of its own); relay_* figures are the sender's, and the publisher's transactions are left out as the relay scenarios' publisher's are",
	"limit":                     "the database-only ceiling of the relay's drain work: the harness runs claim_and_fan_out (batches of 100), lease_due and record_attempts (or record_and_lease_due) as fast as PostgreSQL answers, no relay and no HTTP; several connection x batch settings, the best counts; transactions are every transaction of the database over the best setting's run",
}

func newReport(h *harness, m machine, results []Result) report {
	rep := report{
		GeneratedAt: time.Now().UTC(),
		Machine:     m,
		Settings: settings{
			Quick: h.opts.quick, Replicas: h.opts.replicas, Scenarios: h.opts.scenarios,
			CountStatements: h.opts.countStatements, RelayEnv: h.opts.relayEnv,
			RelayBinary: h.relayBin, Sizes: h.size,
		},
		Scenarios:   results,
		Definitions: definitions,
	}
	rep.Targets = evaluate(results, h.opts.replicas)
	steady, slow := find(results, "steady"), find(results, "slow")
	if ok(steady) && ok(slow) && steady.Latency.P99 > 0 {
		ratio := slow.Latency.P99 / steady.Latency.P99
		rep.SlowVsSteadyP99 = &ratio
	}
	return rep
}

func find(rs []Result, name string) *Result {
	for i := range rs {
		if rs[i].Scenario == name {
			return &rs[i]
		}
	}
	return nil
}

// ok reports whether a scenario ran to the end without error.
func ok(r *Result) bool { return r != nil && r.Error == "" && r.Complete }

func evaluate(rs []Result, replicas int) []target {
	var ts []target
	check := func(name, scenario, goal string, pass func(float64) bool, value func(*Result) (float64, string)) {
		t := target{Name: name, Scenario: scenario, Goal: goal, Status: "n/a", Display: "-"}
		r := find(rs, scenario)
		if r != nil && r.Error == "" {
			t.Value, t.Display = value(r)
			t.Status = "MISS"
			if r.Complete && pass(t.Value) {
				t.Status = "PASS"
			}
		}
		ts = append(ts, t)
	}
	rate := func(r *Result) (float64, string) {
		return r.DeliveriesPerSec, fmt.Sprintf("%.0f/s", r.DeliveriesPerSec)
	}
	check("drain throughput", "drain", ">= 5,000 deliveries/s", func(v float64) bool { return v >= 5000 }, rate)
	check("fan-out throughput", "fanout", ">= 5,000 deliveries/s", func(v float64) bool { return v >= 5000 }, rate)
	check("steady p50 latency", "steady", "<= 5 ms", func(v float64) bool { return v <= 5 },
		func(r *Result) (float64, string) { return r.Latency.P50, fmtMs(r.Latency.P50, r.Latency.N) })
	check("steady p99 latency", "steady", "<= 25 ms", func(v float64) bool { return v <= 25 },
		func(r *Result) (float64, string) { return r.Latency.P99, fmtMs(r.Latency.P99, r.Latency.N) })

	// The slow endpoint's effect as the issue defines it: the healthy subscription's p99 in
	// "slow" against the p99 in "steady". The paired figure (printed below the targets)
	// is a diagnostic: it also counts the second subscription's own work.
	st := target{Name: "slow endpoint p99", Scenario: "slow", Goal: "<= 1.10 x steady p99", Status: "n/a", Display: "-"}
	if steady, slow := find(rs, "steady"), find(rs, "slow"); steady != nil && slow != nil && steady.Error == "" && slow.Error == "" && steady.Latency.P99 > 0 {
		st.Value = slow.Latency.P99 / steady.Latency.P99
		st.Display = fmt.Sprintf("%.2f (%s vs %s)", st.Value, fmtMs(slow.Latency.P99, slow.Latency.N), fmtMs(steady.Latency.P99, steady.Latency.N))
		st.Status = "MISS"
		if slow.Complete && steady.Complete && st.Value <= 1.10 {
			st.Status = "PASS"
		}
	}
	ts = append(ts, st)

	// Peak RSS over every scenario that ran.
	rss := target{Name: "relay peak RSS", Scenario: "all", Goal: "< 64 MiB", Status: "n/a", Display: "-"}
	for _, r := range rs {
		if r.RelayPeakRSSMiB > rss.Value {
			rss.Value, rss.Scenario = r.RelayPeakRSSMiB, "all (max: "+r.Scenario+")"
		}
	}
	if rss.Value > 0 {
		rss.Display = fmt.Sprintf("%.1f MiB", rss.Value)
		rss.Status = passMiss(rss.Value < 64)
	}
	ts = append(ts, rss)

	check("idle CPU", "idle", "< 1% of a core (per replica)", func(v float64) bool { return v < 1 },
		func(r *Result) (float64, string) {
			v := r.RelayCPUPercent / float64(replicas)
			return v, fmt.Sprintf("%.2f%%", v)
		})
	ts = append(ts, manyTarget(rs))
	check("one event to many subscriptions", "wide", "< 0.5 s commit to last receipt (worst event)", func(v float64) bool { return v < 500 },
		func(r *Result) (float64, string) {
			if r.Wide == nil || len(r.Wide.Events) == 0 {
				return math.Inf(1), "-"
			}
			w := r.Wide
			return w.WorstMs, fmt.Sprintf("worst %s (median %s, %d events to %d subscriptions)", fmtMs(w.WorstMs, 1), fmtMs(w.MedianMs, 1), len(w.Events), r.Subscriptions)
		})
	check("tenant beside another's backlog", "tenants", "<= 1 s commit to receipt (tenant B's worst event)", func(v float64) bool { return v <= 1000 },
		func(r *Result) (float64, string) {
			t := r.Tenants
			if t == nil || t.BLatency.N == 0 {
				return math.Inf(1), "-"
			}
			return t.BLatency.Max, fmt.Sprintf("max %s (median %s, %d events; A: %d deliveries)", fmtMs(t.BLatency.Max, 1), fmtMs(t.BLatency.P50, 1), t.BLatency.N, t.ADelivered)
		})
	ts = append(ts, fleetTargets(find(rs, "fleet"))...)
	ts = append(ts, baselineTargets(rs)...)
	for _, sc := range []string{"drain", "fanout"} {
		check("database round trips", sc, "<= 1 per 25 deliveries (<= 0.040/delivery)", func(v float64) bool { return v <= 0.04 },
			func(r *Result) (float64, string) {
				if r.Wire == nil {
					// Without the proxy, transactions are the best available lower bound.
					return r.TransactionsPerDelivery, fmt.Sprintf("%.3f xact/dlv (no proxy: lower bound)", r.TransactionsPerDelivery)
				}
				return r.RoundTripsPerDelivery, fmt.Sprintf("%.3f/dlv (1 per %.0f)", r.RoundTripsPerDelivery, 1/r.RoundTripsPerDelivery)
			})
	}
	return ts
}

// manyTarget compares many subscriptions' throughput with one subscription's (drain) in the
// same run: a rate measured on another run, on a shared machine, would not be comparable.
func manyTarget(rs []Result) target {
	t := target{Name: "many-subscription throughput", Scenario: "many", Goal: ">= 0.5 x drain deliveries/s (same run)", Status: "n/a", Display: "-"}
	many, drain := find(rs, "many"), find(rs, "drain")
	if many == nil || many.Error != "" {
		return t
	}
	if !ok(drain) || drain.DeliveriesPerSec <= 0 {
		t.Display = fmt.Sprintf("%.0f/s; ratio n/a (drain did not run to the end in this run)", many.DeliveriesPerSec)
		return t
	}
	t.Value = many.DeliveriesPerSec / drain.DeliveriesPerSec
	t.Display = fmt.Sprintf("%.2f (%.0f/s vs drain %.0f/s)", t.Value, many.DeliveriesPerSec, drain.DeliveriesPerSec)
	t.Status = passMiss(many.Complete && t.Value >= 0.5)
	return t
}

func passMiss(pass bool) string {
	if pass {
		return "PASS"
	}
	return "MISS"
}

// fmtMs prints a latency in a unit that fits it; n == 0 means no sample.
func fmtMs(ms float64, n int) string {
	switch {
	case n == 0 || math.IsNaN(ms):
		return "-"
	case ms >= 1000:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.2fms", ms)
	}
}

func (rep report) print(w io.Writer) {
	m, s := rep.Machine, rep.Settings
	commit := m.GitCommit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if m.GitDirty {
		commit += " (dirty tree)"
	}
	mode := "full"
	if s.Quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "\noutbox-relay benchmark (%s)  cores=%d  %s %s/%s  commit=%s  PostgreSQL %s  replicas=%d  statements counted: %v\n",
		mode, m.Cores, m.GoVersion, m.GOOS, m.GOARCH, commit, m.Postgres, s.Replicas, s.CountStatements)
	if len(s.RelayEnv) > 0 {
		fmt.Fprintf(w, "relay env: %s\n", strings.Join(s.RelayEnv, " "))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tdelivered\tdeliveries/s\tp50\tp95\tp99\tCPU s/10k\tpeak RSS\txact/dlv\tstmt/dlv\tRT/dlv\t")
	for _, r := range rep.Scenarios {
		// Fleet and river: one row per run; a run that failed ends the list with FAILED.
		if r.Fleet != nil {
			for _, run := range r.Fleet.Runs {
				tableRow(tw, run.Result)
			}
		}
		if r.River != nil {
			for _, run := range r.River.Runs {
				tableRow(tw, run.Result)
			}
			for _, res := range r.River.RelayDrain {
				tableRow(tw, res)
			}
			for _, res := range r.River.RelaySteady {
				tableRow(tw, res)
			}
		}
		switch {
		case r.Error != "":
			fmt.Fprintf(tw, "%s\tFAILED\t\t\t\t\t\t\t\t\t\t\n", r.Scenario)
		case r.Limit != nil && r.Limit.Skipped != "":
			fmt.Fprintf(tw, "%s\tskipped\t\t\t\t\t\t\t\t\t\t\n", r.Scenario)
		case r.Fleet == nil && r.River == nil:
			tableRow(tw, r)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\ndetails")
	for _, r := range rep.Scenarios {
		switch {
		case r.Fleet != nil:
			printFleetDetails(w, r)
		case r.River != nil:
			printRiverDetails(w, r)
		case r.Limit != nil:
			printLimitDetails(w, r)
		default:
			printDetails(w, r)
		}
	}
	if r := find(rep.Scenarios, "fleet"); r != nil && r.Fleet != nil && len(r.Fleet.Runs) > 0 {
		printFleet(w, r)
	}
	if r := find(rep.Scenarios, "river"); r != nil && r.River != nil && len(r.River.Runs) > 0 {
		printRiver(w, rep.Scenarios)
	}

	fmt.Fprintln(w, "\ntargets")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", t.Status, t.Name, t.Scenario, t.Goal, t.Display)
	}
	tw.Flush()
	if steady, slow := find(rep.Scenarios, "steady"), find(rep.Scenarios, "slow"); rep.SlowVsSteadyP99 != nil {
		fmt.Fprintf(w, "  slow endpoint: healthy subscription p99 %s with a 2 s endpoint beside it vs %s alone (steady): ratio %.2f\n",
			fmtMs(slow.Latency.P99, slow.Latency.N), fmtMs(steady.Latency.P99, steady.Latency.N), *rep.SlowVsSteadyP99)
	} else if slow != nil {
		fmt.Fprintln(w, "  slow endpoint: no ratio to steady (run steady and slow together to compare p99)")
	}
	if slow := find(rep.Scenarios, "slow"); slow != nil && slow.SlowPaired != nil {
		sp := slow.SlowPaired
		fmt.Fprintf(w, "  slow endpoint, paired in one run (diagnostic; includes the second subscription's own work): healthy p50/p99 %s/%s while the 2 s endpoint is active, %s/%s while it is paused\n",
			fmtMs(sp.Active.P50, sp.Active.N), fmtMs(sp.Active.P99, sp.Active.N), fmtMs(sp.Paused.P50, sp.Paused.N), fmtMs(sp.Paused.P99, sp.Paused.N))
	}
	fmt.Fprintln(w, "\nxact/dlv: pg_stat_database transactions of the test database per delivery, relay start to exit (PostgreSQL")
	fmt.Fprintln(w, "  counts one per Sync, so a lib/pq parameterised statement counts two: this tracks round trips, not statements);")
	fmt.Fprintln(w, "stmt/dlv, RT/dlv: statements and round trips the relay sent (counting proxy), ready to all delivered.")
	fmt.Fprintln(w, "Latency: receiver arrival minus the Go wall clock just before the autocommit INSERT of the event.")
	fmt.Fprintln(w, "tenants: deliveries/s is tenant A's backlog, p50/p95/p99 are tenant B's events. wide: deliveries/s is over")
	fmt.Fprintln(w, "  the summed commit->last receipt times of its events.")
	fmt.Fprintln(w, "fleet/N: the fleet scenario with N relays; xact/dlv there is per event (1 subscription). Connections: client backends")
	fmt.Fprintln(w, "  in the run's database (pg_stat_activity every 100 ms) whose application_name is not the harness's.")
	fmt.Fprintln(w, "river-*: the River sender (bench/river) instead of the relay: CPU, peak RSS, xact/dlv, stmt/dlv and RT/dlv are the sender's.")
	fmt.Fprintln(w, "limit: the harness runs the relay's SQL cycle itself, no relay and no HTTP: deliveries/s is the database's ceiling")
	fmt.Fprintln(w, "  for the drain shape; xact/dlv, stmt/dlv and RT/dlv are the harness's cycle.")
}

// tableRow prints one scenario's row of the main table.
func tableRow(tw io.Writer, r Result) {
	delivered, rate, cpu10k := "-", "-", "-"
	if r.Expected > 0 {
		delivered = fmt.Sprintf("%d/%d", r.Delivered, r.Expected)
		rate = fmt.Sprintf("%.0f", r.DeliveriesPerSec)
		cpu10k = fmt.Sprintf("%.2f", r.RelayCPUPer10k)
	}
	xact, stmt, rt := "-", "-", "-"
	if r.Delivered > 0 {
		xact = fmt.Sprintf("%.3f", r.TransactionsPerDelivery)
		if r.Wire != nil {
			stmt = fmt.Sprintf("%.3f", r.StatementsPerDelivery)
			rt = fmt.Sprintf("%.3f", r.RoundTripsPerDelivery)
		}
	}
	rss := fmt.Sprintf("%.1f MiB", r.RelayPeakRSSMiB)
	if r.Process == "none" {
		cpu10k, rss = "-", "-"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Scenario, delivered, rate,
		fmtMs(r.Latency.P50, r.Latency.N), fmtMs(r.Latency.P95, r.Latency.N), fmtMs(r.Latency.P99, r.Latency.N),
		cpu10k, rss, xact, stmt, rt)
}

// fleetTargets checks the fleet against its targets: the largest relay count against the
// smallest (16 relays vs 1: stricter than the 12 the goal names), and the connection limits.
// At idle, a relay with nothing to do (a standby) may hold 1 connection and the active relay
// 2 (its LISTEN connection, which must stay open for new events to arrive within
// milliseconds, and one pooled): at most relays + 1 in all, every count. Under load, at most
// 2 per relay applies to fleets (more than one relay): a single relay under load holds its
// LISTEN connection and up to RELAY_DB_MAX_CONNS, which is what the setting is for.
func fleetTargets(r *Result) []target {
	ts := []target{
		{Name: "fleet transactions per event", Goal: "most relays <= 1.5 x one relay's (16 vs 1: the goal's 12, made stricter)"},
		{Name: "fleet connections at idle", Goal: "<= 1 per standby, 2 for the active relay (total <= relays + 1), every count"},
		{Name: "fleet connections under load", Goal: "<= 2 per relay, every fleet (more than one relay)"},
		{Name: "fleet application INSERT p99", Goal: "most relays <= 1.25 x one relay's (16 vs 1)"},
	}
	for i := range ts {
		ts[i].Scenario, ts[i].Status, ts[i].Display = "fleet", "n/a", "-"
	}
	if r == nil || r.Error != "" || r.Fleet == nil || len(r.Fleet.Runs) < 2 {
		return ts
	}
	runs := r.Fleet.Runs
	one, most := runs[0], runs[len(runs)-1]
	both := one.Result.Complete && most.Result.Complete
	if one.TransactionsPerEvent > 0 {
		v := most.TransactionsPerEvent / one.TransactionsPerEvent
		ts[0].Value, ts[0].Status = v, passMiss(both && v <= 1.5)
		ts[0].Display = fmt.Sprintf("%.2f (%d relays %.3f vs %d: %.3f xact/event)", v, most.Relays, most.TransactionsPerEvent, one.Relays, one.TransactionsPerEvent)
	}
	connTarget := func(t *target, limit func(relays int) int, held func(fleetRun) int) {
		pass := true
		var parts []string
		for _, fr := range runs {
			lim := limit(fr.Relays)
			if lim < 0 {
				parts = append(parts, fmt.Sprintf("x%d: %d (n/a)", fr.Relays, held(fr)))
				continue
			}
			t.Value = max(t.Value, float64(held(fr))/float64(fr.Relays))
			pass = pass && fr.Result.Complete && held(fr) <= lim
			parts = append(parts, fmt.Sprintf("x%d: %d (<= %d)", fr.Relays, held(fr), lim))
		}
		t.Status = passMiss(pass)
		t.Display = fmt.Sprintf("worst %.2f per relay; %s", t.Value, strings.Join(parts, ", "))
	}
	connTarget(&ts[1], idleConnLimit, func(fr fleetRun) int { return fr.IdleConns })
	connTarget(&ts[2], loadConnLimit, func(fr fleetRun) int { return fr.LoadConns })
	ins := r.Fleet.insertMedians(one.Relays, most.Relays)
	if ins.oneP99 > 0 && ins.oneP50 > 0 {
		v := ins.mostP99 / ins.oneP99
		ts[3].Value, ts[3].Status = v, passMiss(both && r.Complete && v <= 1.25)
		ts[3].Display = fmt.Sprintf("%.2f (median p99 %.2fms with %d relays vs %.2fms with %d over %d and %d runs; p50 ratio %.2f)",
			v, ins.mostP99, most.Relays, ins.oneP99, one.Relays, ins.mostRuns, ins.oneRuns, ins.mostP50/ins.oneP50)
	}
	return ts
}

// insertMedians are the medians of the INSERT latencies over every run of two relay counts.
type insertMedians struct {
	oneP50, oneP99, mostP50, mostP99 float64
	oneRuns, mostRuns                int
}

// insertMedians answers the medians over fs.Inserts of the runs with one and with most relays.
func (fs *fleetStats) insertMedians(one, most int) insertMedians {
	var out insertMedians
	inserts := fs.Inserts
	if len(inserts) == 0 { // results written before the repeats existed
		for _, fr := range fs.Runs {
			if p := fr.Result.Publish; p != nil {
				inserts = append(inserts, fleetInsert{Relays: fr.Relays, P50Ms: p.Insert.P50, P99Ms: p.Insert.P99})
			}
		}
	}
	pick := func(n int) (p50, p99 float64, runs int) {
		var a, b []float64
		for _, in := range inserts {
			if in.Relays == n {
				a, b = append(a, in.P50Ms), append(b, in.P99Ms)
			}
		}
		return median(a), median(b), len(b)
	}
	out.oneP50, out.oneP99, out.oneRuns = pick(one)
	out.mostP50, out.mostP99, out.mostRuns = pick(most)
	return out
}

// median answers the middle of xs (the mean of the middle two), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// idleConnLimit is the most connections relays may hold at idle: 1 per standby, 2 for the
// active relay.
func idleConnLimit(relays int) int { return relays + 1 }

// loadConnLimit is the most connections relays may hold under load: 2 per relay in a fleet;
// -1 (no target) for a single relay.
func loadConnLimit(relays int) int {
	if relays < 2 {
		return -1
	}
	return 2 * relays
}

// connStatus is PASS or MISS against limit, or "n/a" when limit is -1.
func connStatus(complete bool, held, limit int) string {
	if limit < 0 {
		return "n/a"
	}
	return passMiss(complete && held <= limit)
}

// printFleet prints the fleet's figures side by side, one line per relay count, with the
// targets that apply to each.
func printFleet(w io.Writer, r *Result) {
	runs := r.Fleet.Runs
	fmt.Fprintf(w, "\nfleet: %s\n", r.Description)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "relays\tevents/s\twebhook p50\tp99\tINSERT p50\tp99\tp99 vs 1\txact/event\tvs 1\tconns idle\t<= relays+1\tconns load\t<= 2x relays\t")
	one := runs[0]
	for _, fr := range runs {
		res := fr.Result
		rate, insP50, insP99, insRatio, insStatus := "-", "-", "-", "-", ""
		if p := res.Publish; p != nil {
			rate = fmt.Sprintf("%.0f", p.AchievedRate)
			insP50, insP99 = fmtMs(p.Insert.P50, p.Insert.N), fmtMs(p.Insert.P99, p.Insert.N)
			if base := one.Result.Publish; base != nil && base.Insert.P99 > 0 && fr.Relays != one.Relays {
				v := p.Insert.P99 / base.Insert.P99
				insRatio = fmt.Sprintf("%.2f", v)
				insStatus = " " + passMiss(res.Complete && one.Result.Complete && v <= 1.25)
			}
		}
		xRatio, xStatus := "-", ""
		if one.TransactionsPerEvent > 0 && fr.Relays != one.Relays {
			v := fr.TransactionsPerEvent / one.TransactionsPerEvent
			xRatio = fmt.Sprintf("%.2f", v)
			xStatus = " " + passMiss(res.Complete && one.Result.Complete && v <= 1.5)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s%s\t%.3f\t%s%s\t%d\t%s\t%d\t%s\t\n", fr.Relays, rate,
			fmtMs(res.Latency.P50, res.Latency.N), fmtMs(res.Latency.P99, res.Latency.N),
			insP50, insP99, insRatio, insStatus, fr.TransactionsPerEvent, xRatio, xStatus,
			fr.IdleConns, connStatus(res.Complete, fr.IdleConns, idleConnLimit(fr.Relays)),
			fr.LoadConns, connStatus(res.Complete, fr.LoadConns, loadConnLimit(fr.Relays)))
	}
	tw.Flush()
	if last := runs[len(runs)-1]; len(r.Fleet.Inserts) > 2 {
		for _, n := range []int{one.Relays, last.Relays} {
			var p99s []string
			for _, in := range r.Fleet.Inserts {
				if in.Relays == n {
					p99s = append(p99s, fmt.Sprintf("%.2f", in.P99Ms))
				}
			}
			fmt.Fprintf(w, "  INSERT p99 with %d relay(s), every run (first pass, then the repeats alternating): %s ms\n", n, strings.Join(p99s, ", "))
		}
		ins := r.Fleet.insertMedians(one.Relays, last.Relays)
		if ins.oneP99 > 0 {
			fmt.Fprintf(w, "  medians: p99 %.2f vs %.2f ms (%.2f), p50 %.2f vs %.2f ms: the INSERT target compares these\n",
				ins.mostP99, ins.oneP99, ins.mostP99/ins.oneP99, ins.mostP50, ins.oneP50)
		}
	}
	fmt.Fprintf(w, "  events/s: what the application managed to publish (offered %d/s); ratios are against %d relay(s); the transactions\n", r.Fleet.Rate, one.Relays)
	fmt.Fprintln(w, "  target applies to the largest count (the goal names 12 relays: stricter),")
	fmt.Fprintln(w, "  the INSERT one to the largest count too (the lines between are informative); at idle a standby may hold 1 connection")
	fmt.Fprintln(w, "  and the active relay 2 (LISTEN + 1 pooled); under load 2 per relay applies to fleets (one relay holds LISTEN + RELAY_DB_MAX_CONNS).")
	fmt.Fprintf(w, "  the server allows %d connections (max_connections), shared by every relay and the harness.\n", r.Fleet.MaxConnections)
}

// printFleetDetails prints each relay count's details, with its connections.
func printFleetDetails(w io.Writer, r Result) {
	fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.Description)
	for _, fr := range r.Fleet.Runs {
		printDetails(w, fr.Result)
		fmt.Fprintf(w, "    connections (not the harness's): at idle %d (one relay at most %d; %d samples in the idle period's last %s), under load %d (one relay at most %d; %d samples)\n",
			fr.IdleConns, fr.IdleConnsOneRelay, fr.IdleSamples, idleConnWindow, fr.LoadConns, fr.LoadConnsOneRelay, fr.LoadSamples)
		fmt.Fprintf(w, "    transactions per event: %.3f (%d, relay start to exit, idle period included)\n", fr.TransactionsPerEvent, fr.Result.Transactions)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "    ERROR: %s\n", indent(r.Error, "      "))
	}
}

func printDetails(w io.Writer, r Result) {
	who := "relay"
	if r.Process != "" {
		who = r.Process
	}
	fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.Description)
	if r.Error != "" {
		fmt.Fprintf(w, "    ERROR: %s\n", indent(r.Error, "      "))
		for _, m := range r.RelayLog.Sample {
			fmt.Fprintf(w, "      %s log: %s\n", who, m)
		}
		return
	}
	var parts []string
	parts = append(parts, fmt.Sprintf("%s start->ready %.2fs", who, r.StartToReady))
	if r.StartToAllReady > r.StartToReady+0.005 {
		parts = append(parts, fmt.Sprintf("->all replicas ready %.2fs", r.StartToAllReady))
	}
	switch {
	case r.Tenants != nil && r.StartToLast > 0:
		parts = append(parts, fmt.Sprintf("ready->tenant A's last receipt %.2fs", r.RateWindowS), fmt.Sprintf("start->A's last receipt %.2fs", r.StartToLast))
	case r.StartToLast > 0:
		parts = append(parts, fmt.Sprintf("ready->last receipt %.2fs", r.RateWindowS), fmt.Sprintf("start->last receipt %.2fs", r.StartToLast))
	case r.Wide != nil:
		parts = append(parts, fmt.Sprintf("commit->last receipt summed over the events %.2fs", r.RateWindowS))
	case r.RateWindowS > 0:
		parts = append(parts, fmt.Sprintf("first commit->last receipt %.2fs", r.RateWindowS))
	}
	fmt.Fprintf(w, "    %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "    window %.1fs: %s CPU %.2fs (%.1f%% of one core; lifetime %.2fs); machine busy %.0f%% of %d cores: receiver %.2fs, harness %.2fs, postgres %.2fs, other %.2fs\n",
		r.MeasureWindowSeconds, who, r.RelayCPUSeconds, r.RelayCPUPercent, r.RelayCPUSecondsTotal, r.MachineBusyPercent, runtime.NumCPU(),
		r.ReceiverCPUSeconds, r.HarnessCPUSeconds, r.PostgresCPUSeconds, r.OtherCPUSeconds)
	if r.Wire != nil {
		fmt.Fprintf(w, "    database: %d transactions (start to exit); window: %d statements, %d round trips, %d new connections, %.1f statements/s\n",
			r.Transactions, r.Wire.Statements, r.Wire.RoundTrips, r.Wire.Connections, r.StatementsPerSecond)
	} else {
		fmt.Fprintf(w, "    database: %d transactions (start to exit)\n", r.Transactions)
	}
	if r.Latency.N > 0 {
		fmt.Fprintf(w, "    latency: min %s, mean %s, max %s over %d deliveries\n",
			fmtMs(r.Latency.Min, 1), fmtMs(r.Latency.Mean, 1), fmtMs(r.Latency.Max, 1), r.Latency.N)
	}
	if wd := r.Wide; wd != nil {
		var each []string
		for _, ev := range wd.Events {
			each = append(each, fmt.Sprintf("%s/%s (%d)", fmtMs(ev.FirstMs, 1), fmtMs(ev.LastMs, 1), ev.Received))
		}
		fmt.Fprintf(w, "    each event, commit->first/last receipt (subscriptions reached): %s; worst %s, median %s\n",
			strings.Join(each, ", "), fmtMs(wd.WorstMs, len(wd.Events)), fmtMs(wd.MedianMs, len(wd.Events)))
	}
	if t := r.Tenants; t != nil {
		fmt.Fprintf(w, "    tenant A: %d delivered at %.0f/s, backlog done %.2fs after ready (the deliveries/s column)\n",
			t.ADelivered, t.ADeliveriesPerSec, t.AFinishedS)
		const shown = 8
		var first []string
		for _, ms := range t.BLatenciesMs[:min(shown, len(t.BLatenciesMs))] {
			first = append(first, fmtMs(ms, 1))
		}
		if len(t.BLatenciesMs) > shown {
			first = append(first, "...")
		}
		fmt.Fprintf(w, "    tenant B: %d events, %d committed during A's backlog; commit->receipt max %s, median %s (the latency columns); in publish order: %s\n",
			t.BEvents, t.BDuringA, fmtMs(t.BLatency.Max, t.BLatency.N), fmtMs(t.BLatency.P50, t.BLatency.N), strings.Join(first, ", "))
	}
	if p := r.Publish; p != nil {
		fmt.Fprintf(w, "    publisher: %d events at %.1f/s from %d connections, max schedule lag %s; INSERT p50 %s, p99 %s\n",
			p.Events, p.AchievedRate, p.Publishers, fmtMs(p.MaxLagMs, 1), fmtMs(p.Insert.P50, p.Insert.N), fmtMs(p.Insert.P99, p.Insert.N))
	}
	if r.DeliveryStates != nil {
		fmt.Fprintf(w, "    deliveries in the database: %s; attempts %d, failed %d; duplicate requests %d",
			states(r.DeliveryStates), r.Attempts, r.FailedAttempts, r.Duplicates)
		if r.OrderViolations != nil {
			fmt.Fprintf(w, "; order violations %d", *r.OrderViolations)
		}
		fmt.Fprintln(w)
	}
	l := r.RelayLog
	fmt.Fprintf(w, "    %s log: %d warn, %d error, %d other lines\n", who, l.Warn, l.Error, l.Other)
	for _, m := range l.Sample {
		fmt.Fprintf(w, "      %s\n", m)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "    note: %s\n", n)
	}
}

func states(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	known := []string{"pending", "succeeded", "failed", "cancelled"}
	var parts []string
	for _, s := range known {
		if n, ok := m[s]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", s, n))
		}
	}
	// Others (River's job states) in name order.
	var others []string
	for s := range m {
		if !slices.Contains(known, s) {
			others = append(others, s)
		}
	}
	slices.Sort(others)
	for _, s := range others {
		parts = append(parts, fmt.Sprintf("%s=%d", s, m[s]))
	}
	return strings.Join(parts, " ")
}

func indent(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func (rep report) write(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}
