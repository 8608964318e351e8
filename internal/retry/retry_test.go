package retry

import (
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
)

func TestNewBackoff(t *testing.T) {
	t.Parallel()
	bo := NewBackoff()
	// Jitter is half the interval either way.
	first := bo.NextBackOff()
	require.GreaterOrEqual(t, first, InitialInterval/2)
	require.LessOrEqual(t, first, InitialInterval*3/2)

	// A clock far ahead stands for a long outage: the backoff caps, and never gives up.
	start := time.Now()
	bo.Clock = clockFunc(func() time.Time { return start.Add(24 * time.Hour) })
	var last time.Duration
	for range 100 {
		last = bo.NextBackOff()
		require.NotEqual(t, backoff.Stop, last)
		require.LessOrEqual(t, last, MaxInterval*3/2)
	}
	require.GreaterOrEqual(t, last, MaxInterval/2)

	bo.Reset()
	require.LessOrEqual(t, bo.NextBackOff(), InitialInterval*3/2, "Reset starts again from InitialInterval")
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }
