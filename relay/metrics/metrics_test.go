package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/metrics"
)

func TestDBCollectorReportsBacklogAndSubscriptions(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	_, err := db.Exec(`
		INSERT INTO relay.outbox (event_type, payload, created_at) VALUES ('a.b', '{}', now() - interval '90 seconds'), ('a.b', '{}', now());
		INSERT INTO relay.outbox (event_type, payload, dispatched_at) VALUES ('a.b', '{}', now());
		INSERT INTO relay.subscriptions (id, target_url, event_types, secret, status) VALUES
			('sub_1', 'https://example.com/1', '{*}', 'whsec_x', 'active'),
			('sub_2', 'https://example.com/2', '{*}', 'whsec_x', 'disabled');
		INSERT INTO relay.subscriptions (id, target_url, event_types, secret, deleted_at) VALUES ('sub_3', 'https://example.com/3', '{*}', 'whsec_x', now());
		INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, next_attempt_at)
		SELECT event_id, id, 'sub_1', now() - interval '1 second' FROM relay.outbox WHERE dispatched_at IS NOT NULL;`)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewDBCollector(db, "relay", zerolog.Nop()))
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	require.Equal(t, 2.0, got["outbox_relay_outbox_backlog"])
	require.InDelta(t, 90, got["outbox_relay_outbox_oldest_age_seconds"], 5)
	require.Equal(t, 1.0, got["outbox_relay_deliveries_due"])
	require.Equal(t, 1.0, got["outbox_relay_deliveries_pending"])
	require.Equal(t, 1.0, got["outbox_relay_subscriptions/active"])
	require.Equal(t, 1.0, got["outbox_relay_subscriptions/disabled"], "deleted subscriptions are not counted")
	require.Equal(t, 0.0, got["outbox_relay_subscriptions/paused"])
	require.Equal(t, 1.0, got["outbox_relay_database_up"])
}

func TestOutcomeOf(t *testing.T) {
	cases := []struct {
		status        int
		timeout, sent bool
		want          string
	}{
		{204, false, true, "2xx"}, {302, false, true, "3xx"}, {410, false, true, "4xx"}, {503, false, true, "5xx"},
		{0, true, true, "timeout"}, {0, false, true, "connection_error"}, {0, false, false, "not_sent"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, metrics.OutcomeOf(c.status, c.timeout, c.sent), "%+v", c)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Dispatched(1, 2)
	m.Attempt("2xx", 0)
	m.Finished("succeeded", 1)
	m.Delivered(0)

	reg := prometheus.NewRegistry()
	real := metrics.New(reg)
	real.Attempt("5xx", 0)
	require.Equal(t, 1.0, testutil.ToFloat64(real.Attempts.WithLabelValues("5xx")))
}
