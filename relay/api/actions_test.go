package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.createURL(t, "t1", "https://hooks.example.com/")
	path := "/v1/subscriptions/" + id
	secretOf := func() string { return b.call(t, http.MethodGet, path+"/secret", "t1", "").json(t)["secret"].(string) }
	first := secretOf()
	updated := b.subscriptionState(t, id).UpdatedAt

	before := time.Now()
	res := b.call(t, http.MethodPost, path+"/rotate-secret", "t1", "")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	second := res.json(t)["secret"].(string)
	require.Len(t, res.json(t), 1, "only the secret: %s", res.body)
	require.NotEqual(t, first, second)
	_, err := signature.DecodeSecret(second)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(second, "whsec_"))
	require.Equal(t, second, secretOf(), "the new secret is the one shown from now on")
	require.Equal(t, "no-store", res.header.Get("Cache-Control"))

	st := b.subscriptionState(t, id)
	require.Equal(t, second, st.Secret)
	require.Equal(t, first, st.PreviousSecret.String, "the old secret signs beside the new one")
	require.WithinDuration(t, before.Add(time.Hour), st.PreviousSecretExpiresAt.Time, 5*time.Second, "for the configured overlap")
	require.True(t, st.UpdatedAt.After(updated))

	// A rotation during the overlap: only one previous secret, the one just replaced.
	res = b.call(t, http.MethodPost, path+"/rotate-secret", "t1", "{}")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	third := res.json(t)["secret"].(string)
	st = b.subscriptionState(t, id)
	require.Equal(t, third, st.Secret)
	require.Equal(t, second, st.PreviousSecret.String)
	require.NotContains(t, []string{first, second}, third)

	// Bodies other than nothing or {} are refused, and nothing rotates.
	snap := b.snapshot(t)
	for _, tc := range []struct {
		ct, body string
		status   int
		code     string
	}{
		{"application/json", `{"secret": "whsec_mine"}`, 400, "unknown_field"},
		{"application/json", `[]`, 400, "invalid_json"},
		{"application/json", `null`, 400, "invalid_json"},
		{"application/json", `{`, 400, "invalid_json"},
		{"application/json", `{} {}`, 400, "invalid_json"},
		{"text/plain", `{}`, 415, "unsupported_media_type"},
		{"application/json", `{"a": "` + strings.Repeat("x", 65<<10) + `"}`, 413, "body_too_large"},
	} {
		res := b.rawCall(t, http.MethodPost, path+"/rotate-secret", tc.ct, tc.body, false)
		require.Equal(t, tc.status, res.status, "%s %s", tc.ct, tc.body)
		require.Equal(t, tc.code, res.code(t))
	}
	require.Equal(t, snap, b.snapshot(t))
}

func TestRotateSecretWithoutOverlap(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *api.Config) { c.SecretRotationOverlap = 0 })
	id := b.createURL(t, "", "https://hooks.example.com/")
	res := b.call(t, http.MethodPost, "/v1/subscriptions/"+id+"/rotate-secret", "", "")
	require.Equal(t, http.StatusOK, res.status)
	var signsOld bool
	require.NoError(t, b.db.Get(&signsOld, `SELECT previous_secret_expires_at > now() FROM relay.subscriptions WHERE id = $1`, id))
	require.False(t, signsOld, "zero overlap: the old secret stops at once")

	_, err := api.New(api.Config{DB: b.db, DeliveryIDs: b.ids, SecretRotationOverlap: -time.Second})
	require.ErrorContains(t, err, "SecretRotationOverlap must not be negative")
	_, err = api.New(api.Config{DB: b.db, DeliveryIDs: b.ids, SealSecret: func(s string) (string, error) { return s, nil }})
	require.ErrorContains(t, err, "go together")
}

func TestRotateSecretSealed(t *testing.T) {
	t.Parallel()
	box, err := secrets.New(bytes.Repeat([]byte{1}, 32), nil)
	require.NoError(t, err)
	b := setup(t, func(c *api.Config) { c.SealSecret, c.OpenSecret = box.Seal, box.Open })
	created := b.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`)
	id, first := created["id"].(string), created["secret"].(string)

	res := b.call(t, http.MethodPost, "/v1/subscriptions/"+id+"/rotate-secret", "", "")
	require.Equal(t, http.StatusOK, res.status)
	second := res.json(t)["secret"].(string)

	st := b.subscriptionState(t, id)
	require.True(t, strings.HasPrefix(st.Secret, "enc:v1:"), "stored sealed")
	require.True(t, strings.HasPrefix(st.PreviousSecret.String, "enc:v1:"))
	cur, err := box.Open(st.Secret)
	require.NoError(t, err)
	prev, err := box.Open(st.PreviousSecret.String)
	require.NoError(t, err)
	require.Equal(t, []string{second, first}, []string{cur, prev})
	require.Equal(t, second, b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "", "").json(t)["secret"])
}

func TestSendTest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Event types and filter that webhook.test does not match: it goes anyway.
	sub := b.create(t, "t1", `{"target_url": "https://hooks.example.com/", "event_types": ["signup.created"], "filter": {"x": 1}, "ordered": true}`)["id"].(string)
	everything := b.createURL(t, "", "https://hooks.example.com/all")
	tenantAll := b.createURL(t, "t1", "https://hooks.example.com/t1-all")

	for _, body := range []string{"", "{}", " {} "} {
		queued := b.queued.Load()
		res := b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "t1", body)
		require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
		out := res.json(t)
		require.Len(t, out, 2)
		eventID, deliveryID := out["event_id"].(string), out["delivery_id"].(string)
		require.True(t, strings.HasPrefix(deliveryID, "dlv_"))
		require.Equal(t, queued+1, b.queued.Load(), "the deliverer is woken")

		var ev struct {
			EventType    string  `db:"event_type"`
			TenantID     *string `db:"tenant_id"`
			Payload      string  `db:"payload"`
			Dispatched   bool    `db:"dispatched"`
			OrderingKey  *string `db:"ordering_key"`
			Deliveries   int     `db:"deliveries"`
			DeliverySub  string  `db:"delivery_sub"`
			DeliveryDue  bool    `db:"delivery_due"`
			DeliveryStat string  `db:"delivery_status"`
			DeliveryKey  *string `db:"delivery_key"`
			Attempts     int     `db:"attempt_count"`
		}
		require.NoError(t, b.db.Get(&ev, `SELECT o.event_type, o.tenant_id, o.payload::text AS payload,
			o.dispatched_at IS NOT NULL AS dispatched, o.ordering_key,
			(SELECT count(*) FROM relay.deliveries x WHERE x.event_id = o.event_id) AS deliveries,
			d.subscription_id AS delivery_sub, d.next_attempt_at <= now() AS delivery_due, d.status AS delivery_status,
			d.ordering_key AS delivery_key, d.attempt_count
			FROM relay.outbox o JOIN relay.deliveries d ON d.event_id = o.event_id WHERE o.event_id = $1`, eventID))
		require.Equal(t, "webhook.test", ev.EventType)
		require.Equal(t, "t1", *ev.TenantID)
		require.JSONEq(t, `{"subscription_id": "`+sub+`", "message": "test event from outbox-relay"}`, ev.Payload)
		require.True(t, ev.Dispatched, "born dispatched: the dispatcher never fans it out to %s or %s", everything, tenantAll)
		require.Nil(t, ev.OrderingKey)
		require.Equal(t, 1, ev.Deliveries, "this subscription only")
		require.Equal(t, sub, ev.DeliverySub)
		require.True(t, ev.DeliveryDue)
		require.Equal(t, "pending", ev.DeliveryStat)
		require.Nil(t, ev.DeliveryKey, "not held behind an ordered line")
		require.Zero(t, ev.Attempts)

		// It shows in the event and delivery views, for the tenant.
		res = b.call(t, http.MethodGet, "/v1/events/"+eventID, "t1", "")
		require.Equal(t, http.StatusOK, res.status)
		require.Len(t, res.json(t)["deliveries"], 1)
		res = b.call(t, http.MethodGet, "/v1/deliveries/"+deliveryID, "t1", "")
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, eventID, res.json(t)["event_id"])
	}

	// Paused or disabled: refused, nothing written.
	for _, status := range []string{"paused", "disabled"} {
		_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = $2 WHERE id = $1`, sub, status)
		require.NoError(t, err)
		snap := b.snapshot(t)
		res := b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "t1", "")
		require.Equal(t, http.StatusConflict, res.status, status)
		require.Equal(t, "subscription_not_active", res.code(t))
		require.Contains(t, res.message(t), status)
		require.Equal(t, snap, b.snapshot(t))
	}

	for _, bad := range []struct{ body, code string }{{`{"event_type": "x"}`, "unknown_field"}, {`[]`, "invalid_json"}, {`{"a"`, "invalid_json"}} {
		res := b.call(t, http.MethodPost, "/v1/subscriptions/"+everything+"/test", "", bad.body)
		require.Equal(t, http.StatusBadRequest, res.status, bad.body)
		require.Equal(t, bad.code, res.code(t))
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "", "https://hooks.example.com/")
	other := b.createURL(t, "", "https://hooks.example.com/other")

	add := func(subID, status string, attempts int, age string) int64 {
		o, e := b.insertEvent(t, "signup.created", "", `{}`)
		id := b.insertDelivery(t, o, e, subID, status, attempts)
		_, err := b.db.Exec(`UPDATE relay.deliveries SET created_at = now() - $2::interval,
			next_attempt_at = CASE WHEN status = 'pending' THEN next_attempt_at END,
			lease_owner = CASE WHEN status <> 'pending' THEN 'stale-owner' END WHERE id = $1`, id, age)
		require.NoError(t, err)
		return id
	}
	oldFailed := add(sub, "failed", 5, "3 days")
	newFailed := add(sub, "failed", 5, "1 hour")
	newFailed2 := add(sub, "failed", 2, "10 minutes")
	cancelled := add(sub, "cancelled", 1, "1 hour")
	succeeded := add(sub, "succeeded", 1, "1 hour")
	pending := add(sub, "pending", 1, "1 hour")
	otherFailed := add(other, "failed", 5, "1 hour")

	since := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	queued := b.queued.Load()
	res := b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "`+since+`"}`)
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Equal(t, map[string]any{"count": 2.0}, res.json(t))
	require.Equal(t, queued+1, b.queued.Load())

	for _, id := range []int64{newFailed, newFailed2} {
		st := b.deliveryState(t, id)
		require.Equal(t, "pending", st.Status)
		require.True(t, st.Due.Bool, "due now")
		require.False(t, st.LeaseOwner.Valid, "no lease")
		require.False(t, st.LeaseUntil.Valid)
	}
	require.Equal(t, 5, b.deliveryState(t, newFailed).AttemptCount, "numbering continues: the next attempt is 6")
	require.Equal(t, 2, b.deliveryState(t, newFailed2).AttemptCount)
	for id, want := range map[int64]string{oldFailed: "failed", cancelled: "cancelled", succeeded: "succeeded", pending: "pending", otherFailed: "failed"} {
		require.Equal(t, want, b.deliveryState(t, id).Status, "delivery %d", id)
	}
	require.False(t, b.deliveryState(t, pending).Due.Bool, "a pending delivery keeps its schedule")

	// Other statuses, and a since with an offset and fractions.
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "2000-01-01T00:00:00.123+02:00", "status": "cancelled"}`)
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Equal(t, 1.0, res.json(t)["count"])
	require.Equal(t, "pending", b.deliveryState(t, cancelled).Status)
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "0001-01-01T00:00:00Z", "status": "succeeded"}`)
	require.Equal(t, 1.0, res.json(t)["count"])
	for _, since := range []string{"9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999999-23:59", "9999-12-31T23:59:59+23:59"} {
		res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "`+since+`", "status": null}`)
		require.Equal(t, http.StatusAccepted, res.status, "%s: %s", since, res.body)
		require.Equal(t, 0.0, res.json(t)["count"], "nothing that new")
	}
	for _, since := range []string{"0000-01-01T00:00:00-23:59", "0000-01-01T00:00:00+23:59"} {
		res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "`+since+`", "status": "cancelled"}`)
		require.Equal(t, http.StatusAccepted, res.status, "%s: %s", since, res.body)
	}
	// The old failure, with since far back: status null is failed.
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "1970-01-01T00:00:00Z", "status": null}`)
	require.Equal(t, 1.0, res.json(t)["count"])
	require.Equal(t, "pending", b.deliveryState(t, oldFailed).Status)

	// A paused subscription's deliveries are re-queued too (they wait for it).
	_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = 'paused' WHERE id = $1`, other)
	require.NoError(t, err)
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+other+"/replay", "", `{"since": "`+since+`"}`)
	require.Equal(t, 1.0, res.json(t)["count"])

	// Bad bodies change nothing.
	snap := b.snapshot(t)
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"since": ""}`, 422, "invalid_since"},
		{`{"since": "yesterday"}`, 422, "invalid_since"},
		{`{"since": "2026-11-27"}`, 422, "invalid_since"},
		{`{"since": "2026-11-27 05:00:00Z"}`, 422, "invalid_since"},
		{`{"since": "2026-13-27T05:00:00Z"}`, 422, "invalid_since"},
		{`{"since": "2026-11-27T05:00:00+25:00"}`, 422, "invalid_since"},
		{`{"since": "2026-11-27T05:00:00"}`, 422, "invalid_since"},
		{`{"since": "10000-01-01T00:00:00Z"}`, 422, "invalid_since"},
		{`{"since": 1700000000}`, 400, "invalid_json"},
		{`{"since": ["2026-11-27T05:00:00Z"]}`, 400, "invalid_json"},
		{`{"since": "2026-11-27T05:00:00Z", "status": "pending"}`, 422, "invalid_status"},
		{`{"since": "2026-11-27T05:00:00Z", "status": "FAILED"}`, 422, "invalid_status"},
		{`{"since": "2026-11-27T05:00:00Z", "status": 1}`, 400, "invalid_json"},
		{`{"since": "2026-11-27T05:00:00Z", "until": "2026-11-28T05:00:00Z"}`, 400, "unknown_field"},
		{`{"since": "2026-11-27T05:00:00Z"`, 400, "invalid_json"},
		{`[{"since": "2026-11-27T05:00:00Z"}]`, 400, "invalid_json"},
	} {
		res := b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", tc.body)
		require.Equal(t, tc.status, res.status, "%s: %s", tc.body, res.body)
		require.Equal(t, tc.code, res.code(t), tc.body)
	}
	res = b.rawCall(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "text/plain", `{"since": "2026-11-27T05:00:00Z"}`, false)
	require.Equal(t, http.StatusUnsupportedMediaType, res.status)
	res = b.rawCall(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "application/json", `{"since": "`+strings.Repeat("1", 65<<10)+`"}`, true)
	require.Equal(t, http.StatusRequestEntityTooLarge, res.status)
	require.Equal(t, snap, b.snapshot(t))

	// A deleted subscription has nothing to replay.
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+sub, "", "").status)
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", `{"since": "`+since+`"}`)
	require.Equal(t, http.StatusNotFound, res.status)
}

func TestReplayWithoutSinceTakesEveryStoredDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "t1", "https://hooks.example.com/")
	for range 2 {
		o, e := b.insertEvent(t, "signup.created", "t1", `{}`)
		b.insertDelivery(t, o, e, sub, "failed", 5)
	}
	// Replay accepts an empty body or {}.
	res := b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "t1", ``)
	require.Equal(t, http.StatusAccepted, res.status, res.body)
	require.Equal(t, 2.0, res.json(t)["count"])
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "t1", `{}`)
	require.Equal(t, http.StatusAccepted, res.status, res.body)
	require.Equal(t, 0.0, res.json(t)["count"], "they are pending now")
}

func TestRetryDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "t1", "https://hooks.example.com/")
	o, e := b.insertEvent(t, "signup.created", "t1", `{}`)
	failed := b.insertDelivery(t, o, e, sub, "failed", 2)
	b.insertAttempt(t, failed, 1, 500, "HTTP 500", "")
	b.insertAttempt(t, failed, 2, 0, "connection refused", "")
	path := "/v1/deliveries/" + b.ids.Format(failed) + "/retry"

	queued := b.queued.Load()
	res := b.call(t, http.MethodPost, path, "t1", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	d := res.json(t)
	require.Equal(t, b.ids.Format(failed), d["id"])
	require.Equal(t, "pending", d["status"])
	require.Equal(t, 2.0, d["attempt_count"], "the next attempt is 3")
	require.Len(t, d["attempts"], 2, "the history stays")
	require.NotNil(t, d["next_attempt_at"])
	require.Equal(t, queued+1, b.queued.Load())
	st := b.deliveryState(t, failed)
	require.Equal(t, "pending", st.Status)
	require.True(t, st.Due.Bool)

	// A delivery waiting for its next retry is brought forward.
	waiting := b.insertDelivery(t, o, e, b.createURL(t, "t1", "https://hooks.example.com/w"), "pending", 1)
	require.False(t, b.deliveryState(t, waiting).Due.Bool)
	res = b.call(t, http.MethodPost, "/v1/deliveries/"+b.ids.Format(waiting)+"/retry", "t1", "{}")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.True(t, b.deliveryState(t, waiting).Due.Bool)

	// Succeeded and cancelled deliveries go again too.
	for _, status := range []string{"succeeded", "cancelled"} {
		id := b.insertDelivery(t, o, e, b.createURL(t, "t1", "https://hooks.example.com/"+status), status, 1)
		res := b.call(t, http.MethodPost, "/v1/deliveries/"+b.ids.Format(id)+"/retry", "t1", "")
		require.Equal(t, http.StatusAccepted, res.status, status)
		require.Equal(t, "pending", res.json(t)["status"])
	}

	// In flight: pending under a live lease. Refused, untouched.
	_, err := b.db.Exec(`UPDATE relay.deliveries SET lease_owner = 'replica-1', lease_until = now() + interval '10 seconds', attempt_count = 3 WHERE id = $1`, failed)
	require.NoError(t, err)
	snap := b.snapshot(t)
	res = b.call(t, http.MethodPost, path, "t1", "")
	require.Equal(t, http.StatusConflict, res.status)
	require.Equal(t, "delivery_in_flight", res.code(t))
	require.Equal(t, snap, b.snapshot(t))

	// A lease that ran out (its replica died) is not in flight: the retry drops it.
	_, err = b.db.Exec(`UPDATE relay.deliveries SET lease_until = now() - interval '1 second' WHERE id = $1`, failed)
	require.NoError(t, err)
	res = b.call(t, http.MethodPost, path, "t1", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	st = b.deliveryState(t, failed)
	require.False(t, st.LeaseOwner.Valid)
	require.Equal(t, 3, st.AttemptCount)

	// Bad bodies.
	for _, bad := range []struct{ body, code string }{{`{"delay": 1}`, "unknown_field"}, {`"now"`, "invalid_json"}, {`{`, "invalid_json"}} {
		res := b.call(t, http.MethodPost, path, "t1", bad.body)
		require.Equal(t, http.StatusBadRequest, res.status, bad.body)
		require.Equal(t, bad.code, res.code(t))
	}
	require.Equal(t, http.StatusUnsupportedMediaType, b.rawCall(t, http.MethodPost, path, "text/plain", "{}", false).status)

	// The subscription deleted: its deliveries stay readable but cannot be retried.
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+sub, "t1", "").status)
	snap = b.snapshot(t)
	res = b.call(t, http.MethodPost, path, "t1", "")
	require.Equal(t, http.StatusConflict, res.status)
	require.Equal(t, "subscription_deleted", res.code(t))
	require.Equal(t, snap, b.snapshot(t))
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(failed), "t1", "").status)

	for _, bad := range []string{"dlv_0", "dlv_", "dlv_ZZ", "123", "dlv_-1", b.ids.Format(failed + 1000)} {
		res := b.call(t, http.MethodPost, "/v1/deliveries/"+bad+"/retry", "t1", "")
		require.Equal(t, http.StatusNotFound, res.status, bad)
		require.Equal(t, "not_found", res.code(t))
	}
}

// TestWithDeliverer runs the real deliverer against the API's test, rotate-secret, retry and
// replay, with secrets sealed at rest: what a receiver gets verifies with the secrets the
// API handed out.
func TestWithDeliverer(t *testing.T) {
	t.Parallel()
	box, err := secrets.New(bytes.Repeat([]byte{7}, 32), nil)
	require.NoError(t, err)
	var (
		mu sync.Mutex
		d  *deliver.Deliverer
	)
	kick := func() {
		mu.Lock()
		defer mu.Unlock()
		if d != nil {
			d.Kick()
		}
	}
	b := setup(t, func(c *api.Config) {
		c.Targets = targets.Policy{AllowHTTP: true, AllowPrivate: true}
		c.SealSecret, c.OpenSecret = box.Seal, box.Open
		c.DeliveriesQueued = kick
	})
	mu.Lock()
	d, err = deliver.New(deliver.Config{
		DB:           b.db,
		DeliveryIDs:  b.ids,
		Owner:        "api-test",
		UserAgent:    "outbox-relay/test",
		PollInterval: time.Second, // long: the API's kick is what starts each send
		OpenSecret:   box.Open,
		Logger:       zerolog.New(zerolog.NewTestWriter(t)),
	})
	mu.Unlock()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	rc := relaytest.NewReceiver(t)
	created := b.create(t, "t1", `{"target_url": "`+rc.URL+`/hook", "event_types": ["signup.created"]}`)
	sub, first := created["id"].(string), created["secret"].(string)

	verify := func(r relaytest.Request, secret string) {
		t.Helper()
		v, err := signature.NewVerifier(secret)
		require.NoError(t, err)
		require.NoError(t, v.Verify(r.Header, r.Body))
	}

	// Test event.
	res := b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "t1", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	eventID, deliveryID := res.json(t)["event_id"].(string), res.json(t)["delivery_id"].(string)
	got := rc.WaitFor(t, 1, 10*time.Second)[0]
	verify(got, first)
	require.Equal(t, eventID, got.Header.Get("webhook-id"))
	require.Equal(t, "webhook.test", got.Header.Get("X-Webhook-Event"))
	require.Equal(t, "1", got.Header.Get("X-Webhook-Attempt"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(got.Body, &body))
	require.Equal(t, "t1", body["tenant_id"])
	require.Equal(t, map[string]any{"subscription_id": sub, "message": "test event from outbox-relay"}, body["data"])
	relaytest.Eventually(t, 10*time.Second, func() bool {
		return b.call(t, http.MethodGet, "/v1/deliveries/"+deliveryID, "t1", "").json(t)["status"] == "succeeded"
	}, "test delivery recorded as succeeded")

	// Rotation: both secrets verify during the overlap.
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/rotate-secret", "t1", "")
	require.Equal(t, http.StatusOK, res.status)
	second := res.json(t)["secret"].(string)
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "t1", "")
	require.Equal(t, http.StatusAccepted, res.status)
	got = rc.WaitFor(t, 2, 10*time.Second)[1]
	verify(got, first)
	verify(got, second)
	require.Len(t, strings.Fields(got.Header.Get("webhook-signature")), 2)

	// Retry of the first test delivery: attempt 2, same event id, new signatures.
	res = b.call(t, http.MethodPost, "/v1/deliveries/"+deliveryID+"/retry", "t1", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	got = rc.WaitFor(t, 3, 10*time.Second)[2]
	require.Equal(t, eventID, got.Header.Get("webhook-id"))
	require.Equal(t, "2", got.Header.Get("X-Webhook-Attempt"))
	verify(got, second)

	// Replay of succeeded deliveries: both test deliveries go again, with their next numbers.
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var pending int
		require.NoError(t, b.db.Get(&pending, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending'`))
		return pending == 0
	}, "every delivery finished")
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "t1", `{"since": "2000-01-01T00:00:00Z", "status": "succeeded"}`)
	require.Equal(t, http.StatusAccepted, res.status)
	require.Equal(t, 2.0, res.json(t)["count"])
	reqs := rc.WaitFor(t, 5, 10*time.Second)
	attempts := map[string]string{}
	for _, r := range reqs[3:] {
		attempts[r.Header.Get("webhook-id")] = r.Header.Get("X-Webhook-Attempt")
	}
	require.Equal(t, "3", attempts[eventID])
	require.Len(t, attempts, 2)
}

// TestRequeueTakesTenantTurn re-queues, by replay and by retry, finished deliveries written
// before deliveries.tenant_key existed (so empty): each comes back pending in its subscription's
// tenant turn, which is what claims take turns by, and an operator subscription's in the
// no-tenant turn.
func TestRequeueTakesTenantTurn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenantKey := func(id int64) string {
		t.Helper()
		var k string
		require.NoError(t, b.db.Get(&k, `SELECT tenant_key FROM relay.deliveries WHERE id = $1`, id))
		return k
	}
	add := func(subID, tenant string) int64 {
		t.Helper()
		o, e := b.insertEvent(t, "signup.created", tenant, `{}`)
		id := b.insertDelivery(t, o, e, subID, "failed", 3)
		_, err := b.db.Exec(`UPDATE relay.deliveries SET tenant_key = '' WHERE id = $1`, id)
		require.NoError(t, err)
		return id
	}
	sub := b.createURL(t, "t1", "https://hooks.example.com/t1")
	replayed, retried := add(sub, "t1"), add(sub, "t1")
	op := b.createURL(t, "", "https://hooks.example.com/op")
	opReplayed := add(op, "")

	res := b.call(t, http.MethodPost, "/v1/deliveries/"+b.ids.Format(retried)+"/retry", "t1", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Equal(t, "pending", b.deliveryState(t, retried).Status)
	require.Equal(t, "t1", tenantKey(retried))
	require.Equal(t, "", tenantKey(replayed), "a retry touches only its delivery")

	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "t1", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Equal(t, 1.0, res.json(t)["count"], "the retried one is pending already")
	require.Equal(t, "pending", b.deliveryState(t, replayed).Status)
	require.Equal(t, "t1", tenantKey(replayed))

	// The operator replays a tenant's subscription: still the tenant's turn, not the caller's.
	_, err := b.db.Exec(`UPDATE relay.deliveries SET status = 'failed', tenant_key = '' WHERE id = $1`, replayed)
	require.NoError(t, err)
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/replay", "", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Equal(t, "t1", tenantKey(replayed))

	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+op+"/replay", "", "")
	require.Equal(t, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Equal(t, "pending", b.deliveryState(t, opReplayed).Status)
	require.Equal(t, "", tenantKey(opReplayed))
}
