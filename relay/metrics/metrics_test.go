package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/metrics"
)

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
