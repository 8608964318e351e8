package deliver

import (
	"slices"
	"sync"
	"time"
)

// lanes holds what this replica has claimed and not yet sent, one lane per subscription,
// and hands it to the workers so that no subscription ever has more than its cap of
// requests on the wire. Lanes take turns (round robin), so a subscription with a deep
// backlog does not delay the first delivery of another.
//
// Claims run ahead of sends: a fast subscription may hold several waves of leases while
// only cap requests are in flight, so the workers never wait for the database between
// waves. Only a lane known to be fast may do so: its recent requests took little time on
// average and none of its claims expired in the queue. Any other (new, slow, hanging) gets
// no more leases than it may send at once, so its queue cannot hold leases that run out
// while waiting, nor take the room of other subscriptions.
type lanes struct {
	mu   sync.Mutex
	cond *sync.Cond

	cap       int           // requests in flight per subscription
	slowAfter time.Duration // a lane whose requests take longer on average is not fast
	slowFor   time.Duration // how long a lane whose claims expired stays slow; also how long an idle lane is remembered

	byID   map[string]*lane
	turns  []*lane // lanes with queued jobs and a free slot, in turn order
	held   int     // jobs claimed and not yet recorded or released: queued, on the wire, or awaiting their record
	queued int     // jobs waiting for a worker
	closed bool
}

// quickRequest: a request to a lane whose requests took at most this long on average (or
// that has no average yet) is expected to end within a record batch's linger, so the
// recorder waits for it; a slower one is not waited for.
const quickRequest = 10 * time.Millisecond

// lane is one subscription's share of the claimed jobs.
type lane struct {
	id       string
	queue    []*job
	inFlight int
	held     int           // claimed and not yet recorded or released, as ls.held
	waiting  bool          // in turns
	avg      time.Duration // moving average of request durations; zero until the first
	slowTill time.Time     // claims expired in the queue: not fast until then
	lastUsed time.Time
}

func newLanes(cap int, slowAfter, slowFor time.Duration) *lanes {
	l := &lanes{cap: cap, slowAfter: slowAfter, slowFor: slowFor, byID: map[string]*lane{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// add queues newly claimed jobs. Once closed it queues nothing and returns the jobs, which
// the caller must release.
func (ls *lanes) add(js []*job) (refused []*job) {
	if len(js) == 0 {
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return js
	}
	for _, j := range js {
		ln := ls.byID[j.subscriptionID]
		if ln == nil {
			ln = &lane{id: j.subscriptionID, lastUsed: time.Now()}
			ls.byID[ln.id] = ln
		}
		ln.queue = append(ln.queue, j)
		ln.held++
		ls.held++
		ls.queued++
		ls.offer(ln)
	}
	ls.cond.Broadcast()
	return nil
}

// offer puts ln in turn if it has a job and a free slot.
func (ls *lanes) offer(ln *lane) {
	if !ln.waiting && len(ln.queue) > 0 && ln.inFlight < ls.cap {
		ln.waiting = true
		ls.turns = append(ls.turns, ln)
	}
}

// next blocks until a job may be sent and returns it, counted as in flight; nil once closed.
func (ls *lanes) next() *job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for len(ls.turns) == 0 && !ls.closed {
		ls.cond.Wait()
	}
	if ls.closed {
		return nil
	}
	ln := ls.turns[0]
	ls.turns[0] = nil
	ls.turns = ls.turns[1:]
	ln.waiting = false
	j := ln.queue[0]
	ln.queue[0] = nil
	ln.queue = ln.queue[1:]
	ln.inFlight++
	ls.queued--
	ls.offer(ln) // to the back: the other lanes go first
	j.quick = ln.avg <= quickRequest
	return j
}

// finished ends a job's time on the wire: its slot is free. took is how long the request
// took; expired says the job waited so long that its lease could run out, and was not sent.
func (ls *lanes) finished(j *job, took time.Duration, expired bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ln := ls.byID[j.subscriptionID]
	if ln == nil {
		return
	}
	ln.inFlight--
	ln.lastUsed = time.Now()
	switch {
	case expired:
		ln.slowTill = ln.lastUsed.Add(ls.slowFor)
	case ln.avg == 0:
		ln.avg = max(took, 1)
	default:
		ln.avg = (4*ln.avg + took) / 5
	}
	ls.offer(ln)
	if len(ls.turns) > 0 {
		ls.cond.Signal()
	}
}

// expire takes out of the queues the jobs that may no longer be sent (sendBy passed) and
// marks their lanes slow; the caller releases them. Workers skip such jobs too, but a lane
// whose slots are all held by hanging requests hands out nothing, so its queue is swept here.
func (ls *lanes) expire(now time.Time) []*job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []*job
	for _, ln := range ls.byID {
		keep := ln.queue[:0]
		for _, j := range ln.queue {
			if now.After(j.sendBy) {
				out = append(out, j)
			} else {
				keep = append(keep, j)
			}
		}
		if len(keep) < len(ln.queue) {
			clear(ln.queue[len(keep):])
			ln.queue = keep
			ln.slowTill = now.Add(ls.slowFor)
		}
	}
	ls.queued -= len(out)
	if len(out) > 0 {
		// Lanes left with empty queues must not stay in turn.
		turns := ls.turns[:0]
		for _, ln := range ls.turns {
			if len(ln.queue) > 0 {
				turns = append(turns, ln)
			} else {
				ln.waiting = false
			}
		}
		clear(ls.turns[len(turns):])
		ls.turns = turns
	}
	return out
}

// ended says these jobs' leases ended (recorded or released): their room may be claimed
// again.
func (ls *lanes) ended(js []*job) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.held -= len(js)
	for _, j := range js {
		if ln := ls.byID[j.subscriptionID]; ln != nil && ln.held > 0 {
			ln.held--
		}
	}
}

// atCap reports whether the subscription holds as many leases as it may have requests in
// flight: a claim may have left its due deliveries behind for the cap, so the end of one of
// its leases is worth a claim at once.
func (ls *lanes) atCap(subscriptionID string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ln := ls.byID[subscriptionID]
	return ln != nil && ln.held >= ls.cap
}

// room is how many more jobs may be claimed while at most limit are held.
func (ls *lanes) room(limit int) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return 0
	}
	return max(0, limit-ls.held)
}

// counts answers the jobs waiting for a worker and the jobs held.
func (ls *lanes) counts() (queued, held int) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.queued, ls.held
}

// fast lists the subscriptions whose lanes may lease ahead: requests that took less than
// slowAfter on average, and no claim expired within slowFor. Of those, it answers at most
// limit, the busiest first (most jobs held), since a lane with nothing in hand gains
// nothing from leases ahead until its next claim. It forgets lanes idle for slowFor, so
// the list holds only subscriptions with recent traffic.
func (ls *lanes) fast(limit int) []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	var fast []*lane
	for id, ln := range ls.byID {
		idle := len(ln.queue) == 0 && ln.inFlight == 0 && ln.held == 0
		switch {
		case idle && now.Sub(ln.lastUsed) > ls.slowFor:
			delete(ls.byID, id)
		case ln.avg > 0 && ln.avg <= ls.slowAfter && now.After(ln.slowTill):
			fast = append(fast, ln)
		}
	}
	if len(fast) > limit {
		slices.SortFunc(fast, func(a, b *lane) int {
			return (len(b.queue) + b.inFlight) - (len(a.queue) + a.inFlight)
		})
		fast = fast[:limit]
	}
	ids := make([]string, len(fast))
	for i, ln := range fast {
		ids[i] = ln.id
	}
	return ids
}

// close stops handing out jobs, wakes every waiting worker, and returns the jobs still
// queued, which the caller must release.
func (ls *lanes) close() []*job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.closed = true
	var left []*job
	for _, ln := range ls.byID {
		left = append(left, ln.queue...)
		ln.queue = nil
	}
	ls.turns = nil
	ls.queued = 0
	ls.cond.Broadcast()
	return left
}
