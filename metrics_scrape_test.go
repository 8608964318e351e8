package main

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// TestMetricsScrapersShareOneDatabaseRead sends many scrapers at once to a relay whose
// database holds the queue gauges' read: PostgreSQL sees one read, no scrape waits past 2s,
// and the failure is reported, then kept, then replaced by fresh figures.
func TestMetricsScrapersShareOneDatabaseRead(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	p := startRelay(t, dsn)

	// Until the lock goes, the read of the queue gauges waits for it.
	tx, err := db.Beginx()
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() })
	_, err = tx.Exec(`LOCK TABLE relay.outbox IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	// The most sessions of this database seen running the queue gauges' read at once, as
	// PostgreSQL sees them, while the scrapers wait.
	stop := make(chan struct{})
	most := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				most <- n
				return
			case <-time.After(20 * time.Millisecond):
				var readers int
				if err := db.Get(&readers, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
					  AND query LIKE '%extract(epoch FROM now() - min(created_at))%'`); err == nil {
					n = max(n, readers)
				}
			}
		}
	}()

	const scrapers = 50
	type result struct {
		took time.Duration
		up   float64
		err  error
	}
	results := make(chan result, scrapers)
	var wg sync.WaitGroup
	for range scrapers {
		wg.Go(func() {
			start := time.Now()
			resp, err := http.Get(p.opsURL + "/metrics")
			if err != nil {
				results <- result{err: err}
				return
			}
			resp.Body.Close()
			results <- result{took: time.Since(start)}
		})
	}
	wg.Wait()
	close(stop)
	close(results)
	var slowest time.Duration
	for r := range results {
		require.NoError(t, r.err)
		slowest = max(slowest, r.took)
		// 2s is the collector's bound; the rest is slack for 50 connections to a race-detector
		// binary on a busy machine. Without the bound, no scrape would end while the lock holds.
		require.Less(t, r.took, 5*time.Second, "a scrape waited for the locked database")
	}
	t.Logf("slowest of %d scrapes: %s", scrapers, slowest)
	require.Equal(t, 1, <-most, "one session read the queue gauges for %d scrapers", scrapers)

	held := scrape(t, p)
	require.Equal(t, 0.0, metricValue(t, held, "outbox_relay_database_up"))
	require.NotContains(t, held, "outbox_relay_outbox_backlog", "no figures from a failed read")
	require.NoError(t, tx.Rollback())

	// The failure is kept for 5s, then the next scrape reads again.
	require.Equal(t, 0.0, metricValue(t, scrape(t, p), "outbox_relay_database_up"))
	relaytest.Eventually(t, 10*time.Second, func() bool {
		return metricValue(t, scrape(t, p), "outbox_relay_database_up") == 1
	}, "the queue gauges were never read again")
	fresh := scrape(t, p)
	require.Zero(t, metricValue(t, fresh, "outbox_relay_outbox_backlog"))
	require.Less(t, metricValue(t, fresh, "outbox_relay_queue_stats_age_seconds"), 5.0)
	for _, kind := range []string{"resources", "secret", "database", "row_unreadable", "record_refused"} {
		require.Zero(t, metricValue(t, fresh, "outbox_relay_local_faults_total", "kind", kind))
	}

	require.Equal(t, 0, p.stop(t))
}
