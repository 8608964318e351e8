package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// fakeCollector is an OTLP/HTTP trace endpoint that keeps the spans it receives.
type fakeCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans map[string]string // trace id (hex) -> span name
}

func newFakeCollector(t *testing.T) *fakeCollector {
	c := &fakeCollector{spans: map[string]string{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.URL.Path != "/v1/traces" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans[hex.EncodeToString(s.GetTraceId())] = s.GetName()
				}
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *fakeCollector) span(traceID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.spans[traceID]
	return name, ok
}

func TestTracingSendsTraceparentAndExportsASpanPerAttempt(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	collector := newFakeCollector(t)
	rc := newCountingReceiver(t, 0)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn, "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100")

	insertEvents(t, db, 1, 1)
	req := rc.WaitFor(t, 1, 15*time.Second)[0]
	tp := req.Header.Get("traceparent")
	parts := strings.Split(tp, "-")
	require.Len(t, parts, 4, "traceparent %q", tp)
	require.Equal(t, "00", parts[0])
	relaytest.Eventually(t, 15*time.Second, func() bool { _, ok := collector.span(parts[1]); return ok },
		"the attempt's span (trace %s) never reached the collector", parts[1])
	name, _ := collector.span(parts[1])
	require.Equal(t, "webhook signup.created", name)
	require.Equal(t, 0, p.stop(t))
}

func TestTracingOffByDefault(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 0)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn)
	insertEvents(t, db, 1, 1)
	req := rc.WaitFor(t, 1, 15*time.Second)[0]
	require.Empty(t, req.Header.Get("traceparent"))
	require.Equal(t, 0, p.stop(t))
}
