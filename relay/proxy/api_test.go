package proxy_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// TestTenantIsolationWithRealAPI runs the real management API behind the proxy: two
// customers of the application, each with their own credential, see only their own
// subscriptions, whatever X-Tenant-ID they send.
func TestTenantIsolationWithRealAPI(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	a, err := api.New(api.Config{
		DB:          db,
		DeliveryIDs: relaytest.DeliveryIDs(t, db),
		Targets:     targets.Policy{AllowHTTP: true, AllowPrivate: true},
		Logger:      zerolog.New(zerolog.NewTestWriter(t)),
	})
	require.NoError(t, err)
	b := setup(t, env{api: a.Handler()})

	as := func(key, tenantHeader, method, path, body string) response {
		t.Helper()
		h := http.Header{"Authorization": {"Bearer " + key}}
		if body != "" {
			h.Set("Content-Type", "application/json")
		}
		if tenantHeader != "" {
			h.Set("X-Tenant-ID", tenantHeader)
		}
		return b.do(t, method, path, h, body)
	}

	// Tenant A creates a subscription; claiming to be tenant B does not change whose it is.
	r := as("key_A", "tenant_b", http.MethodPost, "/webhooks/v1/subscriptions",
		`{"target_url": "http://127.0.0.1:9/hook", "event_types": ["signup.*"]}`)
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
	var sub struct {
		ID       string `json:"id"`
		TenantID string `json:"tenant_id"`
		Secret   string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal(r.body, &sub))
	require.Equal(t, "tenant_a", sub.TenantID)
	require.NotEmpty(t, sub.Secret)
	subPath := "/webhooks/v1/subscriptions/" + sub.ID

	require.Equal(t, http.StatusOK, as("key_A", "", http.MethodGet, subPath, "").status)
	var list struct {
		Data []map[string]any `json:"data"`
	}
	r = as("key_A", "", http.MethodGet, "/webhooks/v1/subscriptions", "")
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.NoError(t, json.Unmarshal(r.body, &list))
	require.Len(t, list.Data, 1)

	// Tenant B, with its own credential, reaches none of it, even naming tenant A.
	for _, tenantHeader := range []string{"", "tenant_a"} {
		for _, rt := range []struct{ method, path, body string }{
			{http.MethodGet, subPath, ""},
			{http.MethodGet, subPath + "/secret", ""},
			{http.MethodGet, subPath + "/deliveries", ""},
			{http.MethodPatch, subPath, `{"description": "mine now"}`},
			{http.MethodPost, subPath + "/test", ""},
			{http.MethodPost, subPath + "/replay", `{"since": "2020-01-01T00:00:00Z"}`},
			{http.MethodPost, subPath + "/rotate-secret", ""},
			{http.MethodDelete, subPath, ""},
		} {
			r := as("key_B", tenantHeader, rt.method, rt.path, rt.body)
			require.Equal(t, http.StatusNotFound, r.status, "%s %s as B (X-Tenant-ID %q): %s", rt.method, rt.path, tenantHeader, r.body)
			require.Equal(t, "not_found", r.errorCode(t))
		}
		r := as("key_B", tenantHeader, http.MethodGet, "/webhooks/v1/subscriptions", "")
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		require.NoError(t, json.Unmarshal(r.body, &list))
		require.Empty(t, list.Data, "B's list")
	}

	// Nothing B did changed A's subscription.
	r = as("key_A", "", http.MethodGet, subPath, "")
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var got map[string]any
	require.NoError(t, json.Unmarshal(r.body, &got))
	require.Empty(t, got["description"])
	require.Equal(t, "active", got["status"])

	// Without credentials, or with refused ones, the API answers 401 in its own shape.
	for _, h := range []http.Header{{}, {"Authorization": {"Bearer nobody"}}, {"X-Tenant-Id": {"tenant_a"}}} {
		r := b.do(t, http.MethodGet, "/webhooks/v1/subscriptions", h, "")
		require.Equal(t, http.StatusUnauthorized, r.status, "body: %s", r.body)
		require.Equal(t, "unauthorized", r.errorCode(t))
	}

	// A's own actions work through the prefix.
	require.Equal(t, http.StatusAccepted, as("key_A", "", http.MethodPost, subPath+"/test", "").status)
	require.Equal(t, http.StatusNoContent, as("key_A", "", http.MethodDelete, subPath, "").status)
	require.Equal(t, http.StatusNotFound, as("key_A", "", http.MethodGet, subPath, "").status)
}
