package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// TestReverseProxyMode runs the binary in front of an application with its own auth
// endpoint: customers manage their own subscriptions under /webhooks with their own keys,
// everything else reaches the application, and the operator API sits on the admin port.
func TestReverseProxyMode(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	tenants := map[string]string{"Bearer key_a": "tenant_a", "Bearer key_b": "tenant_b"}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth" {
			tenant, ok := tenants[r.Header.Get("Authorization")]
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("X-Tenant-ID", tenant)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("app saw " + r.Method + " " + r.URL.RequestURI() + " " + string(body) + " xff=" + r.Header.Get("X-Forwarded-For")))
	}))
	t.Cleanup(app.Close)
	rc := newCountingReceiver(t, 0)
	admin := "http://" + freeAddr(t)
	p := startRelay(t, dsn, "RELAY_UPSTREAM_URL="+app.URL, "RELAY_AUTH_URL="+app.URL+"/auth",
		"RELAY_ADMIN_ADDR="+strings.TrimPrefix(admin, "http://"))

	call := func(base, method, path, auth string, body any) (int, map[string]any) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, rd)
		require.NoError(t, err)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if base == p.apiURL {
			req.Header.Set("X-Tenant-ID", "tenant_b") // ignored on the public port
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}

	// Tenant A creates a subscription through the application's own host.
	status, sub := call(p.apiURL, http.MethodPost, "/webhooks/v1/subscriptions", "Bearer key_a",
		map[string]any{"target_url": rc.URL + "/a", "event_types": []string{"signup.*"}})
	require.Equal(t, http.StatusCreated, status, "%v", sub)
	require.Equal(t, "tenant_a", sub["tenant_id"], "the tenant comes from forward auth, not the caller's header")
	id := sub["id"].(string)

	// Tenant B sees nothing of it.
	status, _ = call(p.apiURL, http.MethodGet, "/webhooks/v1/subscriptions/"+id, "Bearer key_b", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _ = call(p.apiURL, http.MethodDelete, "/webhooks/v1/subscriptions/"+id, "Bearer key_b", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, list := call(p.apiURL, http.MethodGet, "/webhooks/v1/subscriptions", "Bearer key_b", nil)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, list["data"])

	// Unknown credentials and the operator token are refused on the public port.
	status, body := call(p.apiURL, http.MethodGet, "/webhooks/v1/subscriptions", "Bearer nope", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "unauthorized", body["error"].(map[string]any)["code"])
	status, _ = call(p.apiURL, http.MethodGet, "/webhooks/v1/subscriptions", "Bearer "+p.token, nil)
	require.Equal(t, http.StatusUnauthorized, status)

	// The operator API lives on the admin port and sees everything.
	status, list = call(admin, http.MethodGet, "/v1/subscriptions", "Bearer "+p.token, nil)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, list["data"], 1)

	// Everything else reaches the application unchanged.
	req, err := http.NewRequest(http.MethodPost, p.apiURL+"/signups?ref=x", strings.NewReader("hello"))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "app saw POST /signups?ref=x hello xff=127.0.0.1", string(got))
	status, _ = call(p.apiURL, http.MethodGet, "/webhooksfoo", "", nil)
	require.Equal(t, http.StatusOK, status, "/webhooksfoo is the application's, not the relay's")

	// Tenant A's events reach A's subscription; B's do not.
	_, err = db.Exec(`INSERT INTO relay.outbox (event_type, tenant_id, payload) VALUES ('signup.created', 'tenant_a', '{}'), ('signup.created', 'tenant_b', '{}')`)
	require.NoError(t, err)
	rc.WaitFor(t, 1, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, rc.Requests(), 1)
	require.Equal(t, 0, p.stop(t))
}
