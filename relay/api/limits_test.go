package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A subscription's rate_limit and timeout: set on creation, shown by GET (one and list),
// changed and cleared (null) by PATCH, and stored as given.
func TestSubscriptionLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)

	created := b.create(t, "t1", `{"target_url": "https://hooks.example.com/a", "event_types": ["a"],
		"rate_limit": 0.5, "timeout": 30}`)
	require.Equal(t, 0.5, created["rate_limit"])
	require.Equal(t, 30.0, created["timeout"])
	id := created["id"].(string)
	path := "/v1/subscriptions/" + id

	got := b.call(t, http.MethodGet, path, "t1", "").json(t)
	require.Equal(t, 0.5, got["rate_limit"])
	require.Equal(t, 30.0, got["timeout"])
	list := b.call(t, http.MethodGet, "/v1/subscriptions", "t1", "").json(t)["data"].([]any)
	require.Len(t, list, 1)
	require.Equal(t, 0.5, list[0].(map[string]any)["rate_limit"])
	require.Equal(t, 30.0, list[0].(map[string]any)["timeout"])

	// Without them: null, and so in the answer.
	plain := b.create(t, "t1", `{"target_url": "https://hooks.example.com/b", "event_types": ["a"]}`)
	require.Contains(t, plain, "rate_limit")
	require.Nil(t, plain["rate_limit"])
	require.Contains(t, plain, "timeout")
	require.Nil(t, plain["timeout"])

	stored := func() (rate *float64, timeout *int) {
		t.Helper()
		require.NoError(t, b.db.QueryRow(`SELECT rate_limit, timeout_seconds FROM relay.subscriptions WHERE id = $1`, id).
			Scan(&rate, &timeout))
		return rate, timeout
	}
	patch := func(body string) map[string]any {
		t.Helper()
		res := b.call(t, http.MethodPatch, path, "t1", body)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		return res.json(t)
	}

	// One changes, the other stays.
	got = patch(`{"rate_limit": 5}`)
	require.Equal(t, 5.0, got["rate_limit"])
	require.Equal(t, 30.0, got["timeout"])
	got = patch(`{"timeout": 1}`)
	require.Equal(t, 5.0, got["rate_limit"])
	require.Equal(t, 1.0, got["timeout"])
	rate, timeout := stored()
	require.Equal(t, 5.0, *rate)
	require.Equal(t, 1, *timeout)

	// Other fields leave them alone.
	got = patch(`{"description": "x"}`)
	require.Equal(t, 5.0, got["rate_limit"])
	require.Equal(t, 1.0, got["timeout"])

	// null clears.
	got = patch(`{"rate_limit": null, "timeout": null}`)
	require.Nil(t, got["rate_limit"])
	require.Nil(t, got["timeout"])
	rate, timeout = stored()
	require.Nil(t, rate)
	require.Nil(t, timeout)
	require.Equal(t, got, b.call(t, http.MethodGet, path, "t1", "").json(t))
}

// Anything but a number in range is 422 with the field's code, on creation and PATCH, and
// changes nothing.
func TestSubscriptionLimitsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.create(t, "", `{"target_url": "https://hooks.example.com/a", "event_types": ["a"], "rate_limit": 2, "timeout": 3}`)["id"].(string)
	before := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "", "").body

	for _, tc := range []struct{ field, value, code string }{
		{"rate_limit", `0`, "invalid_rate_limit"},
		{"rate_limit", `-1`, "invalid_rate_limit"},
		{"rate_limit", `0.0001`, "invalid_rate_limit"},
		{"rate_limit", `10001`, "invalid_rate_limit"},
		{"rate_limit", `1e400`, "invalid_rate_limit"},
		{"rate_limit", `"5"`, "invalid_rate_limit"},
		{"rate_limit", `true`, "invalid_rate_limit"},
		{"rate_limit", `[5]`, "invalid_rate_limit"},
		{"rate_limit", `{"per_second": 5}`, "invalid_rate_limit"},
		{"timeout", `0`, "invalid_timeout"},
		{"timeout", `31`, "invalid_timeout"},
		{"timeout", `-5`, "invalid_timeout"},
		{"timeout", `1.5`, "invalid_timeout"},
		{"timeout", `"10"`, "invalid_timeout"},
		{"timeout", `"10s"`, "invalid_timeout"},
		{"timeout", `false`, "invalid_timeout"},
		{"timeout", `1e100`, "invalid_timeout"},
	} {
		t.Run(tc.field+"="+tc.value, func(t *testing.T) {
			res := b.call(t, http.MethodPost, "/v1/subscriptions", "",
				`{"target_url": "https://hooks.example.com/z", "event_types": ["a"], "`+tc.field+`": `+tc.value+`}`)
			require.Equal(t, http.StatusUnprocessableEntity, res.status, "body: %s", res.body)
			require.Equal(t, tc.code, res.code(t))
			require.Contains(t, res.message(t), tc.field)

			res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"`+tc.field+`": `+tc.value+`}`)
			require.Equal(t, http.StatusUnprocessableEntity, res.status, "body: %s", res.body)
			require.Equal(t, tc.code, res.code(t))
			require.Contains(t, res.message(t), tc.field)
		})
	}
	require.Equal(t, before, b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "", "").body)

	// Whole seconds written as 10.0 are whole seconds; the bounds are included.
	for _, body := range []string{`{"timeout": 10.0}`, `{"timeout": 30}`, `{"timeout": 1}`, `{"rate_limit": 0.001}`, `{"rate_limit": 10000}`} {
		res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", body)
		require.Equal(t, http.StatusOK, res.status, "%s: %s", body, res.body)
	}
}
