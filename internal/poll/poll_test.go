package poll

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTicksEveryPeriodFromARandomPhase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		phases := map[time.Duration]bool{}
		for range 20 {
			start := time.Now()
			tk := NewTicker(time.Second)
			first := <-tk.C
			phase := first.Sub(start)
			require.Greater(t, phase, time.Duration(0))
			require.LessOrEqual(t, phase, time.Second)
			phases[phase] = true
			second := <-tk.C
			require.Equal(t, time.Second, second.Sub(first), "then every period")
			tk.Stop()
			time.Sleep(3 * time.Second)
			select {
			case <-tk.C:
				t.Fatal("ticked after Stop")
			default:
			}
		}
		require.Greater(t, len(phases), 10, "the phases are spread, not fixed")
	})
}

func TestDropsTicksASlowReceiverMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tk := NewTicker(time.Second)
		defer tk.Stop()
		time.Sleep(5500 * time.Millisecond)
		<-tk.C
		select {
		case <-tk.C:
			t.Fatal("missed ticks were queued")
		default:
		}
	})
}
