package main

import (
	"testing"
	"time"
)

func TestPeakConns(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	samples := []connSample{
		{at: at(0), total: 9, oneRelay: 9},
		{at: at(100), total: 3, oneRelay: 2, untagged: 1},
		{at: at(200), total: 4, oneRelay: 1},
		{at: at(300), total: 7, oneRelay: 3},
	}
	tests := []struct {
		name     string
		from, to time.Time
		want     connPeak
	}{
		{"EdgesIncluded", at(100), at(200), connPeak{total: 4, oneRelay: 2, untagged: 1, n: 2}},
		{"Everything", at(0), at(300), connPeak{total: 9, oneRelay: 9, untagged: 1, n: 4}},
		{"NoSample", at(310), at(400), connPeak{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := peakConns(samples, tt.from, tt.to); got != tt.want {
				t.Fatalf("peakConns = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFleetTargets(t *testing.T) {
	run := func(relays, idle, load int, xactPerEvent, insertP50, insertP99 float64) fleetRun {
		return fleetRun{
			Relays: relays, IdleConns: idle, LoadConns: load, TransactionsPerEvent: xactPerEvent,
			Result: Result{Complete: true, Publish: &publishStats{Insert: Summary{N: 100, P50: insertP50, P99: insertP99}}},
		}
	}
	status := func(ts []target) []string {
		out := make([]string, len(ts))
		for i, tg := range ts {
			out[i] = tg.Status
		}
		return out
	}
	tests := []struct {
		name string
		runs []fleetRun
		want []string // transactions, idle, load, INSERT
	}{
		{"QuietFleetPasses", []fleetRun{run(1, 1, 2, 2.0, 1, 10), run(4, 4, 8, 2.2, 1, 11), run(16, 16, 32, 3.0, 1.2, 12.5)},
			[]string{"PASS", "PASS", "PASS", "PASS"}},
		{"EachAddedRelayCosts", []fleetRun{run(1, 3, 4, 2.4, 2, 15), run(4, 12, 14, 6.4, 4, 28), run(16, 48, 50, 23, 13, 70)},
			[]string{"MISS", "MISS", "MISS", "MISS"}},
		// The idle limit (a standby 1, the active relay 2) holds for every count, not only the
		// largest; the load limit for every fleet, and not for one relay alone.
		{"OneCountOverTheLimit", []fleetRun{run(1, 3, 5, 2.0, 1, 10), run(16, 17, 32, 2.0, 1, 10)},
			[]string{"PASS", "MISS", "PASS", "PASS"}},
		{"LoadLimitOnFleetsOnly", []fleetRun{run(1, 2, 5, 2.0, 1, 10), run(4, 5, 9, 2.0, 1, 10), run(16, 17, 32, 2.0, 1, 10)},
			[]string{"PASS", "PASS", "MISS", "PASS"}},
		{"OneCountIsNotAComparison", []fleetRun{run(1, 1, 2, 2.0, 1, 10)},
			[]string{"n/a", "n/a", "n/a", "n/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := status(fleetTargets(&Result{Scenario: "fleet", Complete: true, Fleet: &fleetStats{Runs: tt.runs}}))
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("statuses = %v, want %v", got, tt.want)
				}
			}
		})
	}
	// The INSERT latency is compared by the medians over every run of the two counts: one
	// slow first run of 16 relays beside two quick repeats passes; slow repeats do not.
	t.Run("InsertMediansOverRepeats", func(t *testing.T) {
		runs := []fleetRun{run(1, 1, 2, 2.0, 1, 10), run(16, 16, 32, 2.0, 1, 20)}
		inserts := []fleetInsert{{1, 1, 10}, {16, 1, 20}, {16, 1, 11}, {1, 1, 10.5}, {16, 1, 12}, {1, 1, 9}}
		got := fleetTargets(&Result{Scenario: "fleet", Complete: true, Fleet: &fleetStats{Runs: runs, Inserts: inserts}})[3]
		if got.Status != "PASS" || got.Value != 12.0/10 {
			t.Fatalf("INSERT target = %s %.3f, want PASS 1.2 (median 12 vs 10)", got.Status, got.Value)
		}
		inserts[2].P99Ms, inserts[4].P99Ms = 19, 18
		got = fleetTargets(&Result{Scenario: "fleet", Complete: true, Fleet: &fleetStats{Runs: runs, Inserts: inserts}})[3]
		if got.Status != "MISS" {
			t.Fatalf("INSERT target = %s %.3f, want MISS (median 19 vs 10)", got.Status, got.Value)
		}
	})
	t.Run("IncompleteRunMisses", func(t *testing.T) {
		runs := []fleetRun{run(1, 1, 2, 2.0, 1, 10), run(16, 16, 32, 2.0, 1, 10)}
		runs[1].Result.Complete = false
		got := status(fleetTargets(&Result{Scenario: "fleet", Fleet: &fleetStats{Runs: runs}}))
		for _, s := range got {
			if s != "MISS" {
				t.Fatalf("statuses = %v, want every one MISS", got)
			}
		}
	})
}
