package api_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pages follows next_cursor through path (which has a query string) and answers every item.
func (b *bundle) pages(t *testing.T, path, tenant string) []map[string]any {
	t.Helper()
	var out []map[string]any
	next := ""
	for range 100 {
		p := path
		if next != "" {
			p += "&cursor=" + url.QueryEscape(next)
		}
		res := b.call(t, http.MethodGet, p, tenant, "")
		require.Equal(t, http.StatusOK, res.status, "%s: %s", p, res.body)
		body := res.json(t)
		for _, item := range body["data"].([]any) {
			out = append(out, item.(map[string]any))
		}
		if body["next_cursor"] == nil {
			return out
		}
		next = body["next_cursor"].(string)
	}
	t.Fatal("more than 100 pages")
	return nil
}

func field(items []map[string]any, name string) []any {
	out := make([]any, 0, len(items))
	for _, it := range items {
		out = append(out, it[name])
	}
	return out
}

func TestListEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "t1", "https://hooks.example.com/a")
	other := b.createURL(t, "t1", "https://hooks.example.com/b")
	var events []string // oldest first
	for i := range 5 {
		typ := "signup.created"
		if i%2 == 1 {
			typ = "signup.deleted"
		}
		o, e := b.insertEvent(t, typ, "t1", `{"n": 1}`)
		b.insertDelivery(t, o, e, sub, "succeeded", 1)
		if i == 0 {
			b.insertDelivery(t, o, e, other, "failed", 1)
		}
		events = append(events, e)
	}
	_, foreign := b.insertEvent(t, "signup.created", "t2", `{}`)
	_, err := b.db.Exec(`UPDATE relay.outbox SET created_at = '2026-01-01T00:00:00Z' WHERE event_id = $1`, events[0])
	require.NoError(t, err)

	items := b.pages(t, "/v1/events?limit=2", "t1")
	require.Equal(t, []any{events[4], events[3], events[2], events[1], events[0]}, field(items, "event_id"), "newest first, every page")
	first := items[4]
	require.Equal(t, "signup.created", first["event_type"])
	require.Equal(t, "t1", first["tenant_id"])
	require.Equal(t, map[string]any{"n": 1.0}, first["payload"])
	require.Equal(t, "2026-01-01T00:00:00Z", first["created_at"])
	require.Equal(t, 2.0, first["delivery_count"])
	require.Contains(t, first, "ordering_key")
	require.Len(t, first, 7)
	require.Equal(t, 1.0, items[0]["delivery_count"])

	require.Equal(t, []any{events[3], events[1]}, field(b.pages(t, "/v1/events?event_type=signup.deleted", "t1"), "event_id"))
	require.Equal(t, []any{events[0]}, field(b.pages(t, "/v1/events?until=2026-01-02T00:00:00Z", "t1"), "event_id"))
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	require.Len(t, b.pages(t, "/v1/events?since="+since, "t1"), 4)
	require.Equal(t, []any{foreign}, field(b.pages(t, "/v1/events?event_type=signup.created&since="+url.QueryEscape(since)+"&limit=1", "t2"), "event_id"))
	require.Len(t, b.pages(t, "/v1/events?limit=500", ""), 6, "the operator sees every tenant's")

	for _, tc := range []struct{ query, code string }{
		{"since=yesterday", "invalid_since"},
		{"since=2026-01-01", "invalid_since"},
		{"until=2026-13-01T00:00:00Z", "invalid_until"},
		{"event_type=signup.*", "invalid_event_type"},
		{"event_type=a..b", "invalid_event_type"},
		{"limit=0", "invalid_limit"},
		{"cursor=czox", "invalid_cursor"},
		{"cursor=ZTox", "invalid_cursor"}, // "e:1": positions are sealed
	} {
		res := b.call(t, http.MethodGet, "/v1/events?"+tc.query, "t1", "")
		require.Equal(t, http.StatusUnprocessableEntity, res.status, tc.query)
		require.Equal(t, tc.code, res.code(t), tc.query)
	}
	// A deliveries cursor is not an events cursor.
	res := b.call(t, http.MethodGet, "/v1/deliveries?limit=1", "t1", "")
	cursor := res.json(t)["next_cursor"].(string)
	res = b.call(t, http.MethodGet, "/v1/events?cursor="+url.QueryEscape(cursor), "t1", "")
	require.Equal(t, http.StatusUnprocessableEntity, res.status)
	require.Equal(t, "invalid_cursor", res.code(t))
}

func TestListDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subA := b.createURL(t, "t1", "https://hooks.example.com/a")
	subB := b.createURL(t, "t1", "https://hooks.example.com/b")
	foreignSub := b.createURL(t, "t2", "https://hooks.example.com/c")
	var rows []int64 // oldest first
	statuses := []string{"succeeded", "failed", "pending", "cancelled", "failed", "succeeded"}
	for i, status := range statuses {
		typ := "signup.created"
		if i >= 4 {
			typ = "order.paid"
		}
		sub := subA
		if i%2 == 1 {
			sub = subB
		}
		o, e := b.insertEvent(t, typ, "t1", `{}`)
		rows = append(rows, b.insertDelivery(t, o, e, sub, status, 2))
	}
	b.insertAttempt(t, rows[1], 1, 0, "dial tcp: connection refused", "")
	b.insertAttempt(t, rows[1], 2, 503, "HTTP 503", "busy")
	o, e := b.insertEvent(t, "signup.created", "t2", `{}`)
	foreign := b.insertDelivery(t, o, e, foreignSub, "failed", 1)
	id := func(i int) any { return b.ids.Format(rows[i]) }

	items := b.pages(t, "/v1/deliveries?limit=4", "t1")
	require.Equal(t, []any{id(5), id(4), id(3), id(2), id(1), id(0)}, field(items, "id"), "newest first, every page")
	d := items[4]
	require.Equal(t, subB, d["subscription_id"])
	require.Equal(t, "failed", d["status"])
	require.Equal(t, "signup.created", d["event_type"])
	require.Equal(t, 2.0, d["attempt_count"])
	require.NotContains(t, d, "attempts")
	require.Len(t, d, 10)
	last := d["last_attempt"].(map[string]any)
	require.Equal(t, 2.0, last["attempt"])
	require.Equal(t, 503.0, last["status_code"])
	require.Equal(t, "HTTP 503", last["error"])
	require.Equal(t, float64(123), last["duration_ms"])
	require.NotContains(t, last, "response_body")
	require.Nil(t, items[0]["last_attempt"], "no attempt yet")
	require.Contains(t, items[0], "last_attempt")

	require.Equal(t, []any{id(4), id(1)}, field(b.pages(t, "/v1/deliveries?status=failed", "t1"), "id"))
	require.Equal(t, []any{id(5), id(3), id(1)}, field(b.pages(t, "/v1/deliveries?subscription_id="+subB, "t1"), "id"))
	require.Equal(t, []any{id(5), id(4)}, field(b.pages(t, "/v1/deliveries?event_type=order.paid", "t1"), "id"))
	require.Equal(t, []any{id(4)}, field(b.pages(t, "/v1/deliveries?event_type=order.paid&status=failed&subscription_id="+subA, "t1"), "id"))
	_, err := b.db.Exec(`UPDATE relay.deliveries SET created_at = '2026-01-01T00:00:00Z' WHERE id <= $1`, rows[2])
	require.NoError(t, err)
	require.Equal(t, []any{id(5), id(4), id(3)}, field(b.pages(t, "/v1/deliveries?since=2026-01-01T00:00:01Z", "t1"), "id"))
	require.Equal(t, []any{b.ids.Format(foreign)}, field(b.pages(t, "/v1/deliveries?status=failed", "t2"), "id"))
	require.Len(t, b.pages(t, "/v1/deliveries?status=failed", ""), 3, "the operator sees every tenant's")
	require.Empty(t, b.pages(t, "/v1/deliveries?subscription_id="+foreignSub, "t1"))

	for _, tc := range []struct{ query, code string }{
		{"status=ok", "invalid_status"},
		{"status=FAILED", "invalid_status"},
		{"subscription_id=sub_1", "invalid_subscription_id"},
		{"subscription_id=" + b.ids.Format(rows[0]), "invalid_subscription_id"},
		{"event_type=signup.*", "invalid_event_type"},
		{"since=2026-01-01+00:00:00", "invalid_since"},
		{"since=" + url.QueryEscape("2026-01-01T00:00:00+25:00"), "invalid_since"},
		{"limit=501", "invalid_limit"},
		{"cursor=ZDox", "invalid_cursor"},
	} {
		res := b.call(t, http.MethodGet, "/v1/deliveries?"+tc.query, "t1", "")
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", tc.query, res.body)
		require.Equal(t, tc.code, res.code(t), tc.query)
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the repository's openapi.json byte for
// byte, to the operator and to tenants alike, only with the token, with an ETag that a
// conditional request turns into 304.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want, err := os.ReadFile("openapi.json")
	require.NoError(t, err)

	res := b.call(t, http.MethodGet, "/v1/openapi.json", "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, string(want), string(res.body))
	require.Equal(t, "application/json", res.header.Get("Content-Type"))
	etag := res.header.Get("ETag")
	require.Regexp(t, `^"[0-9a-f]{32}"$`, etag)

	tenant := b.call(t, http.MethodGet, "/v1/openapi.json", "tenant-a", "")
	require.Equal(t, http.StatusOK, tenant.status)
	require.Equal(t, string(want), string(tenant.body), "not tenant-scoped")
	require.Equal(t, etag, tenant.header.Get("ETag"))

	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/v1/openapi.json", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("If-None-Match", inm)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusNotModified, resp.StatusCode, inm)
		require.Empty(t, body)
		require.Equal(t, etag, resp.Header.Get("ETag"))
	}
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/v1/openapi.json", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("If-None-Match", `"stale"`)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	for _, auth := range []string{"", "Bearer wrong"} {
		req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/v1/openapi.json", nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.NotContains(t, string(body), "openapi")
	}
	res = b.call(t, http.MethodPost, "/v1/openapi.json", "", "{}")
	require.Equal(t, http.StatusMethodNotAllowed, res.status)
}
