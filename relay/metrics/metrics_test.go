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
	m.LocalFault(metrics.FaultDatabase, 1)

	reg := prometheus.NewRegistry()
	real := metrics.New(reg)
	real.Attempt("5xx", 0)
	require.Equal(t, 1.0, testutil.ToFloat64(real.Attempts.WithLabelValues("5xx")))
}

func TestLocalFaultsCountByKind(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	// Every kind is there at 0 before the first fault, so that a rate() or an alert sees it.
	families, err := reg.Gather()
	require.NoError(t, err)
	var help string
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "outbox_relay_local_faults_total" {
			continue
		}
		help = f.GetHelp()
		for _, s := range f.GetMetric() {
			require.Len(t, s.GetLabel(), 1)
			require.Equal(t, "kind", s.GetLabel()[0].GetName())
			got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{"resources": 0, "secret": 0, "database": 0, "row_unreadable": 0, "record_refused": 0}, got)
	require.Equal(t, "Work the relay could not do because of a fault of its own (not of a receiver): the delivery waits and is retried; by kind.", help)

	m.LocalFault(metrics.FaultDatabase, 3)
	m.LocalFault(metrics.FaultSecret, 1)
	m.LocalFault(metrics.FaultResources, 0)
	require.Equal(t, 3.0, testutil.ToFloat64(m.LocalFaults.WithLabelValues(metrics.FaultDatabase)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.LocalFaults.WithLabelValues(metrics.FaultSecret)))
	require.Zero(t, testutil.ToFloat64(m.LocalFaults.WithLabelValues(metrics.FaultResources)))
	require.Zero(t, testutil.ToFloat64(m.LocalFaults.WithLabelValues(metrics.FaultRowUnreadable)))
	require.Zero(t, testutil.ToFloat64(m.LocalFaults.WithLabelValues(metrics.FaultRecordRefused)))
}
