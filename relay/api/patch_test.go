package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPatchSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t)

	created := b.create(t, "t1", `{"target_url": "https://hooks.example.com/a", "event_types": ["signup.created"],
		"description": "d", "filter": {"x": 1}, "headers": {"X-A": "1"}, "metadata": {"m": 1}, "ordered": true}`)
	id := created["id"].(string)
	delete(created, "secret")
	path := "/v1/subscriptions/" + id

	patch := func(body string) map[string]any {
		t.Helper()
		res := b.call(t, http.MethodPatch, path, "t1", body)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		got := res.json(t)
		require.NotContains(t, got, "secret")
		// What PATCH answers is what GET shows.
		res = b.call(t, http.MethodGet, path, "t1", "")
		require.Equal(t, got, res.json(t))
		return got
	}

	// An empty patch changes nothing but updated_at.
	got := patch(`{}`)
	require.Equal(t, created["created_at"], got["created_at"])
	require.NotEqual(t, created["updated_at"], got["updated_at"])
	for _, k := range []string{"id", "tenant_id", "target_url", "event_types", "filter", "headers", "description", "metadata", "ordered", "status", "disabled_reason"} {
		require.Equal(t, created[k], got[k], k)
	}

	// Each field, alone: the others stay.
	prev := got
	for _, tc := range []struct {
		body  string
		field string
		want  any
	}{
		{`{"target_url": "https://hooks.example.com/b"}`, "target_url", "https://hooks.example.com/b"},
		{`{"event_types": ["b.*", "a", "a"]}`, "event_types", []any{"a", "b.*"}},
		{`{"event_type": "c"}`, "event_types", []any{"c"}},
		{`{"filter": {"y": [1, 2]}}`, "filter", map[string]any{"y": []any{1.0, 2.0}}},
		{`{"filter": {}}`, "filter", nil},
		{`{"filter": {"z": true}}`, "filter", map[string]any{"z": true}},
		{`{"filter": null}`, "filter", nil},
		{`{"headers": {"X-B": "2"}}`, "headers", map[string]any{"X-B": "********"}},
		{`{"headers": null}`, "headers", map[string]any{}},
		{`{"headers": {"X-C": "3"}}`, "headers", map[string]any{"X-C": "********"}},
		{`{"headers": {}}`, "headers", map[string]any{}},
		{`{"description": "new"}`, "description", "new"},
		{`{"description": null}`, "description", ""},
		{`{"metadata": {"owner": "b"}}`, "metadata", map[string]any{"owner": "b"}},
		{`{"metadata": null}`, "metadata", map[string]any{}},
		{`{"ordered": false}`, "ordered", false},
		{`{"ordered": true}`, "ordered", true},
		{`{"ordered": null}`, "ordered", false},
		{`{"status": "paused"}`, "status", "paused"},
		{`{"status": "active"}`, "status", "active"},
	} {
		got := patch(tc.body)
		require.Equal(t, tc.want, got[tc.field], tc.body)
		for k, v := range prev {
			if k != tc.field && k != "updated_at" {
				require.Equal(t, v, got[k], "%s changed %s", tc.body, k)
			}
		}
		prevUpdated, _ := time.Parse(time.RFC3339Nano, prev["updated_at"].(string))
		nowUpdated, _ := time.Parse(time.RFC3339Nano, got["updated_at"].(string))
		require.True(t, nowUpdated.After(prevUpdated), "%s: updated_at moves on", tc.body)
		prev = got
	}

	// Several at once.
	got = patch(`{"target_url": "https://hooks.example.com/c", "event_types": ["*"], "filter": {"w": "x"},
		"headers": {"X-D": "4"}, "description": "all", "metadata": {"k": "v"}, "ordered": true, "status": "paused"}`)
	require.Equal(t, "https://hooks.example.com/c", got["target_url"])
	require.Equal(t, []any{"*"}, got["event_types"])
	require.Equal(t, map[string]any{"w": "x"}, got["filter"])
	require.Equal(t, map[string]any{"X-D": "********"}, got["headers"])
	require.Equal(t, "all", got["description"])
	require.Equal(t, map[string]any{"k": "v"}, got["metadata"])
	require.Equal(t, true, got["ordered"])
	require.Equal(t, "paused", got["status"])
	require.Equal(t, "t1", got["tenant_id"], "the tenant never changes")

	// The secret is untouched by PATCH.
	secret := b.call(t, http.MethodGet, path+"/secret", "t1", "").json(t)["secret"]
	require.Equal(t, secret, b.call(t, http.MethodGet, path+"/secret", "", "").json(t)["secret"])
}

func TestPatchSubscriptionStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.createURL(t, "", "https://hooks.example.com/")
	path := "/v1/subscriptions/" + id
	setStatus := func(body string) response { return b.call(t, http.MethodPatch, path, "", body) }

	t.Run("PauseAndResume", func(t *testing.T) {
		before := b.queued.Load()
		res := setStatus(`{"status": "paused"}`)
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, "paused", res.json(t)["status"])
		require.Equal(t, before, b.queued.Load(), "pausing wakes nobody")
		res = setStatus(`{"status": "active"}`)
		require.Equal(t, "active", res.json(t)["status"])
		require.Equal(t, before+1, b.queued.Load(), "resuming wakes the deliverer for the waiting deliveries")
	})

	t.Run("ReEnableDisabled", func(t *testing.T) {
		_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = 'disabled', disabled_reason = '410 Gone',
			failing_since = now() - interval '6 days' WHERE id = $1`, id)
		require.NoError(t, err)

		// Other changes leave the verdict alone.
		res := setStatus(`{"description": "still off"}`)
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, "disabled", res.json(t)["status"])
		require.Equal(t, "410 Gone", res.json(t)["disabled_reason"])

		res = setStatus(`{"status": "active"}`)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		require.Equal(t, "active", res.json(t)["status"])
		require.Nil(t, res.json(t)["disabled_reason"])
		st := b.subscriptionState(t, id)
		require.Equal(t, "active", st.Status)
		require.False(t, st.DisabledReason.Valid)
		require.False(t, st.FailingSince.Valid, "the auto-disable window starts afresh")
	})

	t.Run("PauseDisabled", func(t *testing.T) {
		_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = 'disabled', disabled_reason = 'r', failing_since = now() WHERE id = $1`, id)
		require.NoError(t, err)
		res := setStatus(`{"status": "paused"}`)
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, "paused", res.json(t)["status"])
		require.Nil(t, res.json(t)["disabled_reason"], "only a disabled subscription has a reason")
	})

	t.Run("ActiveStaysHealthy", func(t *testing.T) {
		res := setStatus(`{"status": "active"}`)
		require.Equal(t, http.StatusOK, res.status)
		// An active subscription that fails: setting active again does not reset its window.
		_, err := b.db.Exec(`UPDATE relay.subscriptions SET failing_since = now() - interval '1 hour' WHERE id = $1`, id)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, setStatus(`{"status": "active"}`).status)
		require.True(t, b.subscriptionState(t, id).FailingSince.Valid)
	})

	t.Run("Invalid", func(t *testing.T) {
		before := b.snapshot(t)
		for _, body := range []string{`{"status": "disabled"}`, `{"status": "deleted"}`, `{"status": "ACTIVE"}`,
			`{"status": ""}`, `{"status": null}`, `{"status": "paused", "description": "x", "event_types": []}`} {
			res := setStatus(body)
			require.Equal(t, http.StatusUnprocessableEntity, res.status, body)
			if !strings.Contains(body, "event_types") {
				require.Equal(t, "invalid_status", res.code(t), body)
			}
		}
		res := setStatus(`{"status": 1}`)
		require.Equal(t, http.StatusBadRequest, res.status)
		require.Equal(t, "invalid_json", res.code(t))
		require.Equal(t, before, b.snapshot(t), "nothing changed")
	})
}

func TestPatchSubscriptionValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["a"], "filter": {"x": 1}}`)["id"].(string)
	path := "/v1/subscriptions/" + id
	deep := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)

	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"Empty", "", 400, "invalid_json"},
		{"Malformed", `{"status": `, 400, "invalid_json"},
		{"NotJSON", `status=paused`, 400, "invalid_json"},
		{"Array", `[{"status": "paused"}]`, 400, "invalid_json"},
		{"Null", `null`, 400, "invalid_json"},
		{"Trailing", `{} {}`, 400, "invalid_json"},
		{"Duplicate", `{"description": "a", "description": "b"}`, 400, "invalid_json"},
		{"UnknownField", `{"signing_secret": "whsec_x"}`, 400, "unknown_field"},
		{"Secret", `{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}`, 422, "invalid_secret"},
		{"SecretNull", `{"secret": null}`, 422, "invalid_secret"},
		{"SignatureScheme", `{"signature_scheme": "v1a"}`, 422, "invalid_signature_scheme"},
		{"SignatureSchemeSame", `{"signature_scheme": "v1"}`, 422, "invalid_signature_scheme"},
		{"UnknownFieldID", `{"id": "sub_x"}`, 400, "unknown_field"},
		{"UnknownFieldTenant", `{"tenant_id": "other"}`, 400, "unknown_field"},
		{"WrongCase", `{"Status": "paused"}`, 400, "unknown_field"},
		{"TargetNumber", `{"target_url": 1}`, 400, "invalid_json"},
		{"EventTypesString", `{"event_types": "a"}`, 400, "invalid_json"},
		{"EventTypeArray", `{"event_type": ["a"]}`, 400, "invalid_json"},
		{"FilterArray", `{"filter": [1]}`, 400, "invalid_json"},
		{"HeadersArray", `{"headers": ["a"]}`, 400, "invalid_json"},
		{"HeaderValueNumber", `{"headers": {"X-A": 1}}`, 400, "invalid_json"},
		{"MetadataString", `{"metadata": "x"}`, 400, "invalid_json"},
		{"OrderedString", `{"ordered": "true"}`, 400, "invalid_json"},
		{"DescriptionNumber", `{"description": 5}`, 400, "invalid_json"},

		{"TargetNull", `{"target_url": null}`, 422, "invalid_target_url"},
		{"TargetEmpty", `{"target_url": ""}`, 422, "invalid_target_url"},
		{"TargetRelative", `{"target_url": "/x"}`, 422, "invalid_target_url"},
		{"TargetHTTP", `{"target_url": "http://hooks.example.com/"}`, 422, "invalid_target_url"},
		{"TargetUserInfo", `{"target_url": "https://u:p@hooks.example.com/"}`, 422, "invalid_target_url"},
		{"TargetLocalhost", `{"target_url": "https://localhost/"}`, 422, "invalid_target_url"},
		{"TargetMetadata", `{"target_url": "https://169.254.169.254/latest"}`, 422, "invalid_target_url"},
		{"TargetResolvesPrivate", `{"target_url": "https://internal.example.com/"}`, 422, "invalid_target_url"},
		{"TargetDoesNotResolve", `{"target_url": "https://nowhere.invalid/"}`, 422, "invalid_target_url"},
		{"TargetTooLong", `{"target_url": "https://hooks.example.com/` + strings.Repeat("a", 2048) + `"}`, 422, "invalid_target_url"},
		{"EventTypesNull", `{"event_types": null}`, 422, "invalid_event_types"},
		{"EventTypeNull", `{"event_type": null}`, 422, "invalid_event_types"},
		{"EventTypesEmpty", `{"event_types": []}`, 422, "invalid_event_types"},
		{"EventTypesBoth", `{"event_types": ["a"], "event_type": "b"}`, 422, "invalid_event_types"},
		{"EventTypeSuffixWildcard", `{"event_types": ["*.created"]}`, 422, "invalid_event_types"},
		{"EventTypeDoubleDot", `{"event_types": ["a..b"]}`, 422, "invalid_event_types"},
		{"EventTypeSpace", `{"event_type": "a b"}`, 422, "invalid_event_types"},
		{"EventTypeWildcardMiddle", `{"event_type": "a.*.b"}`, 422, "invalid_event_types"},
		{"HeaderReserved", `{"headers": {"Webhook-Signature": "x"}}`, 422, "invalid_headers"},
		{"HeaderInjection", `{"headers": {"X-A": "a\r\nB: c"}}`, 422, "invalid_headers"},
		{"FilterDeep", `{"filter": ` + deep + `}`, 422, "invalid_filter"},
		{"FilterNUL", `{"filter": {"a": "\u0000"}}`, 422, "invalid_filter"},
		{"MetadataHugeNumber", `{"metadata": {"n": 1e999}}`, 422, "invalid_metadata"},
		{"DescriptionTooLong", `{"description": "` + strings.Repeat("d", 1025) + `"}`, 422, "invalid_description"},
		{"StatusDisabled", `{"status": "disabled"}`, 422, "invalid_status"},
		// One bad field spoils the patch: nothing of the good ones is applied.
		{"GoodAndBad", `{"description": "changed", "target_url": "https://localhost/"}`, 422, "invalid_target_url"},
	}
	before := b.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := b.call(t, http.MethodPatch, path, "", tt.body)
			require.Equal(t, tt.status, res.status, "body: %s", res.body)
			require.Equal(t, tt.code, res.code(t))
		})
	}
	t.Run("UnsupportedMediaType", func(t *testing.T) {
		for _, ct := range []string{"", "text/plain", "application/merge-patch+json", "application/json; charset=latin1"} {
			res := b.rawCall(t, http.MethodPatch, path, ct, `{"description": "x"}`, false)
			require.Equal(t, http.StatusUnsupportedMediaType, res.status, ct)
			require.Equal(t, "unsupported_media_type", res.code(t))
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		big := `{"description": "` + strings.Repeat("x", 65<<10) + `"}`
		for _, chunked := range []bool{false, true} {
			res := b.rawCall(t, http.MethodPatch, path, "application/json", big, chunked)
			require.Equal(t, http.StatusRequestEntityTooLarge, res.status)
			require.Equal(t, "body_too_large", res.code(t))
		}
	})
	require.Equal(t, before, b.snapshot(t), "no bad request changed anything")
}

func TestPatchSubscriptionDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.create(t, "", `{"target_url": "https://hooks.example.com/1", "event_types": ["a", "b"], "filter": {"x": 1}}`)["id"].(string)
	second := b.create(t, "", `{"target_url": "https://hooks.example.com/2", "event_types": ["a", "b"], "filter": {"x": 1}}`)["id"].(string)
	tenantSub := b.create(t, "t1", `{"target_url": "https://hooks.example.com/2", "event_types": ["a"]}`)["id"].(string)

	before := b.snapshot(t)
	res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+second, "", `{"target_url": "https://hooks.example.com/1", "event_types": ["b", "a", "b"]}`)
	require.Equal(t, http.StatusConflict, res.status, "body: %s", res.body)
	require.Equal(t, "duplicate_subscription", res.code(t))
	require.Equal(t, first, res.json(t)["error"].(map[string]any)["existing_id"])
	require.Equal(t, before, b.snapshot(t))

	// Changing the filter on the way makes it another subscription.
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+second, "", `{"target_url": "https://hooks.example.com/1", "filter": {"x": 2}}`)
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)

	// A subscription is never its own duplicate.
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+first, "", `{"target_url": "https://hooks.example.com/1", "event_types": ["a", "b"], "filter": {"x": 1}}`)
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)

	// Another tenant's identical subscription is not a duplicate, nor is the operator's.
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+tenantSub, "t1", `{"target_url": "https://hooks.example.com/1", "event_types": ["a", "b"], "filter": {"x": 1}}`)
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)

	// A deleted one does not count.
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+first, "", "").status)
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+second, "", `{"filter": {"x": 1}}`)
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
}

func TestPatchSubscriptionNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gone := b.createURL(t, "", "https://hooks.example.com/gone")
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+gone, "", "").status)
	for _, id := range []string{"sub_00000000000000000000000000", "nope", "sub_", gone, "SUB_00000000000000000000000000"} {
		res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"description": "x"}`)
		require.Equal(t, http.StatusNotFound, res.status, id)
		require.Equal(t, "not_found", res.code(t))
	}
	// A bad body on an unknown id: still 404, the id is looked at first.
	res := b.call(t, http.MethodPatch, "/v1/subscriptions/nope", "", `{`)
	require.Equal(t, http.StatusNotFound, res.status)
}
