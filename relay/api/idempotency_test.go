package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

func withKey(key string) http.Header { return http.Header{"Idempotency-Key": {key}} }

func countSubscriptions(t *testing.T, b *bundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.subscriptions`))
	return n
}

func TestIdempotencyKeyCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`

	first := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, withKey("key-1"))
	require.Equal(t, http.StatusCreated, first.status, "body: %s", first.body)
	require.Empty(t, first.header.Get("Idempotent-Replayed"))

	// The same request again: the same answer, secret included, and no second subscription.
	for _, again := range []string{body, "  {\"target_url\":\"https://hooks.example.com/\",\n\"event_types\":[\"*\"]}  "} {
		res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", again, withKey("key-1"))
		require.Equal(t, first.status, res.status)
		require.Equal(t, string(first.body), string(res.body))
		require.Equal(t, "true", res.header.Get("Idempotent-Replayed"))
		require.Equal(t, "application/json", res.header.Get("Content-Type"))
		require.Equal(t, "no-store", res.header.Get("Cache-Control"))
	}
	require.Equal(t, 1, countSubscriptions(t, b))

	// Without the key the same body is a duplicate.
	res := b.call(t, http.MethodPost, "/v1/subscriptions", "", body)
	require.Equal(t, http.StatusConflict, res.status)

	// The same key with another body, or on another route: 422, nothing done.
	snap := b.snapshot(t)
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/2", "event_types": ["*"]}`, withKey("key-1"))
	require.Equal(t, http.StatusUnprocessableEntity, res.status, "body: %s", res.body)
	require.Equal(t, "idempotency_key_reused", res.code(t))
	sub := first.json(t)["id"].(string)
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/rotate-secret", "", "", withKey("key-1"))
	require.Equal(t, http.StatusUnprocessableEntity, res.status)
	require.Equal(t, "idempotency_key_reused", res.code(t))
	require.Equal(t, snap, b.snapshot(t))

	// Keys belong to their caller: another tenant, or the operator, with the same key and body
	// makes its own.
	resT1 := b.callWith(t, http.MethodPost, "/v1/subscriptions", "t1", body, withKey("key-1"))
	require.Equal(t, http.StatusCreated, resT1.status, "body: %s", resT1.body)
	require.NotEqual(t, sub, resT1.json(t)["id"])
	resT2 := b.callWith(t, http.MethodPost, "/v1/subscriptions", "t2", body, withKey("key-1"))
	require.Equal(t, http.StatusCreated, resT2.status)
	require.NotEqual(t, resT1.json(t)["id"], resT2.json(t)["id"])
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "t1", body, withKey("key-1"))
	require.Equal(t, string(resT1.body), string(res.body))
	require.Equal(t, 3, countSubscriptions(t, b))

	// Keys are case-sensitive.
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, withKey("KEY-1"))
	require.Equal(t, http.StatusConflict, res.status, "a new key runs the request: a duplicate")
}

func TestIdempotencyKeyErrorsAreNotStored(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// A refused request does not take the key: the corrected request may use it.
	res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://localhost/", "event_types": ["*"]}`, withKey("k"))
	require.Equal(t, http.StatusUnprocessableEntity, res.status)
	require.Equal(t, "invalid_target_url", res.code(t))
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://localhost/", "event_types": ["*"]}`, withKey("k"))
	require.Equal(t, "invalid_target_url", res.code(t), "the same request, the same answer")
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`, withKey("k"))
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)

	// 400, 413, 415 and 404 answers store nothing either.
	sub := res.json(t)["id"].(string)
	for _, tc := range []struct{ path, ct, body string }{
		{"/v1/subscriptions", "application/json", `{`},
		{"/v1/subscriptions", "text/plain", `{}`},
		{"/v1/subscriptions", "application/json", `{"description": "` + strings.Repeat("x", 65<<10) + `"}`},
		{"/v1/subscriptions/sub_00000000000000000000000000/test", "", ""},
		{"/v1/subscriptions/" + sub + "/replay", "application/json", `{"since": "x"}`},
	} {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Idempotency-Key", "k2")
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		res := b.send(t, req)
		require.GreaterOrEqual(t, res.status, 400, tc.path)
	}
	var keys int
	require.NoError(t, b.db.Get(&keys, `SELECT count(*) FROM relay.idempotency_keys WHERE key = 'k2'`))
	require.Zero(t, keys)
}

func TestIdempotencyKeyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`

	const n = 12
	results := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = b.callWith(t, http.MethodPost, "/v1/subscriptions", "t1", body, withKey("same"))
		})
	}
	close(start)
	wg.Wait()
	replayed := 0
	for _, r := range results {
		require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
		require.Equal(t, string(results[0].body), string(r.body))
		if r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	require.Equal(t, n-1, replayed, "one request ran, the others got its answer")
	require.Equal(t, 1, countSubscriptions(t, b))
}

func TestIdempotencyKeyInUseAndExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	api.SetIdempotencyWait(b.api, 100*time.Millisecond)
	body := `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`
	hashOf := func(key string) []byte {
		// A claim made by a first request with this very body, taken from the table.
		res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, withKey(key))
		require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
		var h []byte
		require.NoError(t, b.db.Get(&h, `SELECT request_hash FROM relay.idempotency_keys WHERE key = $1`, key))
		_, err := b.db.Exec(`UPDATE relay.subscriptions SET deleted_at = now()`)
		require.NoError(t, err)
		return h
	}
	hash := hashOf("probe")

	// A first request that is still running: a repeat waits, then answers 409.
	_, err := b.db.Exec(`INSERT INTO relay.idempotency_keys (caller, key, request_hash) VALUES ('operator', 'busy', $1)`, hash)
	require.NoError(t, err)
	start := time.Now()
	res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, withKey("busy"))
	require.Equal(t, http.StatusConflict, res.status, "body: %s", res.body)
	require.Equal(t, "idempotency_key_in_use", res.code(t))
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "it waited for the first request")

	// ... and a different request with that key is told so at once.
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/x", "event_types": ["*"]}`, withKey("busy"))
	require.Equal(t, "idempotency_key_reused", res.code(t))

	// A claim whose request died a while ago is taken over.
	_, err = b.db.Exec(`UPDATE relay.idempotency_keys SET created_at = now() - interval '2 minutes' WHERE key = 'busy'`)
	require.NoError(t, err)
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, withKey("busy"))
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	require.Empty(t, res.header.Get("Idempotent-Replayed"))

	// After 24 hours a key is new again, even for another request.
	_, err = b.db.Exec(`UPDATE relay.subscriptions SET deleted_at = now()`)
	require.NoError(t, err)
	_, err = b.db.Exec(`UPDATE relay.idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'busy'`)
	require.NoError(t, err)
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/other", "event_types": ["*"]}`, withKey("busy"))
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
}

func TestIdempotencyKeyPurge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(`INSERT INTO relay.idempotency_keys (caller, key, request_hash, status, body, created_at)
		VALUES ('operator', 'old', '\x00', 201, '{}', now() - interval '25 hours'),
		       ('operator', 'young', '\x00', 201, '{}', now() - interval '23 hours')`)
	require.NoError(t, err)
	sub := b.createURL(t, "", "https://hooks.example.com/")
	res := b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/rotate-secret", "", "", withKey("new"))
	require.Equal(t, http.StatusOK, res.status)
	var keys []string
	require.NoError(t, b.db.Select(&keys, `SELECT key FROM relay.idempotency_keys ORDER BY key`))
	require.Equal(t, []string{"new", "young"}, keys, "expired keys are deleted on the way")
}

func TestIdempotencyKeyOtherPOSTs(t *testing.T) {
	t.Parallel()
	box, err := secrets.New(bytes.Repeat([]byte{3}, 32), nil)
	require.NoError(t, err)
	b := setup(t, func(c *api.Config) { c.SealSecret, c.OpenSecret = box.Seal, box.Open })
	sub := b.createURL(t, "t1", "https://hooks.example.com/")

	// rotate-secret: a repeat answers the same new secret and does not rotate again.
	res := b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/rotate-secret", "t1", "", withKey("rot"))
	require.Equal(t, http.StatusOK, res.status)
	secret := res.json(t)["secret"].(string)
	var stored string
	require.NoError(t, b.db.Get(&stored, `SELECT body FROM relay.idempotency_keys WHERE key = 'rot'`))
	require.NotContains(t, stored, secret, "the stored answer holds a secret: it is sealed")
	require.True(t, strings.HasPrefix(stored, "enc:v1:"))
	again := b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/rotate-secret", "t1", "", withKey("rot"))
	require.Equal(t, string(res.body), string(again.body))
	require.Equal(t, secret, b.call(t, http.MethodGet, "/v1/subscriptions/"+sub+"/secret", "t1", "").json(t)["secret"])

	// test: one event however often it is sent with the key.
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "t1", "{}", withKey("tst"))
	require.Equal(t, http.StatusAccepted, res.status)
	again = b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "t1", "{}", withKey("tst"))
	require.Equal(t, string(res.body), string(again.body))
	var events int
	require.NoError(t, b.db.Get(&events, `SELECT count(*) FROM relay.outbox WHERE event_type = 'webhook.test'`))
	require.Equal(t, 1, events)

	// retry and replay: the first answer again.
	deliveryID := res.json(t)["delivery_id"].(string)
	id, _ := b.ids.Parse(deliveryID)
	_, err = b.db.Exec(`UPDATE relay.deliveries SET status = 'failed', next_attempt_at = NULL WHERE id = $1`, id)
	require.NoError(t, err)
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "t1", `{"since": "2000-01-01T00:00:00Z"}`, withKey("rep"))
	require.Equal(t, 1.0, res.json(t)["count"])
	again = b.callWith(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "t1", `{"since": "2000-01-01T00:00:00Z"}`, withKey("rep"))
	require.Equal(t, string(res.body), string(again.body), "count 1 again, though nothing is failed now")
	res = b.callWith(t, http.MethodPost, "/v1/deliveries/"+deliveryID+"/retry", "t1", "", withKey("rty"))
	require.Equal(t, http.StatusAccepted, res.status)
	again = b.callWith(t, http.MethodPost, "/v1/deliveries/"+deliveryID+"/retry", "t1", "", withKey("rty"))
	require.Equal(t, string(res.body), string(again.body))
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
}

func TestIdempotencyKeyInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`
	for name, h := range map[string]http.Header{
		"Empty":    {"Idempotency-Key": {""}},
		"TooLong":  {"Idempotency-Key": {strings.Repeat("k", 256)}},
		"NonASCII": {"Idempotency-Key": {"clé"}},
		"Latin1":   {"Idempotency-Key": {"cl\xe9"}},
		"Twice":    {"Idempotency-Key": {"a", "b"}},
	} {
		res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, h)
		require.Equal(t, http.StatusBadRequest, res.status, name)
		require.Equal(t, "invalid_idempotency_key", res.code(t), name)
	}
	require.Zero(t, countSubscriptions(t, b))

	// 255 printable characters, spaces inside, are fine.
	key := "a b" + strings.Repeat("~", 252)
	res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", body, withKey(key))
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)

	// GET, PATCH and DELETE ignore the header: they are idempotent, or not worth it.
	sub := res.json(t)["id"].(string)
	res = b.callWith(t, http.MethodPatch, "/v1/subscriptions/"+sub, "", `{"description": "x"}`, withKey(""))
	require.Equal(t, http.StatusOK, res.status)
}
