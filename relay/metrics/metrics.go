// Package metrics defines the relay's Prometheus metrics: counters and histograms the
// dispatcher and deliverer update as they work, and gauges read from the database at scrape
// time (backlog, oldest undispatched row, due deliveries, subscriptions by status).
//
// Names follow Prometheus conventions: the outbox_relay_ prefix, base units, _total for
// counters, _seconds for durations. Labels stay low-cardinality: outcomes and statuses only,
// never subscription IDs or URLs.
package metrics

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/outbox"
)

// Attempt outcome classes, the values of outbox_relay_attempts_total's outcome label.
const (
	Outcome2xx             = "2xx"
	Outcome3xx             = "3xx"
	Outcome4xx             = "4xx"
	Outcome5xx             = "5xx"
	OutcomeTimeout         = "timeout"
	OutcomeConnectionError = "connection_error"
	// OutcomeNotSent: no request was made (payload over the limit, unusable secret).
	OutcomeNotSent = "not_sent"
)

// Metrics are the relay's instruments. The zero value is not usable; a nil *Metrics is, and
// records nothing, so components can be built without metrics in tests.
type Metrics struct {
	EventsDispatched  prometheus.Counter
	DeliveriesCreated prometheus.Counter
	// Deliveries counts deliveries reaching a final state, by status.
	Deliveries *prometheus.CounterVec
	// Attempts counts attempts by outcome class.
	Attempts        *prometheus.CounterVec
	AttemptDuration prometheus.Histogram
	// DeliveryLatency is the time from the event's outbox commit to its first 2xx.
	DeliveryLatency prometheus.Histogram
}

// New creates the instruments and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsDispatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relay_events_dispatched_total",
			Help: "Outbox rows fanned out into deliveries.",
		}),
		DeliveriesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relay_deliveries_created_total",
			Help: "Deliveries created by fan-out.",
		}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_relay_deliveries_total",
			Help: "Deliveries that reached a final state, by status (succeeded, failed, cancelled).",
		}, []string{"status"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_relay_attempts_total",
			Help: "Delivery attempts by outcome (2xx, 3xx, 4xx, 5xx, timeout, connection_error, not_sent).",
		}, []string{"outcome"}),
		AttemptDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_relay_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, from connect to the end of the response.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_relay_delivery_latency_seconds",
			Help:    "Time from the event's outbox commit to its first successful attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 5400},
		}),
	}
	for _, s := range []string{"succeeded", "failed", "cancelled"} {
		m.Deliveries.WithLabelValues(s)
	}
	for _, o := range []string{Outcome2xx, Outcome3xx, Outcome4xx, Outcome5xx, OutcomeTimeout, OutcomeConnectionError, OutcomeNotSent} {
		m.Attempts.WithLabelValues(o)
	}
	reg.MustRegister(m.EventsDispatched, m.DeliveriesCreated, m.Deliveries, m.Attempts, m.AttemptDuration, m.DeliveryLatency)
	return m
}

// Dispatched records one fan-out batch.
func (m *Metrics) Dispatched(events, deliveries int) {
	if m == nil {
		return
	}
	m.EventsDispatched.Add(float64(events))
	m.DeliveriesCreated.Add(float64(deliveries))
}

// Attempt records one attempt.
func (m *Metrics) Attempt(outcome string, duration time.Duration) {
	if m == nil {
		return
	}
	m.Attempts.WithLabelValues(outcome).Inc()
	if outcome != OutcomeNotSent {
		m.AttemptDuration.Observe(duration.Seconds())
	}
}

// Finished records deliveries reaching a final status.
func (m *Metrics) Finished(status string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.Deliveries.WithLabelValues(status).Add(float64(n))
}

// Delivered records the commit-to-success latency of one delivery.
func (m *Metrics) Delivered(latency time.Duration) {
	if m == nil {
		return
	}
	m.DeliveryLatency.Observe(max(latency, 0).Seconds())
}

// OutcomeOf classifies an attempt for the outcome label.
func OutcomeOf(statusCode int, timedOut, sent bool) string {
	switch {
	case !sent:
		return OutcomeNotSent
	case statusCode >= 200 && statusCode < 300:
		return Outcome2xx
	case statusCode >= 300 && statusCode < 400:
		return Outcome3xx
	case statusCode >= 400 && statusCode < 500:
		return Outcome4xx
	case statusCode >= 500:
		return Outcome5xx
	case timedOut:
		return OutcomeTimeout
	default:
		return OutcomeConnectionError
	}
}

// DBCollector reads the queue gauges from the database at scrape time, so every replica
// reports the same, whole-database figures.
type DBCollector struct {
	db      *sqlx.DB
	log     zerolog.Logger
	queue   string
	subs    string
	backlog *prometheus.Desc
	oldest  *prometheus.Desc
	due     *prometheus.Desc
	pending *prometheus.Desc
	byState *prometheus.Desc
	up      *prometheus.Desc
}

// queueStats counts unordered and ordered pending deliveries apart: each half matches one
// partial index (deliveries_due_by_subscription_idx, deliveries_ordered_idx), so a scrape
// never reads the delivered history.
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
		db:      db,
		log:     log,
		queue:   outbox.Qualify(schema, queueStats),
		subs:    outbox.Qualify(schema, subscriptionStats),
		backlog: prometheus.NewDesc("outbox_relay_outbox_backlog", "Outbox rows not yet dispatched.", nil, nil),
		oldest:  prometheus.NewDesc("outbox_relay_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet dispatched (0 when none).", nil, nil),
		due:     prometheus.NewDesc("outbox_relay_deliveries_due", "Pending deliveries due now and not claimed.", nil, nil),
		pending: prometheus.NewDesc("outbox_relay_deliveries_pending", "Deliveries pending, due or scheduled for a retry.", nil, nil),
		byState: prometheus.NewDesc("outbox_relay_subscriptions", "Subscriptions (not deleted) by status.", []string{"status"}, nil),
		up:      prometheus.NewDesc("outbox_relay_database_up", "1 when the last scrape's queries succeeded.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *DBCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.backlog, c.oldest, c.due, c.pending, c.byState, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A database that does not answer within 2s gives
// outbox_relay_database_up 0 and no queue figures, rather than a failed scrape.
func (c *DBCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var backlog, due, pending int64
	var oldest float64
	err := c.db.QueryRowContext(ctx, c.queue).Scan(&backlog, &oldest, &due, &pending)
	if err == nil {
		err = c.collectSubscriptions(ctx, ch)
	}
	if err != nil {
		c.log.Debug().Err(err).Msg("collecting queue metrics")
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(backlog))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest)
	ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(due))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
}

func (c *DBCollector) collectSubscriptions(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.QueryContext(ctx, c.subs)
	if err != nil {
		return err
	}
	defer rows.Close()
	var out []prometheus.Metric
	for rows.Next() {
		var status string
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			return err
		}
		out = append(out, prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(n), status))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, m := range out {
		ch <- m
	}
	return nil
}
