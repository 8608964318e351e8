package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The fleet scenario: the steady load of "steady" with 1, 4 and 16 relays on one database,
// each relay count in a fresh database of its own. It measures what every added relay costs
// the database (transactions, connections) and the application beside it (its INSERTs).

// fleetStats is what "fleet" measures: one run per relay count.
type fleetStats struct {
	Runs []fleetRun `json:"runs"`
	// Inserts are the application's INSERT latencies of every run of the smallest and the
	// largest counts, the first pass and the repeats (FleetRepeats).
	Inserts []fleetInsert `json:"inserts"`
	// MaxConnections is the server's max_connections: every relay and the harness share it.
	MaxConnections int `json:"server_max_connections"`
	// Rate is the events/s offered in every run.
	Rate int `json:"events_per_sec"`
}

// fleetInsert is the publisher's INSERT latency in one run.
type fleetInsert struct {
	Relays int     `json:"relays"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// fleetRun is one relay count's figures. The connection counts are client backends in the
// run's database (pg_stat_activity, sampled every connSampleEvery) whose application_name is
// not the harness's: whatever the relays hold, however they name their connections.
type fleetRun struct {
	Relays int `json:"relays"`
	// IdleConns is the most connections at once in the last second of the idle period before
	// publishing; LoadConns the most from the start of publishing to the last receipt.
	IdleConns int `json:"idle_connections"`
	LoadConns int `json:"load_connections"`
	// IdleConnsOneRelay and LoadConnsOneRelay are the most held by any one relay, told apart by
	// the application_name the harness gave each replica (0 when the relays override it).
	IdleConnsOneRelay int `json:"idle_connections_one_relay"`
	LoadConnsOneRelay int `json:"load_connections_one_relay"`
	// Samples is how many pg_stat_activity samples the two windows held.
	IdleSamples int `json:"idle_samples"`
	LoadSamples int `json:"load_samples"`
	// TransactionsPerEvent is Result.Transactions (relay start to exit, the idle period
	// included, the harness's own left out) per published event.
	TransactionsPerEvent float64 `json:"transactions_per_event"`
	Result               Result  `json:"result"`
}

// connSampleEvery is how often the connection sampler reads pg_stat_activity.
const connSampleEvery = 100 * time.Millisecond

// idleConnWindow is the end of the idle period that IdleConns is taken over: the relays have
// started, and whatever they still hold then is what they hold at rest.
const idleConnWindow = time.Second

// runFleet runs the steady load once per relay count. The first count uses the env the
// harness made; every further count gets a fresh env (database, receiver, proxy) named
// fleet<count>, closed before the next starts.
func runFleet(ctx context.Context, e *env, r *Result) error {
	s := e.h.size
	r.Description = fmt.Sprintf("%d events/s for %s after %s idle, 1 subscription, with %s relays (a fresh database each)",
		s.FleetRate, s.FleetFor, s.FleetIdle, joinInts(s.FleetRelays, ", "))
	r.Subscriptions, r.Complete = 1, true
	fs := &fleetStats{Rate: s.FleetRate}
	r.Fleet = fs
	var maxConns string
	if err := e.h.admin.QueryRowContext(ctx, "SHOW max_connections").Scan(&maxConns); err != nil {
		return fmt.Errorf("reading max_connections: %w", err)
	}
	fs.MaxConnections, _ = strconv.Atoi(maxConns)
	counts := slices.Clone(s.FleetRelays)
	if len(counts) > 1 {
		least, most := slices.Min(counts), slices.Max(counts)
		for range s.FleetRepeats {
			counts = append(counts, most, least)
		}
	}
	for i, n := range counts {
		run := e
		if i > 0 {
			var err error
			progress("%s: setting up for %d relays", e.name, n)
			if run, err = e.h.newEnv(ctx, fmt.Sprintf("%s%d_%d", e.name, n, i)); err != nil {
				return fmt.Errorf("%d relays: %w", n, err)
			}
		}
		idle := s.FleetIdle
		repeat := i >= len(s.FleetRelays)
		if repeat {
			idle = min(idle, 3*time.Second) // only the INSERT latency is taken from a repeat
		}
		fr, err := fleetOnce(ctx, run, n, idle)
		run.close() // e is closed again by the harness: harmless
		res := &fr.Result
		res.derive()
		if err != nil {
			return fmt.Errorf("%d relays: %w", n, err)
		}
		if p := res.Publish; p != nil && (n == slices.Min(s.FleetRelays) || n == slices.Max(s.FleetRelays)) {
			fs.Inserts = append(fs.Inserts, fleetInsert{Relays: n, P50Ms: p.Insert.P50, P99Ms: p.Insert.P99})
		}
		if repeat {
			r.Complete = r.Complete && res.Complete
			continue
		}
		fs.Runs = append(fs.Runs, fr)
		r.tally(*res)
		r.RelayPeakRSSMiB = max(r.RelayPeakRSSMiB, res.RelayPeakRSSMiB)
	}
	return nil
}

// fleetOnce starts n relays, lets them idle for FleetIdle, then publishes FleetRate events/s
// for FleetFor and waits for every delivery, sampling the connections throughout.
func fleetOnce(ctx context.Context, e *env, n int, idleFor time.Duration) (fleetRun, error) {
	const path = "/hook/fleet"
	s := e.h.size
	fr := fleetRun{Relays: n}
	r := &fr.Result
	r.Scenario = fmt.Sprintf("fleet/%d", n)
	r.Description = fmt.Sprintf("%d relay(s): %d events/s for %s after %s idle, 1 subscription", n, s.FleetRate, s.FleetFor, idleFor)
	r.Subscriptions = 1
	if err := e.subscribe(ctx, "", false, path); err != nil {
		return fr, err
	}
	e.replicas = n
	progress("%s: starting %d relay(s)", e.name, n)
	if err := e.startRelays(ctx); err != nil {
		return fr, err
	}
	sampler := e.sampleConnections(ctx)
	defer sampler.stop()
	progress("%s: %d relay(s) idling for %s", e.name, n, idleFor)
	if err := sleep(ctx, idleFor); err != nil {
		return fr, err
	}
	idleEnd := time.Now()
	progress("%s: publishing %d events/s for %s", e.name, s.FleetRate, s.FleetFor)
	before := e.probe()
	pub, err := e.publishSteady(ctx, s.FleetRate, s.FleetFor)
	if err != nil {
		return fr, err
	}
	r.Publish = &pub
	r.Events, r.Expected = pub.Events, pub.Events
	complete, err := e.waitDelivered(ctx, want{prefix: path, paths: 1, each: pub.Events})
	if err != nil {
		return fr, err
	}
	after := e.probe()
	samples, err := sampler.stop()
	if err != nil {
		return fr, err
	}
	idle := peakConns(samples, idleEnd.Add(-idleConnWindow), idleEnd)
	load := peakConns(samples, before.at, after.at)
	fr.IdleConns, fr.IdleConnsOneRelay, fr.IdleSamples = idle.total, idle.oneRelay, idle.n
	fr.LoadConns, fr.LoadConnsOneRelay, fr.LoadSamples = load.total, load.oneRelay, load.n
	r.Complete = complete
	e.measure(r, before, after)

	got, _, err := e.receivedOn(ctx, r, path)
	if err != nil {
		return fr, err
	}
	r.RateWindowS = time.Unix(0, got.last).Sub(time.Unix(0, pub.FirstCommitNs)).Seconds()
	if r.RateWindowS > 0 {
		r.DeliveriesPerSec = float64(r.Delivered) / r.RateWindowS
	}
	if !complete {
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s: %d of %d delivered", e.h.opts.timeout, r.Delivered, r.Expected))
	}
	if pub.AchievedRate < 0.95*float64(s.FleetRate) {
		r.Notes = append(r.Notes, fmt.Sprintf("the publisher managed %.0f events/s of %d: its %d connections could not keep up (each INSERT waits for the previous one on its connection)",
			pub.AchievedRate, s.FleetRate, pub.Publishers))
	}
	if idle.n == 0 || load.n == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("pg_stat_activity samples: %d at idle, %d under load (none: the connection figures say nothing)", idle.n, load.n))
	}
	if idle.untagged > 0 || load.untagged > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("up to %d backends (idle) and %d (load) did not carry a relay's application_name; they are counted, but not per relay", idle.untagged, load.untagged))
	}
	if err := e.finish(ctx, r); err != nil {
		return fr, err
	}
	if pub.Events > 0 {
		fr.TransactionsPerEvent = float64(r.Transactions) / float64(pub.Events)
	}
	return fr, nil
}

// connSample is one reading of pg_stat_activity for a scenario's database.
type connSample struct {
	at       time.Time
	total    int // client backends that are not the harness's
	oneRelay int // the most carrying any one relay's application_name
	untagged int // neither the harness's nor a relay's application_name
}

// connSampler reads pg_stat_activity every connSampleEvery until stopped.
type connSampler struct {
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
	samples []connSample
	err     error
}

// sampleConnections starts sampling the connections to e's database. It reads
// pg_stat_activity through the harness's maintenance connection, which is in another
// database and so is never counted, nor are its transactions.
func (e *env) sampleConnections(ctx context.Context) *connSampler {
	ctx, cancel := context.WithCancel(ctx)
	cs := &connSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(cs.done)
		tick := time.NewTicker(connSampleEvery)
		defer tick.Stop()
		for {
			s, err := e.h.connections(ctx, e.dbName)
			if err != nil {
				if ctx.Err() == nil {
					cs.err = fmt.Errorf("sampling pg_stat_activity: %w", err)
				}
				return
			}
			cs.samples = append(cs.samples, s)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return cs
}

// stop ends the sampling and returns the samples, with the error that ended it early if
// one did. Safe to call twice.
func (cs *connSampler) stop() ([]connSample, error) {
	cs.once.Do(func() {
		cs.cancel()
		<-cs.done
	})
	return cs.samples, cs.err
}

// connections reads who is connected to db now.
func (h *harness) connections(ctx context.Context, db string) (connSample, error) {
	s := connSample{at: time.Now()}
	rows, err := h.admin.QueryContext(ctx, connectionsByApp, db)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var app string
		var n int
		if err := rows.Scan(&app, &n); err != nil {
			return s, err
		}
		switch {
		case app == harnessAppName:
			continue
		case strings.HasPrefix(app, relayAppPrefix):
			s.oneRelay = max(s.oneRelay, n)
		default:
			s.untagged += n
		}
		s.total += n
	}
	return s, rows.Err()
}

// connPeak is the most connections at once over a window of samples.
type connPeak struct {
	total, oneRelay, untagged int
	n                         int // samples in the window
}

// peakConns returns the peaks over the samples taken from from to to.
func peakConns(samples []connSample, from, to time.Time) connPeak {
	var p connPeak
	for _, s := range samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		p.n++
		p.total = max(p.total, s.total)
		p.oneRelay = max(p.oneRelay, s.oneRelay)
		p.untagged = max(p.untagged, s.untagged)
	}
	return p
}

func joinInts(ns []int, sep string) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, sep)
}
