package health

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTroubleAfterFailingLongerThanLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr Tracker
		require.Empty(t, tr.Trouble("claiming", 3*time.Second), "nothing recorded yet")
		tr.OK()
		tr.Fail(errors.New("connection refused"))
		require.True(t, tr.Failing())
		time.Sleep(2 * time.Second)
		require.Empty(t, tr.Trouble("claiming", 3*time.Second), "one failure, 2s ago: not yet")
		time.Sleep(2 * time.Second)
		require.Equal(t, "claiming has failed for 4s: connection refused", tr.Trouble("claiming", 3*time.Second))
		tr.OK()
		require.False(t, tr.Failing())
		// One failure and one success in the window: the ratio rule needs three failures.
		require.Empty(t, tr.Trouble("claiming", 3*time.Second))
	})
}

func TestTroubleWhenFailuresOutnumberSuccesses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr Tracker
		// Every other attempt fails: the streak never lasts, but the work mostly stalls.
		for range 3 {
			tr.Fail(errors.New(`pq: prepared statement "1" does not exist`))
			time.Sleep(500 * time.Millisecond)
			tr.OK()
			time.Sleep(500 * time.Millisecond)
		}
		require.Equal(t, `dispatching failed 3 times and succeeded 3 times in the last 10s: pq: prepared statement "1" does not exist`,
			tr.Trouble("dispatching", 3*time.Second))
		// One more success tips the balance.
		tr.OK()
		require.Empty(t, tr.Trouble("dispatching", 3*time.Second))
		// Once it stops failing for the limit, it is out of trouble, whatever the ratio.
		for range 4 {
			tr.Fail(errors.New("boom"))
		}
		tr.OK()
		require.NotEmpty(t, tr.Trouble("dispatching", 3*time.Second))
		time.Sleep(3 * time.Second)
		require.NotEmpty(t, tr.Trouble("dispatching", 3*time.Second))
		time.Sleep(time.Second)
		require.Empty(t, tr.Trouble("dispatching", 3*time.Second))
	})
}
