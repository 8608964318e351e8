package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/outbox"
)

// Defaults of DBCollector's fields.
const (
	DefaultMaxAge      = 5 * time.Second
	DefaultReadTimeout = 2 * time.Second
)

// errReadTimeout is what a scrape reports when it stopped waiting for a read.
var errReadTimeout = errors.New("reading the queue gauges took longer than the timeout")

// DBCollector reads the queue gauges from the database, so every replica reports the same,
// whole-database figures. One read serves every scrape for MaxAge (see the package doc).
//
// NewDBCollector fills every field; change them before registering the collector, since the
// help texts quote MaxAge and Timeout.
type DBCollector struct {
	// MaxAge is how long one read, figures or failure, serves scrapes. NewDBCollector sets
	// DefaultMaxAge (5s). Zero reads on every scrape, still one read for concurrent scrapes.
	MaxAge time.Duration
	// Timeout bounds a read, and so how long a scrape waits for one. NewDBCollector sets
	// DefaultReadTimeout (2s).
	Timeout time.Duration
	// Now is the clock MaxAge and the figures' age are measured with. NewDBCollector sets
	// time.Now.
	Now func() time.Time

	db    *sqlx.DB
	log   zerolog.Logger
	queue string
	subs  string

	describe sync.Once
	backlog  *prometheus.Desc
	oldest   *prometheus.Desc
	due      *prometheus.Desc
	pending  *prometheus.Desc
	byState  *prometheus.Desc
	up       *prometheus.Desc
	age      *prometheus.Desc

	mu      sync.Mutex
	last    *figures // the last read that ended, nil before the first
	reading *read    // the read running now, nil when none
}

// figures are the result of one read: the gauges, or the error that stopped the read.
type figures struct {
	at                    time.Time // by Now, when the read ended
	err                   error
	backlog, due, pending int64
	oldest                float64
	subscriptions         map[string]int64
}

// read is a read in progress, shared by the scrapes that wait for it.
type read struct {
	deadline time.Time // wall clock: it bounds real waiting, whatever Now says
	done     chan struct{}
	result   figures // set before done is closed
}

// queueStats counts unordered and ordered pending deliveries apart: each half matches one
// partial index (deliveries_turns_idx, deliveries_ordered_turns_idx), so a read
// never scans the delivered history.
const queueStats = `
SELECT (SELECT count(*) FROM {{schema}}.outbox WHERE dispatched_at IS NULL),
       coalesce((SELECT extract(epoch FROM now() - min(created_at)) FROM {{schema}}.outbox WHERE dispatched_at IS NULL), 0),
       (SELECT count(*) FROM {{schema}}.deliveries
         WHERE status = 'pending' AND ordering_key IS NULL
           AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now()))
       + (SELECT count(*) FROM {{schema}}.deliveries
         WHERE status = 'pending' AND ordering_key IS NOT NULL
           AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())),
       (SELECT count(*) FROM {{schema}}.deliveries WHERE status = 'pending' AND ordering_key IS NULL)
       + (SELECT count(*) FROM {{schema}}.deliveries WHERE status = 'pending' AND ordering_key IS NOT NULL)`

const subscriptionStats = `
SELECT s.status, count(x.status)
FROM unnest(ARRAY['active', 'paused', 'disabled']) AS s(status)
LEFT JOIN {{schema}}.subscriptions x ON x.status = s.status AND x.deleted_at IS NULL
GROUP BY s.status`

// NewDBCollector returns a collector over the relay's tables in schema.
func NewDBCollector(db *sqlx.DB, schema string, log zerolog.Logger) *DBCollector {
	return &DBCollector{
		MaxAge:  DefaultMaxAge,
		Timeout: DefaultReadTimeout,
		Now:     time.Now,
		db:      db,
		log:     log,
		queue:   outbox.Qualify(schema, queueStats),
		subs:    outbox.Qualify(schema, subscriptionStats),
	}
}

// descs builds the descriptions once, from the fields as they are at registration.
func (c *DBCollector) descs() []*prometheus.Desc {
	c.describe.Do(func() {
		read := fmt.Sprintf(" Read from the database at most once every %s, whatever the number of scrapers.", c.MaxAge)
		c.backlog = prometheus.NewDesc("outbox_relay_outbox_backlog", "Outbox rows not yet dispatched."+read, nil, nil)
		c.oldest = prometheus.NewDesc("outbox_relay_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet dispatched (0 when none), as of the read."+read, nil, nil)
		c.due = prometheus.NewDesc("outbox_relay_deliveries_due", "Pending deliveries due now and not claimed."+read, nil, nil)
		c.pending = prometheus.NewDesc("outbox_relay_deliveries_pending", "Deliveries pending, due or scheduled for a retry."+read, nil, nil)
		c.byState = prometheus.NewDesc("outbox_relay_subscriptions", "Subscriptions (not deleted) by status."+read, []string{"status"}, nil)
		c.up = prometheus.NewDesc("outbox_relay_database_up",
			fmt.Sprintf("1 when the last read of the queue gauges succeeded, 0 when it failed or took over %s (then the queue gauges are absent).", c.Timeout)+read, nil, nil)
		c.age = prometheus.NewDesc("outbox_relay_queue_stats_age_seconds",
			fmt.Sprintf("Seconds since the queue gauges and outbox_relay_database_up were read from the database; one read serves every scrape for %s.", c.MaxAge), nil, nil)
	})
	return []*prometheus.Desc{c.backlog, c.oldest, c.due, c.pending, c.byState, c.up, c.age}
}

// Describe implements prometheus.Collector.
func (c *DBCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reports the last read while it is younger than
// MaxAge, and otherwise waits, at most Timeout, for a new one.
func (c *DBCollector) Collect(ch chan<- prometheus.Metric) {
	c.descs()
	f := c.figures()
	up := 0.0
	if f.err == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, max(c.Now().Sub(f.at), 0).Seconds())
	if f.err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(f.backlog))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, f.oldest)
	ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(f.due))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(f.pending))
	for status, n := range f.subscriptions {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(n), status)
	}
}

// figures returns the last read if it is fresh enough, or else the result of a new read,
// started here unless one is already running.
func (c *DBCollector) figures() figures {
	c.mu.Lock()
	if c.last != nil && c.Now().Sub(c.last.at) < c.MaxAge {
		f := *c.last
		c.mu.Unlock()
		return f
	}
	r := c.reading
	if r == nil {
		r = &read{deadline: time.Now().Add(c.Timeout), done: make(chan struct{})}
		c.reading = r
		// In its own goroutine so that a scrape can stop waiting even when the driver
		// overruns the deadline: lib/pq cancels by asking the server, then still waits for
		// the answer on the query's connection, which a dead network never brings.
		go c.read(r)
	}
	c.mu.Unlock()

	wait := time.NewTimer(time.Until(r.deadline))
	defer wait.Stop()
	select {
	case <-r.done:
		return r.result
	case <-wait.C:
		return figures{at: c.Now(), err: errReadTimeout}
	}
}

// read runs one read and keeps its result, failure included, for MaxAge.
func (c *DBCollector) read(r *read) {
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline)
	defer cancel()
	f := c.query(ctx)
	if f.err != nil {
		c.log.Debug().Err(f.err).Msg("reading queue metrics")
	}
	f.at = c.Now()
	r.result = f
	c.mu.Lock()
	c.last = &f
	c.reading = nil
	c.mu.Unlock()
	close(r.done)
}

func (c *DBCollector) query(ctx context.Context) figures {
	var f figures
	if err := c.db.QueryRowContext(ctx, c.queue).Scan(&f.backlog, &f.oldest, &f.due, &f.pending); err != nil {
		return figures{err: fmt.Errorf("reading queue figures: %w", err)}
	}
	rows, err := c.db.QueryContext(ctx, c.subs)
	if err != nil {
		return figures{err: fmt.Errorf("reading subscriptions by status: %w", err)}
	}
	defer rows.Close()
	f.subscriptions = map[string]int64{}
	for rows.Next() {
		var status string
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			return figures{err: fmt.Errorf("reading subscriptions by status: %w", err)}
		}
		f.subscriptions[status] = n
	}
	if err := rows.Err(); err != nil {
		return figures{err: fmt.Errorf("reading subscriptions by status: %w", err)}
	}
	return f
}
