// Package poll makes the tickers of the relay's periodic database work: the safety-net polls
// of the outbox and of due retries, and the active-relay heartbeat.
//
// Each ticker starts at a random phase of its period. Loops with the same period started
// together would otherwise fire in the same millisecond, every time, and each would hold a
// database connection of its own while they overlap; spread over the period, one pooled
// connection serves them all at idle and the others are closed once they have sat unused.
package poll

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Ticker delivers ticks on C every period, the first at a random point within the first
// period. Like time.Ticker, it drops ticks a slow receiver misses.
type Ticker struct {
	C <-chan time.Time

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// NewTicker returns a started Ticker; period must be positive.
func NewTicker(period time.Duration) *Ticker {
	c := make(chan time.Time, 1)
	t := &Ticker{C: c}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.timer = time.AfterFunc(rand.N(period)+1, func() {
		select {
		case c <- time.Now():
		default:
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.timer.Reset(period)
		}
	})
	return t
}

// Stop ends the ticks; C is not closed.
func (t *Ticker) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.timer.Stop()
}
