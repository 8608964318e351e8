package deliver

import (
	"context"
	"sync/atomic"
	"time"
)

// claimCover is the coupling between the claim loop and the recorder: a record of a batch
// with no failure also claims, in the same call, as many deliveries as the batch freed
// (record_and_lease_due). A kick (new deliveries fanned out) that arrives while such a
// record is being gathered or written is covered by that claim, whose snapshot sees what the
// kicker committed, so the claim loop can leave the kick to it instead of sending a second
// claim.
//
// Kicks are numbered. A record that claims marks, before its statement, the kicks up to the
// count it read as covered (claimed). The claim loop asks whether a kick is covered: yes if
// a claiming record already covered it; while a record is in progress it waits for that
// record (at most recordWait) and asks again; otherwise no, and it claims itself.
type claimCover struct {
	kicks     atomic.Uint64 // kicks so far
	claimed   atomic.Uint64 // kicks covered by a record's claim
	recording atomic.Bool   // results whose record will claim are being gathered or written
	done      chan struct{} // signalled after each record
	// hurry is signalled by each outside kick: a batch being gathered is written at once,
	// rather than after lingering for more results, so the new deliveries wait for one
	// statement at most.
	hurry chan struct{}
}

// recordWait bounds how long a kick waits for the record in progress to claim for it.
const recordWait = 20 * time.Millisecond

func newClaimCover() *claimCover {
	return &claimCover{done: make(chan struct{}, 1), hurry: make(chan struct{}, 1)}
}

// kick counts one kick.
func (c *claimCover) kick() { c.kicks.Add(1) }

// latest is the number of the latest kick.
func (c *claimCover) latest() uint64 { return c.kicks.Load() }

// recordStarted says results whose record will claim are being gathered or written.
func (c *claimCover) recordStarted() { c.recording.Store(true) }

// recordEnded says a record is over (whether or not it claimed).
func (c *claimCover) recordEnded() {
	c.recording.Store(false)
	signal(c.done)
}

// claimedThrough says a record's claim covered every kick up to k; it is called with the
// count read before the record's statement. Kicks only grow, so the covered count does too.
func (c *claimCover) claimedThrough(k uint64) {
	for {
		old := c.claimed.Load()
		if old >= k || c.claimed.CompareAndSwap(old, k) {
			return
		}
	}
}

// covered reports whether kick k is covered by a record's claim, waiting (at most
// recordWait, or until ctx ends) for a record in progress to cover it.
func (c *claimCover) covered(ctx context.Context, k uint64) bool {
	timeout := time.NewTimer(recordWait)
	defer timeout.Stop()
	for c.claimed.Load() < k {
		if !c.recording.Load() {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-timeout.C:
			return false
		case <-c.done:
		}
	}
	return true
}
