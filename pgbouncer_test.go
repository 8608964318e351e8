package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// Three relays reach PostgreSQL through a real PgBouncer, LISTEN on the direct connection
// (RELAY_LISTEN_DATABASE_URL), and one is killed with -9 in the middle of a backlog. In both
// pool modes every event arrives, single events afterwards arrive within a second, and the
// schema was migrated through the bouncer too.
func TestBehindPgBouncer(t *testing.T) {
	for _, mode := range []relaytest.PoolMode{relaytest.TransactionPooling, relaytest.SessionPooling} {
		t.Run(string(mode), func(t *testing.T) {
			db, direct := relaytest.Open(t, relaytest.Empty)
			bounced := relaytest.StartPgBouncer(t, direct, mode)

			// Two migrations at once, through the bouncer: the migration lock is
			// transaction-scoped, so the pooler cannot lose it between statements.
			migrated := make([]string, 2)
			failed := make([]error, 2)
			var wg sync.WaitGroup
			for i := range migrated {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := exec.Command(binary, "migrate")
					cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL="+bounced, "RELAY_NOTIFY_TRIGGER=true", "RELAY_API_TOKEN=migrate")
					out, err := cmd.CombinedOutput()
					migrated[i], failed[i] = string(out), err
				}()
			}
			wg.Wait()
			for i := range migrated {
				require.NoError(t, failed[i], "%s", migrated[i])
			}
			joined := strings.Join(migrated, "")
			require.Contains(t, joined, "migrated to version", "one of the two migrated")
			require.Contains(t, joined, "is up to date", "the other waited for it, then found nothing to do")

			rc := newFleetReceiver(t)
			addSubscription(t, db, rc.URL+"/hook")
			// A 5s poll: a single event that arrives within a second came by a notification.
			env := []string{"RELAY_LISTEN_DATABASE_URL=" + direct, "RELAY_POLL_INTERVAL=5s",
				"RELAY_DELIVERY_TIMEOUT=2s", "RELAY_LOG_LEVEL=info", "RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION=4"}
			procs := make([]*relayProcess, 3)
			for i := range procs {
				procs[i] = startRelay(t, fmt.Sprintf("%s&application_name=bounced-%d", bounced, i), env...)
			}
			gone := map[int]bool{}
			active := waitActive(t, procs, gone, 15*time.Second)

			const backlog = 300
			rc.delay.Store(int64(20 * time.Millisecond))
			insertEvents(t, db, backlog, 100)
			relaytest.Eventually(t, 30*time.Second, func() bool { d, _ := rc.received(); return d >= 50 }, "the backlog did not start")
			require.NoError(t, procs[active].cmd.Process.Kill())
			<-procs[active].exited
			killed := time.Now()
			gone[active] = true
			next := waitActive(t, procs, gone, 20*time.Second)
			t.Logf("%s pooling: kill -9 of relay %d, relay %d took over after %s", mode, active, next, time.Since(killed).Round(time.Millisecond))
			waitAllSucceeded(t, db, backlog, time.Minute, procs...)

			rc.delay.Store(0)
			var slowest time.Duration
			for range 10 {
				id, at := publishOne(t, db)
				took := rc.waitArrival(t, id, 5*time.Second).Sub(at)
				require.Less(t, took, time.Second, "a single event waited for the poll")
				slowest = max(slowest, took)
			}
			distinct, dups := rc.received()
			require.Equal(t, backlog+10, distinct, "every event arrived")
			t.Logf("%s pooling: %d events arrived (%d sent twice after the kill); single events took at most %s",
				mode, distinct, dups, slowest.Round(time.Millisecond))
			for _, p := range procs {
				require.NotContains(t, p.Output(), "prepared statement", "a statement depended on its session")
			}
		})
	}
}
