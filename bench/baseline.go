package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// The report's baselines: the River sender beside the relay (river.go) and the database-only
// ceiling (limit.go), with the ratios the targets take.

// riverResult is the River run named name ("river-drain/tuned128"), if it ran to the end.
func riverResult(rs []Result, name string) *Result {
	r := find(rs, "river")
	if r == nil || r.River == nil {
		return nil
	}
	for i := range r.River.Runs {
		if res := &r.River.Runs[i].Result; res.Scenario == name && res.Error == "" {
			return res
		}
	}
	return nil
}

// baselineTargets are the targets against River and against the database-only ceiling,
// and the relay's transactions per 1,000 drain deliveries.
func baselineTargets(rs []Result) []target {
	ts := []target{
		{Name: "drain vs River", Scenario: "drain, river", Goal: ">= 1.2 x River's drain deliveries/s (128 workers, FetchCooldown 10 ms), medians of runs taken in pairs"},
		{Name: "steady p50 vs River", Scenario: "steady, river", Goal: "median p50 <= River's (64 workers, FetchCooldown 1 ms), runs taken in pairs"},
		{Name: "drain database transactions", Scenario: "drain", Goal: "<= 15 per 1,000 deliveries"},
		{Name: "drain vs database-only ceiling", Scenario: "drain, limit", Goal: ">= 0.35 x limit deliveries/s (same run)"},
	}
	for i := range ts {
		ts[i].Status, ts[i].Display = "n/a", "-"
	}
	drain, limit := find(rs, "drain"), find(rs, "limit")
	ran := func(r *Result) bool { return r != nil && r.Error == "" }
	if relay, river := drainPairs(rs); len(relay) > 0 && len(river) > 0 {
		a, b := medianRate(relay), medianRate(river)
		v := a / b
		ts[0].Value, ts[0].Status = v, passMiss(allComplete(relay) && allComplete(river) && v >= 1.2)
		ts[0].Display = fmt.Sprintf("%.2f (%.0f/s vs River %.0f/s; relay runs %s, River runs %s)", v, a, b, rates(relay), rates(river))
	}
	if relay, river := steadyPairs(rs); len(relay) > 0 && len(river) > 0 {
		a, b := medianP50(relay), medianP50(river)
		v := a / b
		ts[1].Value, ts[1].Status = v, passMiss(allComplete(relay) && allComplete(river) && v <= 1)
		ts[1].Display = fmt.Sprintf("%.2f ms vs River %.2f ms (ratio %.2f; relay runs %s, River runs %s)", a, b, v, p50s(relay), p50s(river))
	}
	if ran(drain) && drain.Delivered > 0 {
		v := 1000 * drain.TransactionsPerDelivery
		ts[2].Value, ts[2].Status = v, passMiss(drain.Complete && v <= 15)
		ts[2].Display = fmt.Sprintf("%.1f (%d transactions for %d deliveries)", v, drain.Transactions, drain.Delivered)
	}
	switch {
	case ran(limit) && limit.Limit != nil && limit.Limit.Skipped != "":
		ts[3].Display = "limit skipped: no claim_and_fan_out in this build"
	case ran(drain) && ran(limit) && limit.DeliveriesPerSec > 0:
		v := drain.DeliveriesPerSec / limit.DeliveriesPerSec
		ts[3].Value, ts[3].Status = v, passMiss(drain.Complete && limit.Complete && v >= 0.35)
		ts[3].Display = fmt.Sprintf("%.2f (%.0f/s vs limit %.0f/s)", v, drain.DeliveriesPerSec, limit.DeliveriesPerSec)
	}
	return ts
}

// steadyPairs answers the steady runs the comparison with River takes: the relay's steady
// scenario and its runs between River's (riverStats.RelaySteady), and River's 1 ms steady
// runs; each only if it ran to the end with latencies.
func steadyPairs(rs []Result) (relay, river []*Result) {
	usable := func(r *Result) bool { return r != nil && r.Error == "" && r.Latency.N > 0 }
	return pairedRuns(rs, "steady", riverFast, usable, func(s *riverStats) []Result { return s.RelaySteady })
}

// drainPairs answers the drain runs the comparison with River takes: the relay's drain
// scenario and its runs between River's (riverStats.RelayDrain), and River's tuned128
// drains; each only if it ran to the end with a rate.
func drainPairs(rs []Result) (relay, river []*Result) {
	usable := func(r *Result) bool { return r != nil && r.Error == "" && r.DeliveriesPerSec > 0 }
	return pairedRuns(rs, "drain", riverTuned128, usable, func(s *riverStats) []Result { return s.RelayDrain })
}

// pairedRuns answers the relay's scenario named mode with its extra runs (extra), and
// River's runs of mode with setting, the usable ones.
func pairedRuns(rs []Result, mode string, setting riverSetting, usable func(*Result) bool, extra func(*riverStats) []Result) (relay, river []*Result) {
	if s := find(rs, mode); usable(s) {
		relay = append(relay, s)
	}
	rv := find(rs, "river")
	if rv == nil || rv.River == nil {
		return relay, nil
	}
	runs := extra(rv.River)
	for i := range runs {
		if s := &runs[i]; usable(s) {
			relay = append(relay, s)
		}
	}
	for i := range rv.River.Runs {
		run := &rv.River.Runs[i]
		if run.Mode == mode && run.Setting.Name == setting.Name && usable(&run.Result) {
			river = append(river, &run.Result)
		}
	}
	return relay, river
}

func medianRate(rs []*Result) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = r.DeliveriesPerSec
	}
	return median(xs)
}

// rates lists the runs' deliveries/s, "5831/6008".
func rates(rs []*Result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.0f", r.DeliveriesPerSec)
	}
	return strings.Join(parts, "/")
}

func medianP50(rs []*Result) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = r.Latency.P50
	}
	return median(xs)
}

func allComplete(rs []*Result) bool {
	for _, r := range rs {
		if !r.Complete {
			return false
		}
	}
	return true
}

// p50s lists the runs' p50s, "4.1/3.9/4.4".
func p50s(rs []*Result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f", r.Latency.P50)
	}
	return strings.Join(parts, "/")
}

// riverLabel names a River setting in the comparison.
func riverLabel(s riverSetting) string {
	return fmt.Sprintf("River %s (%d workers, FetchCooldown %s)", s.Name, s.MaxWorkers, s.FetchCooldown)
}

// per1k is transactions per 1,000 deliveries, or "-".
func per1k(r *Result) string {
	if r == nil || r.Delivered == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 1000*r.TransactionsPerDelivery)
}

func drainRate(r *Result) string {
	if r == nil || r.Delivered == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.DeliveriesPerSec)
}

func steadyLatency(r *Result) string {
	if r == nil || r.Latency.N == 0 {
		return "-"
	}
	return fmtMs(r.Latency.P50, r.Latency.N) + " / " + fmtMs(r.Latency.P99, r.Latency.N)
}

func cpuPer10k(r *Result) string {
	if r == nil || r.Delivered == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.RelayCPUPer10k)
}

// printRiver prints the relay's drain and steady beside each River setting's, and the
// ratios the targets take.
func printRiver(w io.Writer, rs []Result) {
	rv := find(rs, "river")
	version := rv.River.River
	if version == "" {
		version = "version unknown"
	}
	fmt.Fprintf(w, "\nriver: the relay beside a River webhook sender (bench/river, River %s), this run, same receiver, same measures\n", version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sender\tdrain deliveries/s\tsteady p50 / p99\txact per 1k deliveries: drain\tsteady\tCPU s/10k: drain\tsteady\t")
	row := func(name string, drain, steady *Result) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, drainRate(drain), steadyLatency(steady),
			per1k(drain), per1k(steady), cpuPer10k(drain), cpuPer10k(steady))
	}
	ok := func(r *Result) *Result {
		if r == nil || r.Error != "" {
			return nil
		}
		return r
	}
	row("outbox-relay", ok(find(rs, "drain")), ok(find(rs, "steady")))
	var order []riverSetting
	for _, run := range rv.River.Runs {
		seen := false
		for _, s := range order {
			seen = seen || s.Name == run.Setting.Name
		}
		if !seen {
			order = append(order, run.Setting)
		}
	}
	for _, s := range order {
		row(riverLabel(s), riverResult(rs, "river-drain/"+s.Name), riverResult(rs, "river-steady/"+s.Name))
	}
	tw.Flush()
	fmt.Fprintln(w, "  xact per 1k deliveries: pg_stat_database transactions, sender start to exit, the publisher's own left out; CPU: the sender's.")
	fmt.Fprintln(w, "  River's defaults: FetchCooldown 100 ms, FetchPollInterval 1 s; it has no default MaxWorkers (its documentation uses 100).")
	fmt.Fprintln(w, "  Every River setting listens for new jobs (LISTEN/NOTIFY); the poll interval is 1 s in all.")
	for _, t := range baselineTargets(rs) {
		if t.Status == "n/a" && t.Display == "-" {
			continue
		}
		fmt.Fprintf(w, "  %-4s  %s: %s; target %s\n", t.Status, t.Name, t.Display, t.Goal)
	}
}

// printRiverDetails prints every River run's details.
func printRiverDetails(w io.Writer, r Result) {
	fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.Description)
	for _, run := range r.River.Runs {
		printDetails(w, run.Result)
	}
	for _, res := range slices.Concat(r.River.RelayDrain, r.River.RelaySteady) {
		printDetails(w, res)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "    ERROR: %s\n", indent(r.Error, "      "))
	}
}

// printLimitDetails prints the limit scenario: the best setting, then every setting tried.
func printLimitDetails(w io.Writer, r Result) {
	fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.Description)
	ls := r.Limit
	switch {
	case ls.Skipped != "":
		fmt.Fprintf(w, "    skipped: %s\n", ls.Skipped)
		return
	case r.Error != "":
		fmt.Fprintf(w, "    ERROR: %s\n", indent(r.Error, "      "))
	}
	if len(ls.Runs) == 0 {
		return
	}
	best := ls.Runs[ls.Best]
	fmt.Fprintf(w, "    best: %s: %d succeeded in %.2fs (first fan-out to last record) = %.0f/s\n",
		best.describe(), r.Delivered, best.Seconds, best.DeliveriesPerSec)
	var each []string
	for _, run := range ls.Runs {
		s := fmt.Sprintf("%s %.0f/s", run, run.DeliveriesPerSec)
		if n := run.Result.Delivered; n > 0 {
			s += fmt.Sprintf(" (%.3f xact/dlv", float64(run.Transactions)/float64(n))
			if run.RoundTrips > 0 {
				s += fmt.Sprintf(", %.3f RT/dlv", float64(run.RoundTrips)/float64(n))
			}
			s += fmt.Sprintf(", %d leases, %d empty)", run.Leases, run.Empty)
		}
		each = append(each, s)
	}
	fmt.Fprintf(w, "    every setting (connections x batch; + = record_and_lease_due): %s\n", strings.Join(each, ", "))
	fmt.Fprintf(w, "    fan-out: claim_and_fan_out(%d), %d calls, on a connection of its own beside the lease connections\n", ls.FanOutBatch, best.FanOuts)
	fmt.Fprintf(w, "    window %.1fs: machine busy %.0f%% of %d cores: harness (doing the relay's work) %.2fs, postgres %.2fs, receiver (idle) %.2fs, other %.2fs\n",
		r.MeasureWindowSeconds, r.MachineBusyPercent, runtime.NumCPU(), r.HarnessCPUSeconds, r.PostgresCPUSeconds, r.ReceiverCPUSeconds, r.OtherCPUSeconds)
	if r.Wire != nil {
		fmt.Fprintf(w, "    database: %d transactions; window: %d statements, %d round trips, %d new connections\n",
			r.Transactions, r.Wire.Statements, r.Wire.RoundTrips, r.Wire.Connections)
	} else {
		fmt.Fprintf(w, "    database: %d transactions\n", r.Transactions)
	}
	if r.DeliveryStates != nil {
		fmt.Fprintf(w, "    deliveries in the database: %s; attempts %d, failed %d\n", states(r.DeliveryStates), r.Attempts, r.FailedAttempts)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "    note: %s\n", n)
	}
}
