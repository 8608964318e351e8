package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/referralloop/outbox-relay/outbox"
)

// The fairness scenarios: "wide" (one event to thousands of subscriptions) and "tenants"
// (one tenant's backlog beside another tenant's events). "many" is a backlog like "fanout"
// and lives in scenarios.go.

// publisher writes single events through outbox.Publish from one connection of its own,
// while the relays run, and counts its transactions so that they are not the relays'.
type publisher struct {
	e  *env
	db *sql.DB
	tx int64
}

// newPublisher opens the publisher's connection before the clock starts. Call it after
// startRelays, so its transactions fall between the two statistics snapshots.
func (e *env) newPublisher(ctx context.Context) (*publisher, error) {
	db, err := sql.Open("postgres", e.dbURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if err := warmPool(ctx, db, 1); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting the publisher: %w", err)
	}
	// The connection's start-up and the warm-up SELECT (see publishSteady).
	return &publisher{e: e, db: db, tx: 2}, nil
}

// publish commits one signup.created event whose payload carries seq and the commit stamp,
// the wall clock taken just before its autocommit INSERT was sent; it returns the stamp.
func (p *publisher) publish(ctx context.Context, seq int, tenant string) (int64, error) {
	commitNs := time.Now().UnixNano()
	err := outbox.Publish(ctx, p.db, outbox.Event{Type: "signup.created", TenantID: tenant, Payload: json.RawMessage(eventPayload(seq, commitNs))})
	p.tx += 2 // lib/pq: Parse/Sync, then Bind/Execute/Sync
	return commitNs, err
}

// close closes the connection and hands its transactions to the harness's count; it must
// run before finish reads the statistics. Safe to call twice.
func (p *publisher) close() {
	if p.db == nil {
		return
	}
	p.db.Close()
	p.db = nil
	p.e.harnessTx += p.tx
}

// wideRest is the pause between two of wide's events, so that each finds the relay idle
// again: the previous event's results recorded, its lanes empty.
const wideRest = 500 * time.Millisecond

// wideStats is what "wide" measures for each event: from its commit to the first and to the
// last of its receipts.
type wideStats struct {
	Events []wideEvent `json:"events"`
	// WorstMs is the largest commit-to-last-receipt, the one the target checks; MedianMs is
	// the median over the events.
	WorstMs  float64 `json:"worst_commit_to_last_ms"`
	MedianMs float64 `json:"median_commit_to_last_ms"`
}

type wideEvent struct {
	Seq      int     `json:"seq"`
	Received int     `json:"received"` // subscriptions that received it
	FirstMs  float64 `json:"commit_to_first_ms"`
	LastMs   float64 `json:"commit_to_last_ms"`
}

// runWide lets the relay idle with many subscriptions, then publishes one event that matches
// all of them, waits until every subscription has it, rests, and does it again.
func runWide(ctx context.Context, e *env, r *Result) error {
	n, subs := e.h.size.WideEvents, e.h.size.WideSubs
	r.Description = fmt.Sprintf("relay idle with %d subscriptions; %d events matching all of them, each published once the previous one has arrived everywhere", subs, n)
	r.Events, r.Subscriptions, r.Expected = n, subs, n*subs
	const group = "/hook/w/"
	if err := e.subscribe(ctx, "", false, groupPaths(group, subs)...); err != nil {
		return err
	}
	progress("%s: starting %d relay(s)", e.name, e.replicas)
	if err := e.startRelays(ctx); err != nil {
		return err
	}
	// Start-up (migration check, first claims, connection pool) is not idling, as in runIdle.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	pub, err := e.newPublisher(ctx)
	if err != nil {
		return err
	}
	defer pub.close()
	progress("%s: publishing %d events to %d subscriptions, one at a time", e.name, n, subs)
	before := e.probe()
	complete := true
	for seq := 1; seq <= n && complete; seq++ {
		if seq > 1 {
			if err := sleep(ctx, wideRest); err != nil {
				return err
			}
		}
		if _, err := pub.publish(ctx, seq, ""); err != nil {
			return err
		}
		if complete, err = e.waitDelivered(ctx, want{prefix: group, paths: subs, each: seq}); err != nil {
			return err
		}
	}
	after := e.probe()
	pub.close()
	r.Complete = complete
	e.measure(r, before, after)

	byPath, err := e.recv.receipts(ctx, group)
	if err != nil {
		return err
	}
	events := map[int64]*wideEvent{}
	var lat []float64
	for _, rs := range byPath {
		got := analyse(rs)
		r.Delivered += got.distinct
		r.Duplicates += got.duplicates
		lat = append(lat, got.latencies...)
		seen := make(map[string]bool, len(rs))
		for _, rc := range rs {
			if seen[rc.EventID] {
				continue
			}
			seen[rc.EventID] = true
			ms := float64(rc.ArrivalNs-rc.CommitNs) / 1e6
			ev := events[rc.Seq]
			if ev == nil {
				ev = &wideEvent{Seq: int(rc.Seq), FirstMs: ms, LastMs: ms}
				events[rc.Seq] = ev
			}
			ev.Received++
			ev.FirstMs, ev.LastMs = min(ev.FirstMs, ms), max(ev.LastMs, ms)
		}
	}
	r.Latency = Summarize(lat)
	w := &wideStats{}
	var spans []float64
	for seq := range int64(n) {
		if ev := events[seq+1]; ev != nil {
			w.Events = append(w.Events, *ev)
			spans = append(spans, ev.LastMs)
		}
	}
	if len(spans) > 0 {
		sorted := slices.Sorted(slices.Values(spans))
		w.WorstMs, w.MedianMs = sorted[len(sorted)-1], Percentile(sorted, 50)
		var sum float64
		for _, ms := range spans {
			sum += ms
		}
		// The rate while the relay had work: deliveries over the summed commit-to-last
		// receipt times, the rests and the idle start left out.
		r.RateWindowS = sum / 1000
		r.DeliveriesPerSec = float64(r.Delivered) / r.RateWindowS
	}
	r.Wide = w
	if !complete {
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s: %d of %d delivered", e.h.opts.timeout, r.Delivered, r.Expected))
	}
	return e.finish(ctx, r)
}

// tenantStats is what "tenants" measures: tenant A's backlog, and tenant B's events published
// while the relay works through it.
type tenantStats struct {
	ADelivered        int     `json:"a_delivered"`
	ADeliveriesPerSec float64 `json:"a_deliveries_per_sec"` // ready to A's last receipt
	AFinishedS        float64 `json:"a_ready_to_last_receipt_s"`
	BEvents           int     `json:"b_events"`
	// BDuringA counts B's events committed before A's last receipt, that is while A's
	// backlog was still being sent.
	BDuringA int `json:"b_events_during_a_backlog"`
	// BLatency is commit to receipt of B's events; BLatenciesMs lists them in publish order.
	BLatency     Summary   `json:"b_latency"`
	BLatenciesMs []float64 `json:"b_latencies_ms"`
}

// runTenants puts tenant A's backlog of many subscriptions times a few events in the outbox,
// starts the relays, and once they are busy with it publishes an event of tenant B (one
// subscription) every TenantBEvery until A's backlog has arrived. The target is B's worst
// latency: one tenant's backlog must not hold another tenant's events back.
func runTenants(ctx context.Context, e *env, r *Result) error {
	s := e.h.size
	subsA, eventsA := s.TenantASubs, s.TenantAEvents
	r.Description = fmt.Sprintf("tenant A: %d subscriptions, %d events (%d deliveries) in the outbox; tenant B: 1 subscription, an event every %s from A's %dth delivery until A's last",
		subsA, eventsA, subsA*eventsA, s.TenantBEvery, s.TenantBAfter)
	const groupA, pathB = "/hook/a/", "/hook/b"
	r.Subscriptions = subsA + 1
	if err := e.subscribe(ctx, "A", false, groupPaths(groupA, subsA)...); err != nil {
		return err
	}
	if err := e.subscribe(ctx, "B", false, pathB); err != nil {
		return err
	}
	progress("%s: inserting %d events of tenant A", e.name, eventsA)
	if err := e.insertBacklog(ctx, eventsA, 0, "A"); err != nil {
		return err
	}
	progress("%s: starting %d relay(s)", e.name, e.replicas)
	if err := e.startRelays(ctx); err != nil {
		return err
	}
	before := e.probe()
	pub, err := e.newPublisher(ctx)
	if err != nil {
		return err
	}
	defer pub.close()

	busy, err := e.waitUntil(ctx, func(ctx context.Context) (bool, error) {
		t, err := e.recv.counts(ctx, groupA)
		return t.Distinct >= s.TenantBAfter, err
	})
	if err != nil {
		return err
	}
	var completeA, completeB bool
	var published int
	if busy {
		progress("%s: tenant A's backlog under way; publishing an event of tenant B every %s", e.name, s.TenantBEvery)
		stop := make(chan struct{})
		type outcome struct {
			n   int
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			tick := time.NewTicker(s.TenantBEvery)
			defer tick.Stop()
			for n := 1; ; n++ {
				if _, err := pub.publish(ctx, n, "B"); err != nil {
					done <- outcome{n - 1, err}
					return
				}
				select {
				case <-stop:
					done <- outcome{n, nil}
					return
				case <-ctx.Done():
					done <- outcome{n, ctx.Err()}
					return
				case <-tick.C:
				}
			}
		}()
		completeA, err = e.waitDelivered(ctx, want{prefix: groupA, paths: subsA, each: eventsA})
		close(stop)
		o := <-done
		if err == nil {
			err = o.err
		}
		if err != nil {
			return err
		}
		published = o.n
		pub.close()
		progress("%s: tenant A's backlog done; waiting for tenant B's %d events", e.name, published)
		if completeB, err = e.waitDelivered(ctx, want{prefix: pathB, paths: 1, each: published}); err != nil {
			return err
		}
	}
	after := e.probe()
	pub.close()
	r.Events, r.Expected = eventsA+published, subsA*eventsA+published
	r.Complete = busy && completeA && completeB
	e.measure(r, before, after)

	t := &tenantStats{BEvents: published}
	byA, err := e.recv.receipts(ctx, groupA)
	if err != nil {
		return err
	}
	var lastA int64
	for _, rs := range byA {
		got := analyse(rs)
		t.ADelivered += got.distinct
		r.Duplicates += got.duplicates
		lastA = max(lastA, got.last)
	}
	byB, err := e.recv.receipts(ctx, pathB)
	if err != nil {
		return err
	}
	gotB := analyse(byB[pathB])
	r.Duplicates += gotB.duplicates
	r.Delivered = t.ADelivered + gotB.distinct
	t.BLatency = Summarize(gotB.latencies)
	for _, rc := range firstBySeq(byB[pathB]) {
		t.BLatenciesMs = append(t.BLatenciesMs, float64(rc.ArrivalNs-rc.CommitNs)/1e6)
		if rc.CommitNs < lastA {
			t.BDuringA++
		}
	}
	if lastA > 0 {
		t.AFinishedS = time.Unix(0, lastA).Sub(e.readyAt).Seconds()
		t.ADeliveriesPerSec = float64(t.ADelivered) / t.AFinishedS
		r.StartToLast = time.Unix(0, lastA).Sub(e.startedAt).Seconds()
	}
	r.RateWindowS, r.DeliveriesPerSec = t.AFinishedS, t.ADeliveriesPerSec
	r.Latency = t.BLatency
	r.Tenants = t

	switch {
	case !busy:
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s before %d of tenant A's deliveries had arrived: tenant B published nothing", e.h.opts.timeout, s.TenantBAfter))
	case !completeA || !completeB:
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s: %d of %d delivered", e.h.opts.timeout, r.Delivered, r.Expected))
	case t.BDuringA == 0:
		r.Notes = append(r.Notes, "none of tenant B's events was committed before tenant A's last receipt: B's latency does not measure fairness")
	}
	return e.finish(ctx, r)
}

// firstBySeq returns each event's first receipt, ordered by the event's seq (publish order).
func firstBySeq(rs []receipt) []receipt {
	first := map[string]receipt{}
	for _, rc := range rs {
		if _, ok := first[rc.EventID]; !ok {
			first[rc.EventID] = rc
		}
	}
	return slices.SortedFunc(maps.Values(first), func(a, b receipt) int { return cmp.Compare(a.Seq, b.Seq) })
}
