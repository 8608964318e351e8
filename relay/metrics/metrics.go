package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// Kinds of local fault, the values of outbox_relay_local_faults_total's kind label: faults of
// the relay itself, never of a receiver. The delivery they hit waits and is retried.
const (
	// FaultResources: out of file descriptors, memory, buffers or local ports.
	FaultResources = "resources"
	// FaultSecret: no configured key opens a subscription's secret or sealed header.
	FaultSecret = "secret"
	// FaultDatabase: a claim, record or fan-out statement failed.
	FaultDatabase = "database"
	// FaultRowUnreadable: an outbox or delivery row the relay could not read.
	FaultRowUnreadable = "row_unreadable"
	// FaultRecordRefused: the database refused a result's data, and it was stored with a
	// replaced text.
	FaultRecordRefused = "record_refused"
)

// faultKinds lists every kind of local fault. Each series starts at 0, so that increase()
// and alerts see the first fault.
var faultKinds = []string{FaultResources, FaultSecret, FaultDatabase, FaultRowUnreadable, FaultRecordRefused}

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
	// LocalFaults counts work the relay could not do because of its own faults, by kind
	// (Fault*).
	LocalFaults *prometheus.CounterVec
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
		LocalFaults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_relay_local_faults_total",
			Help: "Work the relay could not do because of a fault of its own (not of a receiver): the delivery waits and is retried; by kind.",
		}, []string{"kind"}),
	}
	for _, s := range []string{"succeeded", "failed", "cancelled"} {
		m.Deliveries.WithLabelValues(s)
	}
	for _, o := range []string{Outcome2xx, Outcome3xx, Outcome4xx, Outcome5xx, OutcomeTimeout, OutcomeConnectionError, OutcomeNotSent} {
		m.Attempts.WithLabelValues(o)
	}
	for _, k := range faultKinds {
		m.LocalFaults.WithLabelValues(k)
	}
	reg.MustRegister(m.EventsDispatched, m.DeliveriesCreated, m.Deliveries, m.Attempts, m.AttemptDuration, m.DeliveryLatency, m.LocalFaults)
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

// LocalFault records n units of work (deliveries, rows, statements) that a fault of the
// relay's own, of the given kind (Fault*), kept from being done.
func (m *Metrics) LocalFault(kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.LocalFaults.WithLabelValues(kind).Add(float64(n))
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
