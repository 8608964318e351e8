package api_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/targets"
)

func TestCreateSubscriptionValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)

	valid := func(extra string) string {
		return `{"target_url": "https://hooks.example.com/in", "event_types": ["signup.created"]` + extra + `}`
	}
	deep := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)

	tests := []struct {
		name   string
		body   string
		status int
		code   string
		inMsg  string // substring of the message, optional
	}{
		// 400: not a usable JSON object.
		{"Empty", "", 400, "invalid_json", "empty"},
		{"Spaces", "   ", 400, "invalid_json", "empty"},
		{"Malformed", `{"target_url": `, 400, "invalid_json", ""},
		{"NotJSON", `target_url=x`, 400, "invalid_json", ""},
		{"TrailingData", valid("") + `{}`, 400, "invalid_json", "after"},
		{"TrailingGarbage", valid("") + `x`, 400, "invalid_json", "after"},
		{"Array", `[]`, 400, "invalid_json", "object"},
		{"Null", `null`, 400, "invalid_json", "object"},
		{"String", `"x"`, 400, "invalid_json", "object"},
		{"UnknownField", valid(`, "signing_secret": "whsec_x"`), 400, "unknown_field", `"signing_secret"`},
		{"FieldWrongCase", `{"Target_URL": "https://hooks.example.com/", "event_types": ["*"]}`, 400, "unknown_field", "Target_URL"},
		{"DuplicateField", `{"target_url": "https://a.example.com/", "target_url": "https://b.example.com/", "event_types": ["*"]}`, 400, "invalid_json", "more than once"},
		{"TargetURLNumber", `{"target_url": 42, "event_types": ["*"]}`, 400, "invalid_json", `"target_url"`},
		{"EventTypesString", `{"target_url": "https://hooks.example.com/", "event_types": "signup.created"}`, 400, "invalid_json", `"event_types"`},
		{"EventTypesNumbers", `{"target_url": "https://hooks.example.com/", "event_types": [1]}`, 400, "invalid_json", `"event_types"`},
		{"EventTypeArray", `{"target_url": "https://hooks.example.com/", "event_type": ["a"]}`, 400, "invalid_json", `"event_type"`},
		{"OrderedString", valid(`, "ordered": "yes"`), 400, "invalid_json", `"ordered"`},
		{"DescriptionNumber", valid(`, "description": 1`), 400, "invalid_json", `"description"`},
		{"HeadersArray", valid(`, "headers": []`), 400, "invalid_json", `"headers"`},
		{"HeaderValueNumber", valid(`, "headers": {"X-A": 1}`), 400, "invalid_json", `"headers"`},
		{"FilterArray", valid(`, "filter": [1]`), 400, "invalid_json", `"filter"`},
		{"FilterString", valid(`, "filter": "x"`), 400, "invalid_json", `"filter"`},
		{"MetadataString", valid(`, "metadata": "x"`), 400, "invalid_json", `"metadata"`},

		// 422 invalid_target_url.
		{"TargetMissing", `{"event_types": ["*"]}`, 422, "invalid_target_url", "required"},
		{"TargetNull", `{"target_url": null, "event_types": ["*"]}`, 422, "invalid_target_url", "required"},
		{"TargetEmpty", `{"target_url": "", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetRelative", `{"target_url": "/hook", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetFTP", `{"target_url": "ftp://hooks.example.com/", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetHTTP", `{"target_url": "http://hooks.example.com/", "event_types": ["*"]}`, 422, "invalid_target_url", "https"},
		{"TargetUserInfo", `{"target_url": "https://u:p@hooks.example.com/", "event_types": ["*"]}`, 422, "invalid_target_url", "user info"},
		{"TargetTooLong", `{"target_url": "https://hooks.example.com/` + strings.Repeat("a", 2048) + `", "event_types": ["*"]}`, 422, "invalid_target_url", "2048"},
		{"TargetLocalhost", `{"target_url": "https://localhost/", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetUnspecified", `{"target_url": "https://0.0.0.0/", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetLoopback6", `{"target_url": "https://[::1]/", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetMetadata", `{"target_url": "https://169.254.169.254/", "event_types": ["*"]}`, 422, "invalid_target_url", ""},
		{"TargetResolvesPrivate", `{"target_url": "https://internal.example.com/", "event_types": ["*"]}`, 422, "invalid_target_url", "resolves"},
		{"TargetResolvesMapped", `{"target_url": "https://rebind.example.com/", "event_types": ["*"]}`, 422, "invalid_target_url", "resolves"},
		{"TargetDoesNotResolve", `{"target_url": "https://nowhere.invalid/", "event_types": ["*"]}`, 422, "invalid_target_url", "does not resolve"},
		{"TargetNUL", `{"target_url": "https://hooks.example.com/\u0000", "event_types": ["*"]}`, 422, "invalid_target_url", ""},

		// 422 invalid_event_types.
		{"EventTypesMissing", `{"target_url": "https://hooks.example.com/"}`, 422, "invalid_event_types", "required"},
		{"EventTypesNull", `{"target_url": "https://hooks.example.com/", "event_types": null}`, 422, "invalid_event_types", "required"},
		{"EventTypesEmpty", `{"target_url": "https://hooks.example.com/", "event_types": []}`, 422, "invalid_event_types", "empty"},
		{"EventTypesBoth", `{"target_url": "https://hooks.example.com/", "event_types": ["a"], "event_type": "b"}`, 422, "invalid_event_types", "not both"},
		{"EventTypeEmpty", `{"target_url": "https://hooks.example.com/", "event_type": ""}`, 422, "invalid_event_types", ""},
		{"EventTypesNullEntry", `{"target_url": "https://hooks.example.com/", "event_types": [null]}`, 422, "invalid_event_types", ""},
		{"EventTypeSpace", `{"target_url": "https://hooks.example.com/", "event_types": ["signup created"]}`, 422, "invalid_event_types", "signup created"},
		{"EventTypeSuffixWildcard", `{"target_url": "https://hooks.example.com/", "event_types": ["*.created"]}`, 422, "invalid_event_types", ""},
		{"EventTypeBareWildcardSuffix", `{"target_url": "https://hooks.example.com/", "event_types": ["signup*"]}`, 422, "invalid_event_types", ""},
		{"EventTypeDoubleWildcard", `{"target_url": "https://hooks.example.com/", "event_types": ["signup.*.*"]}`, 422, "invalid_event_types", ""},
		{"EventTypeTrailingDot", `{"target_url": "https://hooks.example.com/", "event_types": ["signup."]}`, 422, "invalid_event_types", ""},
		{"EventTypeTooLong", `{"target_url": "https://hooks.example.com/", "event_types": ["` + strings.Repeat("a", 256) + `"]}`, 422, "invalid_event_types", ""},
		{"EventTypesTooMany", `{"target_url": "https://hooks.example.com/", "event_types": [` + strings.TrimSuffix(strings.Repeat(`"a",`, 101), ",") + `]}`, 422, "invalid_event_types", "limit"},

		// 422 invalid_headers.
		{"HeaderContentType", valid(`, "headers": {"content-TYPE": "text/plain"}`), 422, "invalid_headers", "cannot be overridden"},
		{"HeaderUserAgent", valid(`, "headers": {"User-Agent": "x"}`), 422, "invalid_headers", ""},
		{"HeaderWebhookID", valid(`, "headers": {"Webhook-Id": "x"}`), 422, "invalid_headers", ""},
		{"HeaderWebhookTimestamp", valid(`, "headers": {"WEBHOOK-TIMESTAMP": "x"}`), 422, "invalid_headers", ""},
		{"HeaderWebhookSignature", valid(`, "headers": {"webhook-signature": "x"}`), 422, "invalid_headers", ""},
		{"HeaderXWebhookSignature", valid(`, "headers": {"x-webhook-signature": "x"}`), 422, "invalid_headers", ""},
		{"HeaderXWebhookEvent", valid(`, "headers": {"X-Webhook-Event": "x"}`), 422, "invalid_headers", ""},
		{"HeaderXWebhookAttempt", valid(`, "headers": {"x-WEBHOOK-attempt": "x"}`), 422, "invalid_headers", ""},
		{"HeaderHost", valid(`, "headers": {"Host": "evil.example.com"}`), 422, "invalid_headers", ""},
		{"HeaderContentLength", valid(`, "headers": {"Content-Length": "1"}`), 422, "invalid_headers", ""},
		{"HeaderTransferEncoding", valid(`, "headers": {"Transfer-Encoding": "chunked"}`), 422, "invalid_headers", ""},
		{"HeaderConnection", valid(`, "headers": {"Connection": "close"}`), 422, "invalid_headers", ""},
		{"HeaderBadName", valid(`, "headers": {"X Bad": "x"}`), 422, "invalid_headers", "not a valid"},
		{"HeaderEmptyName", valid(`, "headers": {"": "x"}`), 422, "invalid_headers", "not a valid"},
		{"HeaderNameColon", valid(`, "headers": {"X-A:": "x"}`), 422, "invalid_headers", "not a valid"},
		{"HeaderValueNewline", valid(`, "headers": {"X-A": "a\r\nX-Injected: 1"}`), 422, "invalid_headers", "control"},
		{"HeaderValueNUL", valid(`, "headers": {"X-A": "a\u0000"}`), 422, "invalid_headers", "control"},
		{"HeaderTwiceByCase", valid(`, "headers": {"X-A": "1", "x-a": "2"}`), 422, "invalid_headers", "more than once"},
		{"HeaderMask", valid(`, "headers": {"Authorization": "********"}`), 422, "invalid_headers", "no such header"},

		// 422 invalid_filter, invalid_metadata, invalid_description.
		{"FilterTooDeep", valid(`, "filter": ` + deep), 422, "invalid_filter", "deeper"},
		{"FilterNUL", valid(`, "filter": {"a": "\u0000"}`), 422, "invalid_filter", "U+0000"},
		{"FilterNULKey", valid(`, "filter": {"\u0000": 1}`), 422, "invalid_filter", "U+0000"},
		{"FilterHugeNumber", valid(`, "filter": {"a": 1e400}`), 422, "invalid_filter", "out of range"},
		{"MetadataTinyNumber", valid(`, "metadata": {"a": [1e-400]}`), 422, "invalid_metadata", "out of range"},
		{"MetadataTooDeep", valid(`, "metadata": ` + deep), 422, "invalid_metadata", "deeper"},
		{"MetadataNUL", valid(`, "metadata": {"a": ["\u0000"]}`), 422, "invalid_metadata", ""},
		{"DescriptionTooLong", valid(`, "description": "` + strings.Repeat("é", 1025) + `"`), 422, "invalid_description", "1024"},
		{"DescriptionNUL", valid(`, "description": "a\u0000b"`), 422, "invalid_description", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/subscriptions", strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testToken)
			res := b.send(t, req)
			require.Equal(t, tt.status, res.status, "body: %s", res.body)
			require.Equal(t, tt.code, res.code(t))
			require.Contains(t, res.message(t), tt.inMsg)
		})
	}

	// Nothing above was stored.
	var n int
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.subscriptions`))
	require.Zero(t, n)
}

func TestCreateSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t)

	before := time.Now().Add(-time.Second)
	sub := b.create(t, "", `{
		"target_url": "https://hooks.example.com/in?x=1",
		"event_types": ["signup.created", "signup.*", "*", "signup.created"],
		"description": "CRM sync",
		"filter": {"waitlist_id": "wl_42"},
		"headers": {"X-Api-Key": "k1", "Authorization": "Token abc"},
		"metadata": {"owner": "team-a", "n": 3},
		"ordered": true
	}`)

	secret, _ := sub["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"), "secret %q", secret)
	id := sub["id"].(string)
	require.True(t, strings.HasPrefix(id, "sub_"), id)
	require.Nil(t, sub["tenant_id"], "an operator subscription has no tenant")
	require.Equal(t, "https://hooks.example.com/in?x=1", sub["target_url"])
	require.Equal(t, []any{"*", "signup.*", "signup.created"}, sub["event_types"], "deduplicated and sorted")
	require.Equal(t, map[string]any{"waitlist_id": "wl_42"}, sub["filter"])
	require.Equal(t, map[string]any{"X-Api-Key": "********", "Authorization": "********"}, sub["headers"], "values masked")
	require.Equal(t, "CRM sync", sub["description"])
	require.Equal(t, map[string]any{"owner": "team-a", "n": float64(3)}, sub["metadata"])
	require.Equal(t, true, sub["ordered"])
	require.Equal(t, "active", sub["status"])
	require.Nil(t, sub["disabled_reason"])
	require.Contains(t, sub, "disabled_reason")
	require.Nil(t, sub["blocked_reason"])
	require.Contains(t, sub, "blocked_reason")
	for _, k := range []string{"created_at", "updated_at"} {
		s := sub[k].(string)
		require.True(t, strings.HasSuffix(s, "Z"), "%s %q is UTC", k, s)
		ts, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		require.True(t, ts.After(before), "%s %s", k, ts)
	}
	for _, k := range []string{"rate_limit", "timeout", "client_certificate"} {
		require.Contains(t, sub, k)
		require.Nil(t, sub[k], k)
	}
	require.Len(t, sub, 19, "the subscription fields plus secret: %v", sub)

	// GET shows the same, without the secret.
	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "", "")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	got := res.json(t)
	require.NotContains(t, got, "secret")
	delete(sub, "secret")
	require.Equal(t, sub, got)
	require.Equal(t, "no-store", res.header.Get("Cache-Control"))

	// The secret is only behind its own route.
	res = b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, map[string]any{"secret": secret}, res.json(t))
}

func TestCreateSubscriptionDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t)

	sub := b.create(t, "wl_42", `{"target_url": "https://hooks.example.com/", "event_type": "signup.created"}`)
	require.Equal(t, "wl_42", sub["tenant_id"])
	require.Equal(t, []any{"signup.created"}, sub["event_types"])
	require.Nil(t, sub["filter"])
	require.Contains(t, sub, "filter")
	require.Equal(t, map[string]any{}, sub["headers"])
	require.Equal(t, map[string]any{}, sub["metadata"])
	require.Equal(t, "", sub["description"])
	require.Equal(t, false, sub["ordered"])

	// Explicit nulls are the defaults too, and an empty filter is no filter.
	sub = b.create(t, "", `{"target_url": "https://hooks.example.com/2", "event_types": ["*"], "filter": {},
		"headers": null, "metadata": null, "description": null, "ordered": null}`)
	require.Nil(t, sub["filter"])
	require.Equal(t, map[string]any{}, sub["headers"])
	require.Equal(t, map[string]any{}, sub["metadata"])
}

// TestCreateSubscriptionStoresTrickyValues sends what the validation lets through but a naive
// insert would turn into a database error.
func TestCreateSubscriptionStoresTrickyValues(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// The filter, 30 objects and an array: 32 levels, the most allowed.
	nested := strings.Repeat(`{"a":`, 30) + `[1]` + strings.Repeat(`}`, 30)
	sub := b.create(t, "tenant-é-😀", `{
		"target_url": "https://hooks.example.com/ü?q=<&>",
		"event_types": ["a-b_c.D-9", "x.*"],
		"description": "\ud800 lone surrogate, <b>&amp;</b>, tab\t, 😀",
		"filter": {"n": 1e308, "m": -1e-300, "z": 0.000, "s": "\ud83d\ude00", "deep": `+nested+`},
		"headers": {"X-Obs": "café\tvalue", "x~!#$%&'*+.^_|": "v"},
		"metadata": {"\ud800": "\udfff", "big": 123456789012345678901234567890}
	}`)
	require.Equal(t, "tenant-é-😀", sub["tenant_id"])
	require.Contains(t, sub["description"], "\ufffd lone surrogate")
	require.Equal(t, "😀", sub["filter"].(map[string]any)["s"])
	require.Equal(t, "\ufffd", sub["metadata"].(map[string]any)["\ufffd"])
}

func TestCreateSubscriptionDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)

	body := `{"target_url": "https://hooks.example.com/", "event_types": ["b", "a"], "filter": {"x": 1}}`
	first := b.create(t, "", body)["id"].(string)

	// The same subscription, spelt differently: types reordered and repeated, filter reformatted.
	res := b.call(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/", "event_types": ["a", "b", "a"], "filter": {"x":1}, "description": "other"}`)
	require.Equal(t, http.StatusConflict, res.status, "body: %s", res.body)
	require.Equal(t, "duplicate_subscription", res.code(t))
	require.Equal(t, first, res.json(t)["error"].(map[string]any)["existing_id"])

	// Another filter, URL or tenant is not a duplicate.
	b.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["a", "b"]}`)
	b.create(t, "", `{"target_url": "https://hooks.example.com/other", "event_types": ["a", "b"], "filter": {"x": 1}}`)
	tenantSub := b.create(t, "t1", body)["id"].(string)
	res = b.call(t, http.MethodPost, "/v1/subscriptions", "t1", body)
	require.Equal(t, http.StatusConflict, res.status)
	require.Equal(t, tenantSub, res.json(t)["error"].(map[string]any)["existing_id"], "the tenant's own, not the operator's")

	// No filter and {} are the same filter.
	nf := b.create(t, "", `{"target_url": "https://hooks.example.com/nf", "event_types": ["*"]}`)["id"].(string)
	res = b.call(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/nf", "event_types": ["*"], "filter": {}}`)
	require.Equal(t, http.StatusConflict, res.status)
	require.Equal(t, nf, res.json(t)["error"].(map[string]any)["existing_id"])

	// Once deleted, the same subscription can be made again.
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+first, "", "").status)
	again := b.create(t, "", body)["id"].(string)
	require.NotEqual(t, first, again)
}

func TestCreateSubscriptionBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	valid := `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`

	post := func(contentType string, body string, chunked bool) response {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/subscriptions", strings.NewReader(body))
		require.NoError(t, err)
		if chunked {
			req.ContentLength = -1 // unknown length: sent chunked
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		return b.send(t, req)
	}

	t.Run("UnsupportedMediaType", func(t *testing.T) {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/jsonx", "multipart/form-data; boundary=x"} {
			res := post(ct, valid, false)
			require.Equal(t, http.StatusUnsupportedMediaType, res.status, "Content-Type %q", ct)
			require.Equal(t, "unsupported_media_type", res.code(t))
		}
	})
	t.Run("JSONWithCharset", func(t *testing.T) {
		res := post("Application/JSON; charset=UTF-8", valid, false)
		require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	})
	t.Run("TooLarge", func(t *testing.T) {
		big := `{"target_url": "https://hooks.example.com/big", "event_types": ["*"], "description": "` + strings.Repeat("x", 65<<10) + `"}`
		res := post("application/json", big, false)
		require.Equal(t, http.StatusRequestEntityTooLarge, res.status)
		require.Equal(t, "body_too_large", res.code(t))
	})
	t.Run("TooLargeChunked", func(t *testing.T) {
		big := `{"target_url": "https://hooks.example.com/big", "event_types": ["*"], "metadata": {"x": "` + strings.Repeat("x", 65<<10) + `"}}`
		res := post("application/json", big, true)
		require.Equal(t, http.StatusRequestEntityTooLarge, res.status)
		require.Equal(t, "body_too_large", res.code(t))
	})
	t.Run("JustUnderTheLimit", func(t *testing.T) {
		prefix := `{"target_url": "https://hooks.example.com/limit", "event_types": ["*"], "description": "`
		pad := strings.Repeat(" ", 64<<10-len(prefix)-len(`"}`)-10)
		res := post("application/json", prefix+strings.Repeat("d", 10)+`"`+pad+`}`, false)
		require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	})
	t.Run("Chunked", func(t *testing.T) {
		res := post("application/json", strings.Replace(valid, "https://hooks.example.com/", "https://hooks.example.com/chunked", 1), true)
		require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	})
}

func TestGetSubscriptionNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{
		"/v1/subscriptions/sub_00000000000000000000000000",
		"/v1/subscriptions/nope",
		"/v1/subscriptions/sub_",
		"/v1/subscriptions/SUB_00000000000000000000000000",
		"/v1/subscriptions/sub_00000000000000000000000000/secret",
		"/v1/subscriptions/sub_00000000000000000000000000/deliveries",
		"/v1/subscriptions/x%00y",
		"/v1/subscriptions/%F0%28",
		"/v1/nope",
		"/v2/subscriptions",
		"/",
	} {
		res := b.call(t, http.MethodGet, path, "", "")
		require.Equal(t, http.StatusNotFound, res.status, path)
		require.Equal(t, "not_found", res.code(t), path)
	}
	res := b.call(t, http.MethodDelete, "/v1/subscriptions/bad", "", "")
	require.Equal(t, http.StatusNotFound, res.status)
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct{ method, path, allow string }{
		{http.MethodPut, "/v1/subscriptions", "GET, POST"},
		{http.MethodDelete, "/v1/subscriptions", "GET, POST"},
		{http.MethodPost, "/v1/subscriptions/sub_00000000000000000000000000", "DELETE, GET, PATCH"},
		{http.MethodPut, "/v1/subscriptions/sub_00000000000000000000000000", "DELETE, GET, PATCH"},
		{http.MethodPost, "/v1/deliveries/dlv_1", "GET"},
		{http.MethodGet, "/v1/deliveries/dlv_1/retry", "POST"},
		{http.MethodGet, "/v1/subscriptions/sub_00000000000000000000000000/rotate-secret", "POST"},
		{http.MethodGet, "/v1/subscriptions/sub_00000000000000000000000000/test", "POST"},
		{http.MethodPatch, "/v1/subscriptions/sub_00000000000000000000000000/replay", "POST"},
		{http.MethodPost, "/v1/subscriptions/sub_00000000000000000000000000/secret", "GET"},
		{http.MethodDelete, "/v1/events/00000000-0000-0000-0000-000000000000", "GET"},
		{http.MethodHead, "/v1/subscriptions", "GET, POST"},
	}
	for _, tt := range tests {
		res := b.call(t, tt.method, tt.path, "", "")
		require.Equal(t, http.StatusMethodNotAllowed, res.status, "%s %s", tt.method, tt.path)
		require.Equal(t, tt.allow, res.header.Get("Allow"))
		if tt.method != http.MethodHead {
			require.Equal(t, "method_not_allowed", res.code(t))
		}
	}
}

func TestListSubscriptionsPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var created []string
	for i := range 5 {
		created = append(created, b.createURL(t, "", fmt.Sprintf("https://hooks.example.com/%d", i)))
	}

	var seen []string
	cursor := ""
	pages := 0
	for {
		path := "/v1/subscriptions?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		res := b.call(t, http.MethodGet, path, "", "")
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		page := res.json(t)
		pages++
		data := page["data"].([]any)
		for _, d := range data {
			seen = append(seen, d.(map[string]any)["id"].(string))
			require.NotContains(t, d, "secret")
		}
		require.Contains(t, page, "next_cursor")
		if page["next_cursor"] == nil {
			require.Len(t, data, 1)
			break
		}
		require.Len(t, data, 2)
		cursor = page["next_cursor"].(string)
	}
	require.Equal(t, 3, pages)
	// Newest first.
	require.Equal(t, []string{created[4], created[3], created[2], created[1], created[0]}, seen)

	// Default limit, exact fit: no next page.
	res := b.call(t, http.MethodGet, "/v1/subscriptions?limit=5", "", "")
	require.Nil(t, res.json(t)["next_cursor"])
	res = b.call(t, http.MethodGet, "/v1/subscriptions", "", "")
	require.Len(t, res.json(t)["data"], 5)
	res = b.call(t, http.MethodGet, "/v1/subscriptions?limit=500&cursor=", "", "")
	require.Equal(t, http.StatusOK, res.status)
}

func TestListSubscriptionsBadQuery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subID := b.createURL(t, "", "https://hooks.example.com/")
	deliveriesCursor := base64.RawURLEncoding.EncodeToString([]byte("d:" + b.ids.SealCursor(ids.CursorDeliveries, 10))) // a cursor of another list

	tests := []struct{ query, code string }{
		{"limit=0", "invalid_limit"},
		{"limit=-1", "invalid_limit"},
		{"limit=501", "invalid_limit"},
		{"limit=abc", "invalid_limit"},
		{"limit=1.5", "invalid_limit"},
		{"limit=99999999999999999999", "invalid_limit"},
		{"cursor=!!!", "invalid_cursor"},
		{"cursor=abc", "invalid_cursor"},
		{"cursor=" + deliveriesCursor, "invalid_cursor"},
		{"cursor=czow", "invalid_cursor"},   // "s:0"
		{"cursor=czotMQ", "invalid_cursor"}, // "s:-1"
		{"status=deleted", "invalid_status"},
		{"status=ACTIVE", "invalid_status"},
		{"event_type=a..b", "invalid_event_type"},
		{"event_type=*.x", "invalid_event_type"},
	}
	for _, tt := range tests {
		res := b.call(t, http.MethodGet, "/v1/subscriptions?"+tt.query, "", "")
		require.Equal(t, http.StatusUnprocessableEntity, res.status, tt.query)
		require.Equal(t, tt.code, res.code(t), tt.query)

		res = b.call(t, http.MethodGet, "/v1/subscriptions/"+subID+"/deliveries?"+tt.query, "", "")
		if strings.HasPrefix(tt.query, "event_type") || tt.query == "status=deleted" || tt.query == "status=ACTIVE" {
			continue // not the delivery list's filters, or not its statuses
		}
		if tt.query == "cursor="+deliveriesCursor {
			require.Equal(t, http.StatusOK, res.status, "a deliveries cursor is valid there")
			continue
		}
		require.Equal(t, http.StatusUnprocessableEntity, res.status, tt.query)
		require.Equal(t, tt.code, res.code(t), tt.query)
	}
}

func TestListSubscriptionsFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)

	all := b.create(t, "", `{"target_url": "https://hooks.example.com/all", "event_types": ["*"]}`)["id"].(string)
	prefix := b.create(t, "", `{"target_url": "https://hooks.example.com/prefix", "event_types": ["signup.*"]}`)["id"].(string)
	exact := b.create(t, "", `{"target_url": "https://hooks.example.com/exact", "event_types": ["signup.created", "user.deleted"]}`)["id"].(string)
	other := b.create(t, "", `{"target_url": "https://hooks.example.com/other", "event_types": ["signupx.created"]}`)["id"].(string)
	paused := b.create(t, "", `{"target_url": "https://hooks.example.com/paused", "event_types": ["signup.created"]}`)["id"].(string)
	_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = 'paused' WHERE id = $1`, paused)
	require.NoError(t, err)
	disabled := b.createURL(t, "", "https://hooks.example.com/disabled")
	_, err = b.db.Exec(`UPDATE relay.subscriptions SET status = 'disabled', disabled_reason = '410 Gone' WHERE id = $1`, disabled)
	require.NoError(t, err)

	ids := func(query string) []string {
		t.Helper()
		res := b.call(t, http.MethodGet, "/v1/subscriptions?"+query, "", "")
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		var out []string
		for _, d := range res.json(t)["data"].([]any) {
			out = append(out, d.(map[string]any)["id"].(string))
		}
		return out
	}

	require.ElementsMatch(t, []string{all, prefix, exact, paused, disabled}, ids("event_type=signup.created"))
	require.ElementsMatch(t, []string{all, prefix, disabled}, ids("event_type=signup.a.b"))
	require.ElementsMatch(t, []string{all, other, disabled}, ids("event_type=signupx.created"))
	require.ElementsMatch(t, []string{all, exact, disabled}, ids("event_type=user.deleted"))
	require.ElementsMatch(t, []string{prefix}, ids("event_type=signup.*"), "a pattern lists only that pattern")
	require.ElementsMatch(t, []string{all, disabled}, ids("event_type=*"))
	require.ElementsMatch(t, []string{paused}, ids("status=paused"))
	require.ElementsMatch(t, []string{disabled}, ids("status=disabled"))
	require.ElementsMatch(t, []string{all, prefix, exact}, ids("status=active&event_type=signup.created"))
	require.Empty(t, ids("status=paused&event_type=user.deleted"))

	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+disabled, "", "")
	require.Equal(t, "410 Gone", res.json(t)["disabled_reason"])
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	_, err := api.New(api.Config{})
	require.ErrorContains(t, err, "DB is required")
}

// TestAllowedPrivateRanges: with RELAY_ALLOW_PRIVATE_CIDRS a target in an admitted private
// range is accepted, at creation and in a patch, while another private range, loopback and
// the metadata address stay a 422 naming the target.
func TestAllowedPrivateRanges(t *testing.T) {
	t.Parallel()
	admitted, err := targets.CheckAllowedCIDR("10.20.0.0/16")
	require.NoError(t, err)
	b := setup(t, func(c *api.Config) {
		c.Targets = targets.Policy{AllowHTTP: true, AllowCIDRs: []netip.Prefix{admitted}, Resolver: fakeResolver{}}
	})

	res := b.call(t, http.MethodPost, "/v1/subscriptions", "t1", `{"target_url": "http://10.20.3.4:8080/hook", "event_types": ["*"]}`)
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	id := res.json(t)["id"].(string)
	require.Equal(t, "http://10.20.3.4:8080/hook", res.json(t)["target_url"])

	for _, target := range []string{
		"http://10.30.0.1/hook",                    // another private range
		"https://internal.example.com/hook",        // a name resolving to 10.0.0.5
		"http://127.0.0.1:8080/hook",               // loopback, never admitted
		"http://169.254.169.254/latest/meta-data/", // metadata
	} {
		body := `{"target_url": "` + target + `", "event_types": ["*"]}`
		res := b.call(t, http.MethodPost, "/v1/subscriptions", "t1", body)
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", target, res.body)
		require.Equal(t, "invalid_target_url", res.code(t), target)
		require.Contains(t, res.message(t), "private", target)

		res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "t1", `{"target_url": "`+target+`"}`)
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", target, res.body)
		require.Equal(t, "invalid_target_url", res.code(t), target)
	}
	require.Contains(t, b.call(t, http.MethodPost, "/v1/subscriptions", "t1", `{"target_url": "http://10.30.0.1/hook", "event_types": ["*"]}`).message(t),
		"outside the private ranges this relay admits")

	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "t1", `{"target_url": "http://10.20.200.1/other"}`)
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	require.Equal(t, "http://10.20.200.1/other", res.json(t)["target_url"])
	var stored string
	require.NoError(t, b.db.Get(&stored, `SELECT target_url FROM relay.subscriptions WHERE id = $1`, id))
	require.Equal(t, "http://10.20.200.1/other", stored)
}
