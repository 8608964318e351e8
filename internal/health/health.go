// Package health keeps what readiness checks read about an operation a component repeats in
// a loop (a claim, a fan-out, a record, a lease check): whether it keeps failing.
//
// Two rules make an operation "in trouble". It has failed without a success for longer than
// the caller's limit: the database is down, or every statement is refused. Or, over the last
// ten seconds, it failed at least three times and at least as often as it succeeded, the
// last time within the limit: a pool
// where every other connection is broken, or statements that fail on some backends behind a
// connection pooler, let an occasional success through while most of the work stalls, and a
// readiness that only looked at the last attempt would call that healthy.
package health

import (
	"fmt"
	"sync"
	"time"
)

// FailingLimit is how long a claim, a fan-out or a lease check may keep failing before
// readiness reports it: long enough to ride out a failover of the database or a blip of the
// network, short enough that an orchestrator learns of real trouble within seconds.
const FailingLimit = 3 * time.Second

// window is how far back the failure ratio looks, in one-second buckets.
const window = 10

// minFailures is how many failures within the window the ratio rule needs, so that one
// error on a quiet relay does not turn it unready.
const minFailures = 3

// Tracker records the outcomes of one repeated operation. The zero value is ready to use
// and reports no trouble. Safe for concurrent use.
type Tracker struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu           sync.Mutex
	failingSince time.Time // first failure since the last success; zero after a success
	lastFailure  time.Time
	lastErr      string
	buckets      [window]bucket
}

type bucket struct {
	second   int64
	ok, fail int
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// OK records a success.
func (t *Tracker) OK() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failingSince = time.Time{}
	t.bucket(now).ok++
}

// Fail records a failure and what it was.
func (t *Tracker) Fail(err error) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failingSince.IsZero() {
		t.failingSince = now
	}
	t.lastFailure = now
	if err != nil {
		t.lastErr = err.Error()
	}
	t.bucket(now).fail++
}

// Failing reports whether the last outcome was a failure.
func (t *Tracker) Failing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.failingSince.IsZero()
}

// bucket answers the bucket of now's second, emptied if it last held an older second.
// Call with mu held.
func (t *Tracker) bucket(now time.Time) *bucket {
	sec := now.Unix()
	b := &t.buckets[sec%window]
	if b.second != sec {
		*b = bucket{second: sec}
	}
	return b
}

// Trouble says why the operation (named by what, e.g. "claiming deliveries") is in trouble,
// or "" when it is not: failing without a success for longer than limit, or failing at
// least as often as succeeding over the last ten seconds and lately (within limit): once
// it has stopped failing for limit, it is out of trouble.
func (t *Tracker) Trouble(what string, limit time.Duration) string {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.failingSince.IsZero() {
		if d := now.Sub(t.failingSince); d > limit {
			return fmt.Sprintf("%s has failed for %s: %s", what, d.Round(time.Second), t.errText())
		}
	}
	if now.Sub(t.lastFailure) > limit {
		return ""
	}
	var ok, fail int
	oldest := now.Unix() - window + 1
	for _, b := range t.buckets {
		if b.second >= oldest {
			ok += b.ok
			fail += b.fail
		}
	}
	if fail >= minFailures && fail >= ok {
		return fmt.Sprintf("%s failed %d times and succeeded %d times in the last %ds: %s", what, fail, ok, window, t.errText())
	}
	return ""
}

func (t *Tracker) errText() string {
	if t.lastErr == "" {
		return "unknown error"
	}
	return t.lastErr
}
