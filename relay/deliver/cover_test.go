package deliver

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestClaimCover(t *testing.T) {
	t.Run("CoveredByAnEarlierClaim", func(t *testing.T) {
		c := newClaimCover()
		c.kick()
		k := c.latest()
		c.claimedThrough(k)
		require.True(t, c.covered(context.Background(), k))
		c.kick()
		require.False(t, c.covered(context.Background(), c.latest()), "a later kick, no record in progress: claim")
	})
	t.Run("CoveredCountNeverGoesBack", func(t *testing.T) {
		c := newClaimCover()
		c.claimedThrough(5)
		c.claimedThrough(3)
		require.True(t, c.covered(context.Background(), 5))
	})
	t.Run("WaitsForTheRecordInProgress", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newClaimCover()
			c.kick()
			k := c.latest()
			c.recordStarted()
			go func() {
				time.Sleep(5 * time.Millisecond)
				c.claimedThrough(k) // the record read the count, then claimed
				c.recordEnded()
			}()
			start := time.Now()
			require.True(t, c.covered(context.Background(), k))
			require.Equal(t, 5*time.Millisecond, time.Since(start), "it waited for the record, no longer")
		})
	})
	t.Run("ARecordThatDidNotClaimForItIsNotEnough", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newClaimCover()
			c.kick()
			c.recordStarted()
			go func() {
				time.Sleep(2 * time.Millisecond)
				c.recordEnded() // a record with failures: it did not claim
			}()
			start := time.Now()
			require.False(t, c.covered(context.Background(), c.latest()))
			require.Equal(t, 2*time.Millisecond, time.Since(start))
		})
	})
	t.Run("GivesUpAfterRecordWait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newClaimCover()
			c.kick()
			c.recordStarted() // and never ends: a write stuck on the database
			start := time.Now()
			require.False(t, c.covered(context.Background(), c.latest()))
			require.Equal(t, recordWait, time.Since(start))
		})
	})
}

// gather's timers for a batch whose record will claim (here: a backlog): it waits for the
// results of quick requests still on the wire, at most recordGap between two results and
// recordLinger in all, and never for others.
func TestGatherWaitsForQuickResults(t *testing.T) {
	newD := func(quickOnTheWire int64) *Deliverer {
		d := &Deliverer{cfg: Config{BatchSize: 100}, cover: newClaimCover(), lanes: newLanes(16, time.Second, time.Minute)}
		d.backlog.Store(true)
		d.quickInFlight.Store(quickOnTheWire)
		return d
	}
	r := func(id int64) result { return result{job: &job{deliveryID: id}} }

	t.Run("NothingQuickOnTheWire", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			results := make(chan result, 8)
			results <- r(2)
			start := time.Now()
			batch := newD(0).gather(results, []result{r(1)})
			require.Len(t, batch, 2, "what is ready is taken")
			require.Zero(t, time.Since(start), "and nothing is waited for")
		})
	})
	t.Run("ResultsCloseTogether", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			results := make(chan result, 8)
			go func() {
				for i := range 3 {
					time.Sleep(recordGap / 2)
					results <- r(int64(2 + i))
				}
			}()
			start := time.Now()
			batch := newD(3).gather(results, []result{r(1)})
			require.Len(t, batch, 4)
			// Three results half a gap apart, then a whole gap with nothing.
			require.Equal(t, 3*recordGap/2+recordGap, time.Since(start))
		})
	})
	t.Run("LingerBoundsTheWait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			results := make(chan result, 64)
			stop := make(chan struct{})
			const every = 300 * time.Microsecond // never at the very instant of the deadline
			go func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(every):
						results <- r(int64(2 + i))
					}
				}
			}()
			start := time.Now()
			batch := newD(1).gather(results, []result{r(1)})
			close(stop)
			require.Equal(t, recordLinger, time.Since(start), "results keep coming, the batch is written after recordLinger")
			require.Len(t, batch, 1+int(recordLinger/every))
		})
	})
	t.Run("AKickEndsIt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			d := newD(1)
			go func() {
				time.Sleep(recordGap / 2)
				d.Kick()
			}()
			start := time.Now()
			batch := d.gather(make(chan result), []result{r(1)})
			require.Len(t, batch, 1)
			require.Equal(t, recordGap/2, time.Since(start), "new deliveries wait for this batch's claim")
		})
	})
}

// A batch whose record will not claim keeps nothing waiting but its leases: it gathers for
// recordIdleLinger whatever is on the wire, and a kick does not cut it short (the claim
// loop claims for the kick itself).
func TestGatherWithoutAClaimWaitsForMore(t *testing.T) {
	r := func(id int64) result { return result{job: &job{deliveryID: id, subscriptionID: "s"}} }
	synctest.Test(t, func(t *testing.T) {
		d := &Deliverer{cfg: Config{BatchSize: 100}, cover: newClaimCover(), lanes: newLanes(16, time.Second, time.Minute)}
		results := make(chan result, 8)
		go func() {
			time.Sleep(recordIdleLinger / 4)
			d.Kick()
			time.Sleep(recordIdleLinger / 4)
			results <- r(2)
		}()
		start := time.Now()
		batch := d.gather(results, []result{r(1)})
		require.Len(t, batch, 2)
		require.Equal(t, recordIdleLinger, time.Since(start))
		require.False(t, d.cover.recording.Load(), "a kick need not wait for this record")
	})
}
