package metrics_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/metrics"
)

// scrapers is how many scrapers the tests send at once.
const scrapers = 50

// statementsPerRead is what one read of the queue gauges sends to PostgreSQL.
const statementsPerRead = 2

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type bundle struct {
	// db reaches the test's database directly, for fixtures and locks.
	db *sqlx.DB
	// proxy is the collector's only way to the database; it counts what the collector sends.
	proxy     *pgProxy
	clock     *clock
	collector *metrics.DBCollector
	reg       *prometheus.Registry
}

// setup returns a collector over a new database, reached through a counting proxy, on a
// clock that moves only when the test says so. configure, when not nil, changes the
// collector before it is registered.
func setup(t *testing.T, configure func(*metrics.DBCollector)) *bundle {
	t.Helper()
	db, dsn := relaytest.NewDB(t)
	proxy, proxied := newPGProxy(t, dsn)
	cdb, err := sqlx.Open("postgres", proxied)
	require.NoError(t, err)
	t.Cleanup(func() { cdb.Close() })

	b := &bundle{db: db, proxy: proxy, clock: &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry()}
	b.collector = metrics.NewDBCollector(cdb, "relay", zerolog.Nop())
	b.collector.Now = b.clock.Now
	if configure != nil {
		configure(b.collector)
	}
	b.reg.MustRegister(b.collector)
	return b
}

// scrape is what one scraper saw: the value of each series, by name and label values.
type scrape struct {
	values map[string]float64
	help   map[string]string
	took   time.Duration
	err    error
}

func (b *bundle) gather() scrape {
	start := time.Now()
	families, err := b.reg.Gather()
	s := scrape{values: map[string]float64{}, help: map[string]string{}, took: time.Since(start), err: err}
	for _, f := range families {
		s.help[f.GetName()] = f.GetHelp()
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			s.values[name] = m.GetGauge().GetValue()
		}
	}
	return s
}

// gatherOne scrapes once and fails the test on an error.
func (b *bundle) gatherOne(t *testing.T) scrape {
	t.Helper()
	s := b.gather()
	require.NoError(t, s.err)
	return s
}

// gatherMany scrapes n times at once and returns what each scraper saw. launched, when not
// nil, is called once every scraper is on its way.
func (b *bundle) gatherMany(t *testing.T, n int, launched func()) []scrape {
	t.Helper()
	start := make(chan struct{})
	out := make(chan scrape, n)
	for range n {
		go func() {
			<-start
			out <- b.gather()
		}()
	}
	close(start)
	if launched != nil {
		launched()
	}
	all := make([]scrape, 0, n)
	for range n {
		s := <-out
		require.NoError(t, s.err)
		all = append(all, s)
	}
	return all
}

// lockOutbox makes every read of the queue gauges wait, until the returned function is called.
func (b *bundle) lockOutbox(t *testing.T) (release func()) {
	t.Helper()
	tx, err := b.db.Beginx()
	require.NoError(t, err)
	_, err = tx.Exec(`LOCK TABLE relay.outbox IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	var once sync.Once
	release = func() { once.Do(func() { require.NoError(t, tx.Rollback()) }) }
	t.Cleanup(release)
	return release
}

// waitingOnOutbox counts the sessions PostgreSQL has waiting for the outbox's lock. pg_locks
// covers the whole server, and every test database, cloned from one template, has the same
// table OIDs: hence the database condition.
func (b *bundle) waitingOnOutbox(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Get(&n, `
		SELECT count(*) FROM pg_locks
		WHERE NOT granted AND relation = 'relay.outbox'::regclass
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`))
	return n
}

func TestDBCollectorReportsBacklogAndSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.db.Exec(`
		INSERT INTO relay.outbox (event_type, payload, created_at) VALUES ('a.b', '{}', now() - interval '90 seconds'), ('a.b', '{}', now());
		INSERT INTO relay.outbox (event_type, payload, dispatched_at) VALUES ('a.b', '{}', now());
		INSERT INTO relay.subscriptions (id, target_url, event_types, secret, status) VALUES
			('sub_1', 'https://example.com/1', '{*}', 'whsec_x', 'active'),
			('sub_2', 'https://example.com/2', '{*}', 'whsec_x', 'disabled');
		INSERT INTO relay.subscriptions (id, target_url, event_types, secret, deleted_at) VALUES ('sub_3', 'https://example.com/3', '{*}', 'whsec_x', now());
		INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, next_attempt_at)
		SELECT event_id, id, 'sub_1', now() - interval '1 second' FROM relay.outbox WHERE dispatched_at IS NOT NULL;`)
	require.NoError(t, err)

	got := b.gatherOne(t)
	require.Equal(t, 2.0, got.values["outbox_relay_outbox_backlog"])
	require.InDelta(t, 90, got.values["outbox_relay_outbox_oldest_age_seconds"], 5)
	require.Equal(t, 1.0, got.values["outbox_relay_deliveries_due"])
	require.Equal(t, 1.0, got.values["outbox_relay_deliveries_pending"])
	require.Equal(t, 1.0, got.values["outbox_relay_subscriptions/active"])
	require.Equal(t, 1.0, got.values["outbox_relay_subscriptions/disabled"], "deleted subscriptions are not counted")
	require.Equal(t, 0.0, got.values["outbox_relay_subscriptions/paused"])
	require.Equal(t, 1.0, got.values["outbox_relay_database_up"])
	require.Equal(t, 0.0, got.values["outbox_relay_queue_stats_age_seconds"])
	require.Equal(t, int64(statementsPerRead), b.proxy.statements.Load())

	// The help texts tell operators how old the figures may be and how long a read may take.
	require.Contains(t, got.help["outbox_relay_outbox_backlog"], "at most once every 5s")
	require.Contains(t, got.help["outbox_relay_queue_stats_age_seconds"], "for 5s")
	require.Contains(t, got.help["outbox_relay_database_up"], "took over 2s")
}

// Scrapes that arrive while a read runs wait for it: PostgreSQL sees one read, not one per
// scraper.
func TestDBCollectorConcurrentScrapesShareOneRead(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ('a.b', '{}'), ('a.b', '{}')`)
	require.NoError(t, err)
	release := b.lockOutbox(t)

	all := b.gatherMany(t, scrapers, func() {
		relaytest.Eventually(t, 5*time.Second, func() bool { return b.waitingOnOutbox(t) > 0 }, "no read reached the database")
		// Scrapers that are not in the collector yet would only find the read's figures.
		time.Sleep(300 * time.Millisecond)
		require.Equal(t, 1, b.waitingOnOutbox(t), "one read waits for the outbox, whatever the number of scrapers")
		release()
	})
	for _, s := range all {
		require.Equal(t, 1.0, s.values["outbox_relay_database_up"])
		require.Equal(t, 2.0, s.values["outbox_relay_outbox_backlog"])
	}
	require.Equal(t, int64(statementsPerRead), b.proxy.statements.Load(), "%d scrapes sent one read to PostgreSQL", scrapers)
}

// One read serves every scrape for MaxAge; after that, the next scrape reads again.
func TestDBCollectorReusesAReadForMaxAge(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.Equal(t, 5*time.Second, b.collector.MaxAge, "the default")

	first := b.gatherOne(t)
	require.Equal(t, 0.0, first.values["outbox_relay_outbox_backlog"])
	require.Equal(t, int64(statementsPerRead), b.proxy.statements.Load())

	_, err := b.db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ('a.b', '{}')`)
	require.NoError(t, err)
	b.clock.Advance(4900 * time.Millisecond)
	for _, s := range b.gatherMany(t, scrapers, nil) {
		require.Equal(t, 1.0, s.values["outbox_relay_database_up"])
		require.Equal(t, 0.0, s.values["outbox_relay_outbox_backlog"], "the figures of the first read")
		require.InDelta(t, 4.9, s.values["outbox_relay_queue_stats_age_seconds"], 1e-9)
	}
	require.Equal(t, int64(statementsPerRead), b.proxy.statements.Load(), "no read within MaxAge")

	b.clock.Advance(100 * time.Millisecond)
	fresh := b.gatherOne(t)
	require.Equal(t, 1.0, fresh.values["outbox_relay_outbox_backlog"])
	require.Equal(t, 0.0, fresh.values["outbox_relay_queue_stats_age_seconds"])
	require.Equal(t, int64(2*statementsPerRead), b.proxy.statements.Load())
}

// A read that outlasts Timeout holds no scrape longer than Timeout, sends one query however
// many scrapers wait, and its failure is kept for MaxAge.
func TestDBCollectorSlowDatabaseHoldsNoScrape(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	b := setup(t, func(c *metrics.DBCollector) { c.Timeout = timeout })
	release := b.lockOutbox(t)

	all := b.gatherMany(t, scrapers, nil)
	for _, s := range all {
		require.Less(t, s.took, timeout+time.Second, "a scrape waited past the timeout")
		require.Equal(t, 0.0, s.values["outbox_relay_database_up"])
		require.NotContains(t, s.values, "outbox_relay_outbox_backlog", "no queue figures without a read")
	}
	require.Equal(t, int64(1), b.proxy.statements.Load(), "one query reached PostgreSQL, and was cancelled")

	release()
	relaytest.Eventually(t, 5*time.Second, func() bool { return b.waitingOnOutbox(t) == 0 }, "the read was not cancelled")
	again := b.gatherOne(t)
	require.Equal(t, 0.0, again.values["outbox_relay_database_up"], "the failure is kept for MaxAge")
	require.Equal(t, int64(1), b.proxy.statements.Load())

	// Past MaxAge the next scrape reads again. The clock moves at each try, since the
	// cancelled read may store its failure a moment after the lock is gone.
	relaytest.Eventually(t, 5*time.Second, func() bool {
		b.clock.Advance(b.collector.MaxAge)
		return b.gatherOne(t).values["outbox_relay_database_up"] == 1
	}, "the database never came back up")
	require.Equal(t, int64(1+statementsPerRead), b.proxy.statements.Load())
}

// A database that refuses connections gives database_up 0 at once, and is asked again once
// per MaxAge, not by every scrape.
func TestDBCollectorDownDatabaseIsAskedOncePerMaxAge(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.proxy.setDown(true)

	first := b.gatherOne(t)
	require.Less(t, first.took, time.Second)
	require.Equal(t, 0.0, first.values["outbox_relay_database_up"])
	require.NotContains(t, first.values, "outbox_relay_outbox_backlog")
	dials := b.proxy.dials.Load()
	require.Positive(t, dials, "the first scrape tried the database")

	b.clock.Advance(4 * time.Second)
	for _, s := range b.gatherMany(t, scrapers, nil) {
		require.Equal(t, 0.0, s.values["outbox_relay_database_up"])
		require.Equal(t, 4.0, s.values["outbox_relay_queue_stats_age_seconds"])
	}
	require.Equal(t, dials, b.proxy.dials.Load(), "no scrape within MaxAge tried the database again")

	b.clock.Advance(time.Second)
	require.Equal(t, 0.0, b.gatherOne(t).values["outbox_relay_database_up"])
	require.Greater(t, b.proxy.dials.Load(), dials, "past MaxAge, a scrape tries again")

	b.proxy.setDown(false)
	b.clock.Advance(5 * time.Second)
	back := b.gatherOne(t)
	require.Equal(t, 1.0, back.values["outbox_relay_database_up"])
	require.Equal(t, 0.0, back.values["outbox_relay_outbox_backlog"])
	require.Equal(t, int64(statementsPerRead), b.proxy.statements.Load(), "only the read that succeeded reached PostgreSQL")
}

func TestDBCollectorHelpQuotesItsSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *metrics.DBCollector) { c.MaxAge = 30 * time.Second })
	got := b.gatherOne(t)
	for name, help := range got.help {
		if strings.HasPrefix(name, "outbox_relay_") {
			require.Contains(t, help, "30s", name)
		}
	}
}
