package api_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/ids"
)

// TestBadBodiesEveryRoute sends each route that reads a body what no route accepts. Every
// answer is the JSON error of its kind, and nothing is stored.
func TestBadBodiesEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "", "https://hooks.example.com/")
	o, e := b.insertEvent(t, "signup.created", "", `{}`)
	dlv := b.ids.Format(b.insertDelivery(t, o, e, sub, "failed", 1))

	routes := []struct{ method, path string }{
		{http.MethodPost, "/v1/subscriptions"},
		{http.MethodPatch, "/v1/subscriptions/" + sub},
		{http.MethodPost, "/v1/subscriptions/" + sub + "/rotate-secret"},
		{http.MethodPost, "/v1/subscriptions/" + sub + "/test"},
		{http.MethodPost, "/v1/subscriptions/" + sub + "/replay"},
		{http.MethodPost, "/v1/deliveries/" + dlv + "/retry"},
	}
	big := `{"description": "` + strings.Repeat("x", 64<<10) + `"}`
	cases := []struct {
		name, contentType, body string
		chunked                 bool
		status                  int
		code                    string
	}{
		{"Malformed", "application/json", `{"since": `, false, 400, "invalid_json"},
		{"NotJSON", "application/json", `since=yesterday`, false, 400, "invalid_json"},
		{"InvalidUTF8Key", "application/json", "{\"\xff\": 1}", false, 400, "unknown_field"},
		{"UnknownField", "application/json", `{"evil": true}`, false, 400, "unknown_field"},
		{"TopLevelArray", "application/json", `[]`, false, 400, "invalid_json"},
		{"TopLevelNumber", "application/json", `42`, false, 400, "invalid_json"},
		{"TrailingGarbage", "application/json", `{}x`, false, 400, "invalid_json"},
		{"TooLarge", "application/json", big, false, 413, "body_too_large"},
		{"TooLargeChunked", "application/json", big, true, 413, "body_too_large"},
		{"NoContentType", "", `{}`, false, 415, "unsupported_media_type"},
		{"TextPlain", "text/plain", `{}`, false, 415, "unsupported_media_type"},
		{"Form", "application/x-www-form-urlencoded", `a=b`, false, 415, "unsupported_media_type"},
		{"UTF16", "application/json; charset=utf-16", `{}`, false, 415, "unsupported_media_type"},
	}
	before := b.snapshot(t)
	for _, rt := range routes {
		for _, c := range cases {
			res := b.rawCall(t, rt.method, rt.path, c.contentType, c.body, c.chunked)
			require.Equal(t, c.status, res.status, "%s %s %s: %s", rt.method, rt.path, c.name, res.body)
			require.Equal(t, c.code, res.code(t), "%s %s %s", rt.method, rt.path, c.name)
			require.NotContains(t, string(res.body), "goroutine", "never a stack trace")
		}
	}
	require.Equal(t, before, b.snapshot(t))
}

// TestUnknownIDsEveryRoute sends every route that takes an ID IDs that do not exist or
// cannot exist: 404 not_found every time, never 400 or 500.
func TestUnknownIDsEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subIDs := []string{"sub_00000000000000000000000000", "sub_", "nope", "SUB_00000000000000000000000000",
		"sub_0000000000000000000000000u", url.PathEscape("sub_\x00"), "%F0%28", url.PathEscape("../../etc/passwd"),
		"sub_" + strings.Repeat("0", 1000)}
	dlvIDs := []string{"dlv_zzzzzz", "dlv_0", "dlv_", "dlv_-1", "dlv_ZZ", "1", "dlv_zzzzzzzzzzzzzz", "dlv_" + strings.Repeat("1", 1000), "%F0%28"}
	eventIDs := []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid", "1", "%F0%28", strings.Repeat("a", 1000)}

	bodies := map[string]string{
		"PATCH":   `{"description": "x"}`,
		"replay":  `{"since": "2000-01-01T00:00:00Z"}`,
		"default": "",
	}
	for _, id := range subIDs {
		for _, rt := range []struct{ method, suffix, body string }{
			{http.MethodGet, "", ""},
			{http.MethodPatch, "", bodies["PATCH"]},
			{http.MethodDelete, "", ""},
			{http.MethodGet, "/secret", ""},
			{http.MethodPost, "/rotate-secret", ""},
			{http.MethodPost, "/test", ""},
			{http.MethodPost, "/replay", bodies["replay"]},
			{http.MethodGet, "/deliveries", ""},
		} {
			res := b.call(t, rt.method, "/v1/subscriptions/"+id+rt.suffix, "", rt.body)
			require.Equal(t, http.StatusNotFound, res.status, "%s %s%s: %s", rt.method, id, rt.suffix, res.body)
			require.Equal(t, "not_found", res.code(t))
		}
	}
	for _, id := range dlvIDs {
		for _, rt := range []struct{ method, suffix string }{{http.MethodGet, ""}, {http.MethodPost, "/retry"}} {
			res := b.call(t, rt.method, "/v1/deliveries/"+id+rt.suffix, "", "")
			require.Equal(t, http.StatusNotFound, res.status, "%s %s%s: %s", rt.method, id, rt.suffix, res.body)
			require.Equal(t, "not_found", res.code(t))
		}
	}
	for _, id := range eventIDs {
		res := b.call(t, http.MethodGet, "/v1/events/"+id, "", "")
		require.Equal(t, http.StatusNotFound, res.status, id)
		require.Equal(t, "not_found", res.code(t))
	}
}

func TestListDeliveriesBadQuery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "", "https://hooks.example.com/")
	path := "/v1/subscriptions/" + sub + "/deliveries?"
	for _, tc := range []struct{ query, code string }{
		{"limit=0", "invalid_limit"},
		{"limit=-5", "invalid_limit"},
		{"limit=501", "invalid_limit"},
		{"limit=1e2", "invalid_limit"},
		{"limit=%205", "invalid_limit"},
		{"limit=0x10", "invalid_limit"},
		{"limit=9223372036854775808", "invalid_limit"},
		{"limit=-9223372036854775809", "invalid_limit"},
		{"cursor=czox", "invalid_cursor"}, // a subscriptions cursor, "s:1"
		{"cursor=ZDox", "invalid_cursor"}, // "d:1": a delivery list's position is sealed
		{"cursor=ZDow", "invalid_cursor"}, // "d:0"
		{"cursor=ZDotMQ", "invalid_cursor"},
		{"cursor=ZDo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "invalid_cursor"}, // past int64
		{"cursor=%00", "invalid_cursor"},
		{"cursor=" + strings.Repeat("A", 5000), "invalid_cursor"},
		{"status=ok", "invalid_status"},
		{"status=PENDING", "invalid_status"},
	} {
		res := b.call(t, http.MethodGet, path+tc.query, "", "")
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", tc.query, res.body)
		require.Equal(t, tc.code, res.code(t), tc.query)
	}
	// A cursor past the end, or far before the start, is a valid cursor: an empty page.
	res := b.call(t, http.MethodGet, path+"cursor="+base64.RawURLEncoding.EncodeToString([]byte("d:"+b.ids.SealCursor(ids.CursorDeliveries, 1))), "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, []any{}, res.json(t)["data"])
}
