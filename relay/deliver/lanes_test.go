package deliver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func jobsFor(sub string, n int, sendBy time.Time) []*job {
	js := make([]*job, n)
	for i := range js {
		js[i] = &job{deliveryID: int64(i), subscriptionID: sub, sendBy: sendBy}
	}
	return js
}

func TestLanesTakeTurnsAndKeepTheCap(t *testing.T) {
	ls := newLanes(2, time.Second, time.Minute)
	later := time.Now().Add(time.Hour)
	require.Empty(t, ls.add(jobsFor("a", 5, later)))
	require.Empty(t, ls.add(jobsFor("b", 1, later)))

	var got []string
	for range 3 {
		got = append(got, ls.next().subscriptionID)
	}
	// a, then b (its turn came before a's second), then a's second slot.
	require.Equal(t, []string{"a", "b", "a"}, got)
	queued, held := ls.counts()
	require.Equal(t, 3, queued, "a has three left, held back by its cap")
	require.Equal(t, 6, held)

	// a is at its cap: nothing more until one of its requests ends.
	next := make(chan *job)
	go func() { next <- ls.next() }()
	select {
	case j := <-next:
		t.Fatalf("handed out %v beyond the cap", j)
	case <-time.After(50 * time.Millisecond):
	}
	ls.finished(&job{subscriptionID: "a"}, time.Millisecond, false)
	select {
	case j := <-next:
		require.Equal(t, "a", j.subscriptionID)
	case <-time.After(time.Second):
		t.Fatal("a freed slot was not handed out")
	}

	require.True(t, ls.atCap("a"), "a holds 5 leases, cap 2")
	require.False(t, ls.atCap("b"))
	require.False(t, ls.atCap("nobody"))
	ls.ended(jobsFor("a", 2, later))
	require.Equal(t, 60, ls.room(64))
	ls.ended(jobsFor("a", 2, later))
	require.False(t, ls.atCap("a"), "a holds one lease")
}

func TestLanesCloseReturnsQueuedAndWakesWorkers(t *testing.T) {
	ls := newLanes(1, time.Second, time.Minute)
	later := time.Now().Add(time.Hour)
	ls.add(jobsFor("a", 3, later))
	require.NotNil(t, ls.next())

	waiting := make(chan *job)
	go func() { waiting <- ls.next() }()
	left := ls.close()
	require.Len(t, left, 2)
	select {
	case j := <-waiting:
		require.Nil(t, j, "a closed lane set hands out nothing")
	case <-time.After(time.Second):
		t.Fatal("close did not wake the waiting worker")
	}
	require.Len(t, ls.add(jobsFor("b", 2, later)), 2, "claims after close are refused, to be released")
	require.Zero(t, ls.room(100))
}

func TestLanesFastOnlyAfterQuickAnswers(t *testing.T) {
	ls := newLanes(4, 100*time.Millisecond, time.Minute)
	later := time.Now().Add(time.Hour)
	ls.add(jobsFor("quick", 2, later))
	ls.add(jobsFor("slow", 2, later))
	require.Empty(t, ls.fast(64), "nothing is known to be fast before an answer")

	for range 4 {
		j := ls.next()
		took := 5 * time.Millisecond
		if j.subscriptionID == "slow" {
			took = 2 * time.Second
		}
		ls.finished(j, took, false)
	}
	require.Equal(t, []string{"quick"}, ls.fast(64))
}

func TestLanesExpireSweepsHeldBackJobsAndSlowsTheLane(t *testing.T) {
	ls := newLanes(1, time.Second, time.Minute)
	soon := time.Now().Add(20 * time.Millisecond)
	ls.add(jobsFor("hang", 3, soon))
	ls.finished(ls.next(), time.Millisecond, false) // fast so far
	require.Equal(t, []string{"hang"}, ls.fast(64))
	hanging := ls.next() // holds the only slot
	require.NotNil(t, hanging)

	expired := ls.expire(time.Now().Add(time.Second))
	require.Len(t, expired, 1, "the job behind the hanging request")
	require.Empty(t, ls.fast(64), "a lane whose claims expired leases no more ahead")
	queued, _ := ls.counts()
	require.Zero(t, queued)
}
