package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/proxy"
)

// TestBehindTheRelay runs the toy application behind the relay's proxy, as the README does,
// with a stand-in for the management API that answers the tenant it was given.
func TestBehindTheRelay(t *testing.T) {
	app := httptest.NewServer(newMux())
	t.Cleanup(app.Close)
	upstream, err := url.Parse(app.URL)
	require.NoError(t, err)
	h, err := proxy.New(proxy.Config{
		Upstream: upstream,
		AuthURL:  app.URL + "/auth",
		API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := api.CallerFromContext(r.Context())
			_ = json.NewEncoder(w).Encode(map[string]any{"tenant": c.TenantID, "operator": c.Operator, "path": r.URL.Path})
		}),
	})
	require.NoError(t, err)
	relay := httptest.NewServer(h)
	t.Cleanup(relay.Close)

	get := func(path string, header http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, relay.URL+path, nil)
		require.NoError(t, err)
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}

	for _, tc := range []struct {
		header http.Header
		tenant string // "" for 401
	}{
		{http.Header{"Authorization": {"Bearer key_A"}}, "tenant_a"},
		{http.Header{"Authorization": {"Bearer key_B"}, "X-Tenant-Id": {"tenant_a"}}, "tenant_b"},
		{http.Header{"Cookie": {"session=sess_A"}}, "tenant_a"},
		{http.Header{"Authorization": {"Bearer key_C"}}, ""},
		{http.Header{"Cookie": {"session=nope"}}, ""},
		{http.Header{}, ""},
	} {
		status, body := get("/webhooks/v1/subscriptions", tc.header)
		if tc.tenant == "" {
			require.Equal(t, http.StatusUnauthorized, status, "%v: %s", tc.header, body)
			continue
		}
		require.Equal(t, http.StatusOK, status, "%v: %s", tc.header, body)
		require.JSONEq(t, `{"tenant": "`+tc.tenant+`", "operator": false, "path": "/v1/subscriptions"}`, body)
	}

	status, body := get("/hello?x=1", http.Header{"X-Forwarded-Proto": {"https"}})
	require.Equal(t, http.StatusOK, status)
	require.True(t, strings.HasPrefix(body, "hello from the application"), body)
	require.Contains(t, body, "GET /hello?x=1")
	require.Contains(t, body, "X-Forwarded-Proto: https")
	require.Contains(t, body, "X-Forwarded-Host:  "+strings.TrimPrefix(relay.URL, "http://"))
}
