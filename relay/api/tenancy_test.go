package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
)

// objects are the IDs one owner's routes act on.
type objects struct {
	sub, delivery, event string
}

// TestTenancyEveryRoute tries every route of the API as tenant B on tenant A's objects and on
// the operator's: each answers 404 exactly as for an ID that does not exist, with or without
// an Idempotency-Key, and nothing in the database changes. Then tenant A does the same
// requests on its own objects and succeeds, which shows the 404s were not bad requests.
func TestTenancyEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)

	own := func(tenant, url string) objects {
		sub := b.createURL(t, tenant, url)
		o, e := b.insertEvent(t, "signup.created", tenant, `{"x": 1}`)
		d := b.insertDelivery(t, o, e, sub, "failed", 1)
		b.insertAttempt(t, d, 1, 500, "HTTP 500", "")
		return objects{sub, b.ids.Format(d), e}
	}
	a := own("tenant-a", "https://hooks.example.com/a")
	op := own("", "https://hooks.example.com/op")
	b.createURL(t, "tenant-b", "https://hooks.example.com/b")
	missing := objects{"sub_00000000000000000000000000", "dlv_zzzzzz", "00000000-0000-0000-0000-000000000000"}

	type request struct {
		method, pattern string
		path            func(objects) string
		body            string
		ok              int // the answer the owner gets
	}
	sub := func(suffix string) func(objects) string {
		return func(o objects) string { return "/v1/subscriptions/" + o.sub + suffix }
	}
	requests := []request{
		{http.MethodGet, "/v1/subscriptions/{id}", sub(""), "", http.StatusOK},
		{http.MethodPatch, "/v1/subscriptions/{id}", sub(""), `{"description": "mine now", "status": "active", "target_url": "https://evil.example.com/"}`, http.StatusOK},
		{http.MethodGet, "/v1/subscriptions/{id}/secret", sub("/secret"), "", http.StatusOK},
		{http.MethodPost, "/v1/subscriptions/{id}/rotate-secret", sub("/rotate-secret"), "", http.StatusOK},
		{http.MethodPost, "/v1/subscriptions/{id}/test", sub("/test"), "{}", http.StatusAccepted},
		{http.MethodPost, "/v1/subscriptions/{id}/replay", sub("/replay"), `{"since": "2000-01-01T00:00:00Z"}`, http.StatusAccepted},
		{http.MethodGet, "/v1/subscriptions/{id}/deliveries", sub("/deliveries?status=failed&limit=1"), "", http.StatusOK},
		{http.MethodGet, "/v1/deliveries/{id}", func(o objects) string { return "/v1/deliveries/" + o.delivery }, "", http.StatusOK},
		{http.MethodPost, "/v1/deliveries/{id}/retry", func(o objects) string { return "/v1/deliveries/" + o.delivery + "/retry" }, "", http.StatusAccepted},
		{http.MethodGet, "/v1/events/{event_id}", func(o objects) string { return "/v1/events/" + o.event }, "", http.StatusOK},
		{http.MethodDelete, "/v1/subscriptions/{id}", sub(""), "", http.StatusNoContent}, // last: it ends the rest
	}

	// Every route is covered, here or below (the two that act on no single object).
	covered := map[[2]string]bool{
		{http.MethodPost, "/v1/subscriptions"}: true,
		{http.MethodGet, "/v1/subscriptions"}:  true,
		{http.MethodGet, "/v1/events"}:         true,
		{http.MethodGet, "/v1/deliveries"}:     true,
		{http.MethodGet, "/v1/openapi.json"}:   true, // the same for everyone: TestOpenAPIServed
	}
	for _, r := range requests {
		covered[[2]string{r.method, r.pattern}] = true
	}
	for _, rt := range api.Routes(b.api) {
		require.True(t, covered[rt], "route %s %s is not tried by this test", rt[0], rt[1])
	}
	require.Len(t, covered, len(api.Routes(b.api)))

	before := b.snapshot(t)
	for _, r := range requests {
		for _, key := range []http.Header{nil, withKey("tenancy-" + r.pattern)} {
			if key != nil && r.method != http.MethodPost {
				continue
			}
			want := b.callWith(t, r.method, r.path(missing), "tenant-b", r.body, key)
			require.Equal(t, http.StatusNotFound, want.status, "%s %s: body %s", r.method, r.path(missing), want.body)
			for name, target := range map[string]objects{"tenant A's": a, "the operator's": op} {
				res := b.callWith(t, r.method, r.path(target), "tenant-b", r.body, key)
				require.Equal(t, http.StatusNotFound, res.status, "%s %s on %s object: %s", r.method, r.pattern, name, res.body)
				require.Equal(t, "not_found", res.code(t))
				require.Equal(t, string(want.body), string(res.body), "indistinguishable from a missing ID")
				require.NotContains(t, string(res.body), "tenant-a")
			}
		}
	}
	require.Equal(t, before, b.snapshot(t), "tenant B changed nothing")

	// Lists: tenant B sees only its own.
	res := b.call(t, http.MethodGet, "/v1/subscriptions", "tenant-b", "")
	require.Equal(t, http.StatusOK, res.status)
	data := res.json(t)["data"].([]any)
	require.Len(t, data, 1)
	require.Equal(t, "tenant-b", data[0].(map[string]any)["tenant_id"])
	ids := func(tenant, path, field string) []any {
		res := b.call(t, http.MethodGet, path, tenant, "")
		require.Equal(t, http.StatusOK, res.status, "%s as %q: %s", path, tenant, res.body)
		var out []any
		for _, item := range res.json(t)["data"].([]any) {
			out = append(out, item.(map[string]any)[field])
		}
		return out
	}
	require.Empty(t, ids("tenant-b", "/v1/events", "event_id"))
	require.Empty(t, ids("tenant-b", "/v1/deliveries", "id"))
	require.Empty(t, ids("tenant-b", "/v1/deliveries?subscription_id="+a.sub, "id"), "naming A's subscription shows nothing")
	require.Equal(t, []any{a.event}, ids("tenant-a", "/v1/events", "event_id"))
	require.Equal(t, []any{a.delivery}, ids("tenant-a", "/v1/deliveries", "id"))
	require.Equal(t, []any{op.event, a.event}, ids("", "/v1/events", "event_id"))
	require.Equal(t, []any{op.delivery, a.delivery}, ids("", "/v1/deliveries", "id"))

	// Creating what tenant A has is no duplicate for tenant B, and tells it nothing of A.
	res = b.call(t, http.MethodPost, "/v1/subscriptions", "tenant-b", `{"target_url": "https://hooks.example.com/a", "event_types": ["*"]}`)
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	require.Equal(t, "tenant-b", res.json(t)["tenant_id"])

	// Tenant A, on its own objects, gets every answer.
	for _, r := range requests {
		res := b.call(t, r.method, r.path(a), "tenant-a", r.body)
		require.Equal(t, r.ok, res.status, "%s %s: %s", r.method, r.pattern, res.body)
	}
	// And the operator reaches tenant A's (the deleted subscription's delivery stays readable).
	res = b.call(t, http.MethodGet, "/v1/deliveries/"+a.delivery, "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/events/"+a.event, "", "").status)
	require.True(t, strings.HasPrefix(a.sub, "sub_"))
}
