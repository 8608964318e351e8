package main

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// scrape reads the relay's /metrics and answers the value of name with the given labels
// (a counter's or gauge's value, a histogram's sample count).
func scrape(t *testing.T, p *relayProcess) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(p.opsURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := families[name]
	require.True(t, ok, "metric %s missing", name)
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	require.FailNowf(t, "no such series", "%s %v", name, labels)
	return 0
}

func TestMetricsFollowFailuresAndSuccesses(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	var calls atomic.Int32
	rc := relaytest.NewReceiver(t)
	rc.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=50ms")

	before := scrape(t, p)
	require.Zero(t, metricValue(t, before, "outbox_relay_attempts_total", "outcome", "5xx"))
	require.Equal(t, 1.0, metricValue(t, before, "outbox_relay_subscriptions", "status", "active"))
	require.Equal(t, 1.0, metricValue(t, before, "outbox_relay_database_up"))

	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`) == 1
	}, "delivery did not succeed")

	after := scrape(t, p)
	require.Equal(t, 1.0, metricValue(t, after, "outbox_relay_events_dispatched_total"))
	require.Equal(t, 1.0, metricValue(t, after, "outbox_relay_deliveries_created_total"))
	require.Equal(t, 1.0, metricValue(t, after, "outbox_relay_attempts_total", "outcome", "5xx"))
	require.Equal(t, 1.0, metricValue(t, after, "outbox_relay_attempts_total", "outcome", "2xx"))
	require.Zero(t, metricValue(t, after, "outbox_relay_attempts_total", "outcome", "timeout"))
	require.Equal(t, 2.0, metricValue(t, after, "outbox_relay_attempt_duration_seconds"))
	require.Equal(t, 1.0, metricValue(t, after, "outbox_relay_deliveries_total", "status", "succeeded"))
	require.Zero(t, metricValue(t, after, "outbox_relay_deliveries_total", "status", "failed"))
	require.Equal(t, 1.0, metricValue(t, after, "outbox_relay_delivery_latency_seconds"))
	require.Zero(t, metricValue(t, after, "outbox_relay_outbox_backlog"))
	require.Zero(t, metricValue(t, after, "outbox_relay_outbox_oldest_age_seconds"))
	require.Zero(t, metricValue(t, after, "outbox_relay_deliveries_due"))
	require.Zero(t, metricValue(t, after, "outbox_relay_in_flight_requests"))

	// A DELETE that cancels a pending delivery counts it as cancelled.
	paused := addSubscription(t, db, rc.URL+"/paused")
	_, err := db.Exec(`UPDATE relay.subscriptions SET status = 'paused' WHERE id = $1`, paused)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, next_attempt_at)
		SELECT event_id, id, $1, now() FROM relay.outbox LIMIT 1`, paused)
	require.NoError(t, err)
	status, _ := p.call(t, http.MethodDelete, "/v1/subscriptions/"+paused, nil)
	require.Equal(t, http.StatusNoContent, status)
	require.Equal(t, 1.0, metricValue(t, scrape(t, p), "outbox_relay_deliveries_total", "status", "cancelled"))

	require.Equal(t, 0, p.stop(t))
}

func TestDashboardQueriesOnlyExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("examples/grafana/outbox-relay-dashboard.json")
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(raw, &dash), "the dashboard is valid JSON")

	_, dsn := relaytest.Open(t, relaytest.Migrated)
	p := startRelay(t, dsn)
	families := scrape(t, p)
	require.Equal(t, 0, p.stop(t))

	names := regexp.MustCompile(`outbox_relay_[a-z_]+`).FindAllString(string(raw), -1)
	require.NotEmpty(t, names)
	for _, n := range names {
		base := strings.TrimSuffix(n, "_bucket")
		_, ok := families[base]
		require.True(t, ok, "the dashboard queries %s, which the relay does not export", n)
	}
}
