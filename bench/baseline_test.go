package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseLimitConfigs(t *testing.T) {
	got, err := parseLimitConfigs(" 2x100, 4x500+ ,,1x1")
	if err != nil {
		t.Fatal(err)
	}
	want := []limitConfig{{Conns: 2, Batch: 100}, {Conns: 4, Batch: 500, Combined: true}, {Conns: 1, Batch: 1}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if s := got[1].String(); s != "4x500+" {
		t.Errorf("String() = %q", s)
	}
	if _, err := parseLimitConfigs(defaultLimitConfigs); err != nil {
		t.Errorf("the default %q: %v", defaultLimitConfigs, err)
	}
	for _, bad := range []string{"", ",", "2", "x100", "2x", "0x100", "2x0", "33x100", "2x10001", "2x100++", "ax100", "2x100-"} {
		if _, err := parseLimitConfigs(bad); err == nil {
			t.Errorf("parseLimitConfigs(%q) = nil error", bad)
		}
	}
}

func TestParsePublishReport(t *testing.T) {
	good := `{"events":3,"publishers":4,"first_commit_unix_ns":1700000000000000000,"achieved_events_per_sec":499.5,"max_schedule_lag_ms":1.5,"insert_ms":[3,1,2],"transactions":11}`
	pub, tx, err := parsePublishReport([]byte("a log line\n" + good + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tx != 11 || pub.Events != 3 || pub.Publishers != 4 || pub.FirstCommitNs != 1700000000000000000 || pub.AchievedRate != 499.5 || pub.MaxLagMs != 1.5 {
		t.Fatalf("got %+v, %d transactions", pub, tx)
	}
	if pub.Insert.N != 3 || pub.Insert.P50 != 2 || pub.Insert.Max != 3 {
		t.Fatalf("insert summary %+v", pub.Insert)
	}
	for name, out := range map[string]string{
		"Empty":          "",
		"NotJSON":        "published\n",
		"BrokenJSON":     `{"events":`,
		"NoEvents":       `{"events":0,"first_commit_unix_ns":1,"insert_ms":[],"transactions":0}`,
		"MissingTimes":   `{"events":2,"first_commit_unix_ns":1,"insert_ms":[1],"transactions":2}`,
		"NoCommit":       `{"events":1,"first_commit_unix_ns":0,"insert_ms":[1],"transactions":1}`,
		"TooFewTransact": `{"events":2,"first_commit_unix_ns":1,"insert_ms":[1,1],"transactions":1}`,
	} {
		if _, _, err := parsePublishReport([]byte(out)); err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
}

func TestRequiredVersion(t *testing.T) {
	mod := []byte(`module example.com/x

go 1.26.0

require github.com/jackc/pgx/v5 v5.13.0

require (
	github.com/riverqueue/river v0.51.2
	github.com/riverqueue/river/riverdriver/riverpgxv5 v0.51.2
)
`)
	if got := requiredVersion(mod, "github.com/riverqueue/river"); got != "v0.51.2" {
		t.Errorf("river: %q", got)
	}
	if got := requiredVersion(mod, "github.com/jackc/pgx/v5"); got != "v5.13.0" {
		t.Errorf("pgx: %q", got)
	}
	if got := requiredVersion(mod, "github.com/riverqueue"); got != "" {
		t.Errorf("a prefix matched: %q", got)
	}
	// The module's own go.mod: the scenario prints this version.
	if got := riverVersion("river/go.mod"); !strings.HasPrefix(got, "v") {
		t.Errorf("bench/river/go.mod: %q", got)
	}
}

// baselineResults is a run with drain, steady, limit and the river runs the targets take.
func baselineResults(drainRate, steadyP50, limitRate, riverDrain, riverP50 float64, drainTx int64) []Result {
	done := func(name string) Result { return Result{Scenario: name, Complete: true, Delivered: 1000} }
	drain := done("drain")
	drain.DeliveriesPerSec, drain.Transactions = drainRate, drainTx
	drain.derive()
	steady := done("steady")
	steady.Latency = Summary{N: 1000, P50: steadyP50, P99: 4 * steadyP50}
	limit := done("limit")
	limit.DeliveriesPerSec, limit.Limit = limitRate, &limitStats{}
	rd := done(riverDrainBaseline)
	rd.DeliveriesPerSec = riverDrain
	rs := done(riverSteadyBaseline)
	rs.Latency = Summary{N: 1000, P50: riverP50, P99: 4 * riverP50}
	river := done("river")
	river.River = &riverStats{Runs: []riverRun{
		{Mode: "drain", Setting: riverTuned128, Result: rd},
		{Mode: "steady", Setting: riverFast, Result: rs},
	}}
	return []Result{drain, limit, steady, river}
}

func statuses(ts []target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Status)
	}
	return strings.Join(s, " ")
}

func TestBaselineTargets(t *testing.T) {
	tests := []struct {
		name string
		rs   []Result
		want string // drain vs River, steady p50 vs River, drain transactions, drain vs limit
	}{
		{"AllMet", baselineResults(6000, 1.5, 12000, 4000, 2, 12), "PASS PASS PASS PASS"},
		{"Edges", baselineResults(4800, 2, 4800/0.35, 4000, 2, 15), "PASS PASS PASS PASS"},
		{"AllMissed", baselineResults(4000, 3, 12000, 4000, 2, 16), "MISS MISS MISS MISS"},
		{"NothingRan", nil, "n/a n/a n/a n/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := baselineTargets(tt.rs)
			if got := statuses(ts); got != tt.want {
				t.Fatalf("statuses %q, want %q; %+v", got, tt.want, ts)
			}
		})
	}

	t.Run("IncompleteIsAMiss", func(t *testing.T) {
		rs := baselineResults(6000, 1.5, 12000, 4000, 2, 12)
		rs[3].River.Runs[0].Result.Complete = false // River's drain timed out
		if got := statuses(baselineTargets(rs)); got != "MISS PASS PASS PASS" {
			t.Fatalf("statuses %q", got)
		}
	})
	t.Run("LimitSkipped", func(t *testing.T) {
		rs := baselineResults(6000, 1.5, 0, 4000, 2, 12)
		rs[1].Limit.Skipped = "no claim_and_fan_out"
		rs[1].Complete = false
		ts := baselineTargets(rs)
		if ts[3].Status != "n/a" || !strings.Contains(ts[3].Display, "skipped") {
			t.Fatalf("%+v", ts[3])
		}
	})
	t.Run("PairsTakeTheMedians", func(t *testing.T) {
		// The relay's steady at 3 ms, then the pairs: relay 1.9 and 2.1, River 2.05 and 5.
		rs := baselineResults(6000, 3, 12000, 4000, 2, 12)
		pair := func(p50 float64) Result {
			r := Result{Scenario: "steady (2)", Complete: true, Delivered: 1000}
			r.Latency = Summary{N: 1000, P50: p50}
			return r
		}
		river := rs[3].River
		river.RelaySteady = []Result{pair(1.9), pair(2.1)}
		for _, p50 := range []float64{2.05, 5} {
			river.Runs = append(river.Runs, riverRun{Mode: "steady", Setting: riverFast, Result: pair(p50)})
		}
		ts := baselineTargets(rs)
		if ts[1].Status != "MISS" || !strings.Contains(ts[1].Display, "2.10 ms vs River 2.05 ms") ||
			!strings.Contains(ts[1].Display, "relay runs 3.00/1.90/2.10, River runs 2.00/2.05/5.00") {
			t.Fatalf("%+v", ts[1])
		}
		river.RelaySteady[1].Latency.P50 = 1.95
		if ts := baselineTargets(rs); ts[1].Status != "PASS" {
			t.Fatalf("%+v", ts[1])
		}
		river.RelaySteady[0].Complete = false
		if ts := baselineTargets(rs); ts[1].Status != "MISS" {
			t.Fatalf("an incomplete run is a miss: %+v", ts[1])
		}
	})
	t.Run("DrainPairsTakeTheMedians", func(t *testing.T) {
		// The relay's drain at 6,000/s, then the pairs: relay 5,000 and 5,500, River 4,000,
		// 5,000 and 4,400 (medians 5,500 and 4,400: 1.25).
		rs := baselineResults(6000, 1.5, 12000, 4000, 2, 12)
		run := func(rate float64) Result {
			r := Result{Scenario: "drain (2)", Complete: true, Delivered: 1000, DeliveriesPerSec: rate}
			return r
		}
		river := rs[3].River
		river.RelayDrain = []Result{run(5000), run(5500)}
		for _, rate := range []float64{5000, 4400} {
			river.Runs = append(river.Runs, riverRun{Mode: "drain", Setting: riverTuned128, Result: run(rate)})
		}
		// A drain with another setting is not compared.
		river.Runs = append(river.Runs, riverRun{Mode: "drain", Setting: riverTuned256, Result: run(100)})
		ts := baselineTargets(rs)
		if ts[0].Status != "PASS" || !strings.Contains(ts[0].Display, "1.25 (5500/s vs River 4400/s; relay runs 6000/5000/5500, River runs 4000/5000/4400)") {
			t.Fatalf("%+v", ts[0])
		}
		river.RelayDrain[1].DeliveriesPerSec = 5200
		if ts := baselineTargets(rs); ts[0].Status != "MISS" {
			t.Fatalf("1.18 is a miss: %+v", ts[0])
		}
		river.RelayDrain[1].DeliveriesPerSec = 5500
		river.RelayDrain[0].Complete = false
		if ts := baselineTargets(rs); ts[0].Status != "MISS" {
			t.Fatalf("an incomplete run is a miss: %+v", ts[0])
		}
	})
	t.Run("RiverFailed", func(t *testing.T) {
		rs := baselineResults(6000, 1.5, 12000, 4000, 2, 12)
		rs[3].River.Runs = rs[3].River.Runs[:0]
		rs[3].Error = "building the River sender: exit status 1"
		if got := statuses(baselineTargets(rs)); got != "n/a n/a PASS PASS" {
			t.Fatalf("statuses %q", got)
		}
	})
}

func TestPrintRiver(t *testing.T) {
	rs := baselineResults(6000, 1.5, 12000, 4000, 2, 12)
	rs[3].River.River = "v0.51.2"
	var b bytes.Buffer
	printRiver(&b, rs)
	out := b.String()
	for _, want := range []string{
		"River v0.51.2", "outbox-relay", "6000", "1.50ms / 6.00ms", "12.0",
		"River tuned128 (128 workers, FetchCooldown 10ms)", "4000",
		"River 1ms (64 workers, FetchCooldown 1ms)", "2.00ms / 8.00ms",
		"drain vs River: 1.50 (6000/s vs River 4000/s; relay runs 6000, River runs 4000)", "PASS",
		"drain vs database-only ceiling: 0.50",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestStatesListsRiverStates(t *testing.T) {
	got := states(map[string]int{"completed": 3, "retryable": 1, "available": 2, "succeeded": 4})
	if want := "succeeded=4 available=2 completed=3 retryable=1"; got != want {
		t.Fatalf("states = %q, want %q", got, want)
	}
}
