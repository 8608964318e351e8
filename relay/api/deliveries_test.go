package api_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDeleteSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t)

	sub := b.createURL(t, "", "https://hooks.example.com/gone")
	keep := b.createURL(t, "", "https://hooks.example.com/keep")
	o1, e1 := b.insertEvent(t, "signup.created", "", `{"n": 1}`)
	o2, e2 := b.insertEvent(t, "signup.created", "", `{"n": 2}`)
	pending := b.insertDelivery(t, o1, e1, sub, "pending", 0)
	retrying := b.insertDelivery(t, o2, e2, sub, "pending", 2)
	succeeded := b.insertDelivery(t, o2, e2, keep, "succeeded", 1)
	done := b.insertDelivery(t, o1, e1, keep, "pending", 0)
	_, err := b.db.Exec(`UPDATE relay.deliveries SET lease_owner = 'replica-1', lease_until = now() + interval '10 seconds' WHERE id = $1`, retrying)
	require.NoError(t, err)
	failed := b.insertDelivery(t, o2, e2, b.createURL(t, "", "https://hooks.example.com/x"), "failed", 5)

	res := b.call(t, http.MethodDelete, "/v1/subscriptions/"+sub, "", "")
	require.Equal(t, http.StatusNoContent, res.status, "body: %s", res.body)
	require.Empty(t, res.body)

	status := func(id int64) string {
		var s string
		require.NoError(t, b.db.Get(&s, `SELECT status FROM relay.deliveries WHERE id = $1`, id))
		return s
	}
	require.Equal(t, "cancelled", status(pending))
	require.Equal(t, "cancelled", status(retrying))
	require.Equal(t, "succeeded", status(succeeded))
	require.Equal(t, "pending", status(done), "another subscription's delivery is untouched")
	require.Equal(t, "failed", status(failed))
	var leased int
	require.NoError(t, b.db.Get(&leased, `SELECT count(*) FROM relay.deliveries WHERE id = $1 AND (lease_owner IS NOT NULL OR next_attempt_at IS NOT NULL)`, retrying))
	require.Zero(t, leased)

	// Soft: the row stays, deleted.
	var deletedAt *time.Time
	require.NoError(t, b.db.Get(&deletedAt, `SELECT deleted_at FROM relay.subscriptions WHERE id = $1`, sub))
	require.NotNil(t, deletedAt)

	// Gone everywhere, and a second DELETE is 404.
	for _, path := range []string{"", "/secret", "/deliveries"} {
		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+sub+path, "", "")
		require.Equal(t, http.StatusNotFound, res.status, path)
		require.Equal(t, "not_found", res.code(t))
	}
	res = b.call(t, http.MethodDelete, "/v1/subscriptions/"+sub, "", "")
	require.Equal(t, http.StatusNotFound, res.status)
	require.Equal(t, "not_found", res.code(t))
	list := b.call(t, http.MethodGet, "/v1/subscriptions", "", "").json(t)["data"].([]any)
	for _, s := range list {
		require.NotEqual(t, sub, s.(map[string]any)["id"])
	}
	require.Len(t, list, 2)

	// Its deliveries stay readable, cancelled.
	res = b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(pending), "", "")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	require.Equal(t, "cancelled", res.json(t)["status"])
	require.Nil(t, res.json(t)["next_attempt_at"])
}

func TestDeliveryView(t *testing.T) {
	t.Parallel()
	b := setup(t)

	sub := b.createURL(t, "t1", "https://hooks.example.com/")
	o, e := b.insertEvent(t, "signup.created", "t1", `{"signup": {"id": "su_1"}}`)
	id := b.insertDelivery(t, o, e, sub, "pending", 3)
	b.insertAttempt(t, id, 2, 503, "HTTP 503", "try later")
	b.insertAttempt(t, id, 1, 0, "dial tcp: connection refused", "")
	b.insertAttempt(t, id, 3, 200, "", "ok")

	res := b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(id), "t1", "")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	d := res.json(t)
	require.Equal(t, b.ids.Format(id), d["id"])
	require.Equal(t, e, d["event_id"])
	require.Equal(t, sub, d["subscription_id"])
	require.Equal(t, "pending", d["status"])
	require.Equal(t, float64(3), d["attempt_count"])
	next, err := time.Parse(time.RFC3339Nano, d["next_attempt_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Minute), next, 30*time.Second)
	require.Len(t, d, 9)

	attempts := d["attempts"].([]any)
	require.Len(t, attempts, 3)
	a1 := attempts[0].(map[string]any)
	require.Equal(t, float64(1), a1["attempt"], "in attempt order")
	require.Nil(t, a1["status_code"], "no HTTP answer")
	require.Contains(t, a1, "status_code")
	require.Equal(t, "dial tcp: connection refused", a1["error"])
	require.Nil(t, a1["response_body"])
	require.Equal(t, float64(123), a1["duration_ms"])
	_, err = time.Parse(time.RFC3339Nano, a1["started_at"].(string))
	require.NoError(t, err)
	require.Len(t, a1, 6)
	a2 := attempts[1].(map[string]any)
	require.Equal(t, float64(503), a2["status_code"])
	require.Equal(t, "try later", a2["response_body"])
	a3 := attempts[2].(map[string]any)
	require.Equal(t, float64(200), a3["status_code"])
	require.Nil(t, a3["error"], "no error on success")
	require.Contains(t, a3, "error")

	// A delivery without attempts has an empty list, not null.
	o2, e2 := b.insertEvent(t, "signup.created", "t1", `{}`)
	fresh := b.insertDelivery(t, o2, e2, sub, "pending", 0)
	res = b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(fresh), "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, []any{}, res.json(t)["attempts"])

	for _, bad := range []string{"dlv_0", "dlv_", "dlv_ZZ", "123", "dlv_-1", "dlv_zzzzzzzzzzzzzz", b.ids.Format(fresh + 1000)} {
		res := b.call(t, http.MethodGet, "/v1/deliveries/"+bad, "", "")
		require.Equal(t, http.StatusNotFound, res.status, bad)
		require.Equal(t, "not_found", res.code(t))
	}
}

func TestListSubscriptionDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)

	sub := b.createURL(t, "", "https://hooks.example.com/")
	other := b.createURL(t, "", "https://hooks.example.com/other")
	var want []string
	for i := range 5 {
		o, e := b.insertEvent(t, "signup.created", "", fmt.Sprintf(`{"i": %d}`, i))
		status := "succeeded"
		if i%2 == 1 {
			status = "failed"
		}
		id := b.insertDelivery(t, o, e, sub, status, 1)
		b.insertAttempt(t, id, 1, 500, "HTTP 500", "")
		want = append([]string{b.ids.Format(id)}, want...) // newest first
		b.insertDelivery(t, o, e, other, "pending", 0)
	}

	var got []string
	cursor := ""
	for pages := 1; ; pages++ {
		path := "/v1/subscriptions/" + sub + "/deliveries?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		res := b.call(t, http.MethodGet, path, "", "")
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		page := res.json(t)
		for _, d := range page["data"].([]any) {
			dm := d.(map[string]any)
			got = append(got, dm["id"].(string))
			require.Equal(t, sub, dm["subscription_id"])
			require.Len(t, dm["attempts"], 1)
		}
		if page["next_cursor"] == nil {
			require.Equal(t, 3, pages)
			break
		}
		cursor = page["next_cursor"].(string)
	}
	require.Equal(t, want, got)

	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+sub+"/deliveries?status=failed", "", "")
	require.Equal(t, http.StatusOK, res.status)
	data := res.json(t)["data"].([]any)
	require.Len(t, data, 2)
	for _, d := range data {
		require.Equal(t, "failed", d.(map[string]any)["status"])
	}
	res = b.call(t, http.MethodGet, "/v1/subscriptions/"+sub+"/deliveries?status=pending", "", "")
	require.Equal(t, []any{}, res.json(t)["data"])
	require.Nil(t, res.json(t)["next_cursor"])

	res = b.call(t, http.MethodGet, "/v1/subscriptions/"+sub+"/deliveries?status=active", "", "")
	require.Equal(t, http.StatusUnprocessableEntity, res.status)
	require.Equal(t, "invalid_status", res.code(t))
}

func TestEventView(t *testing.T) {
	t.Parallel()
	b := setup(t)

	op := b.createURL(t, "", "https://hooks.example.com/operator")
	mine := b.createURL(t, "t1", "https://hooks.example.com/t1")
	o, e := b.insertEvent(t, "signup.created", "t1", `{"signup": {"id": "su_1", "email": "a@example.com"}}`)
	dOp := b.insertDelivery(t, o, e, op, "succeeded", 1)
	dMine := b.insertDelivery(t, o, e, mine, "pending", 1)
	b.insertAttempt(t, dMine, 1, 500, "HTTP 500", "boom")

	res := b.call(t, http.MethodGet, "/v1/events/"+e, "", "")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	ev := res.json(t)
	require.Equal(t, e, ev["event_id"])
	require.Equal(t, "signup.created", ev["event_type"])
	require.Equal(t, "t1", ev["tenant_id"])
	require.Equal(t, "key-1", ev["ordering_key"])
	require.Equal(t, map[string]any{"signup": map[string]any{"id": "su_1", "email": "a@example.com"}}, ev["payload"])
	_, err := time.Parse(time.RFC3339Nano, ev["created_at"].(string))
	require.NoError(t, err)
	require.Len(t, ev, 7)
	deliveries := ev["deliveries"].([]any)
	require.Len(t, deliveries, 2, "the operator sees every delivery")
	require.Equal(t, b.ids.Format(dOp), deliveries[0].(map[string]any)["id"])
	require.Equal(t, b.ids.Format(dMine), deliveries[1].(map[string]any)["id"])
	require.Len(t, deliveries[1].(map[string]any)["attempts"], 1)

	// The tenant sees its event with only its own subscription's delivery.
	res = b.call(t, http.MethodGet, "/v1/events/"+e, "t1", "")
	require.Equal(t, http.StatusOK, res.status)
	deliveries = res.json(t)["deliveries"].([]any)
	require.Len(t, deliveries, 1)
	require.Equal(t, b.ids.Format(dMine), deliveries[0].(map[string]any)["id"])

	// Also in upper case and without dashes.
	res = b.call(t, http.MethodGet, "/v1/events/"+strings.ToUpper(strings.ReplaceAll(e, "-", "")), "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, e, res.json(t)["event_id"])

	// An event without tenant, and events without deliveries.
	_, e2 := b.insertEvent(t, "user.deleted", "", `[1, 2]`)
	res = b.call(t, http.MethodGet, "/v1/events/"+e2, "", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Nil(t, res.json(t)["tenant_id"])
	require.Equal(t, []any{}, res.json(t)["deliveries"])
	require.Equal(t, []any{1.0, 2.0}, res.json(t)["payload"])

	for _, bad := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid", "{" + e + "}", e + "0", "1"} {
		res := b.call(t, http.MethodGet, "/v1/events/"+bad, "", "")
		require.Equal(t, http.StatusNotFound, res.status, bad)
		require.Equal(t, "not_found", res.code(t))
	}
}

// TestDeliveryIDs: the API shows random-looking IDs, which reveal neither the order nor the
// number of deliveries; IDs in the old form ("dlv_" + base36 of the row) stay valid for the
// deliveries that existed when the schema was upgraded, and for no later one; made-up IDs
// of the new shape are 404, never 500.
func TestDeliveryIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "t1", "https://hooks.example.com/a")
	var rows []int64
	for range 5 {
		o, e := b.insertEvent(t, "signup.created", "t1", `{}`)
		rows = append(rows, b.insertDelivery(t, o, e, sub, "failed", 1))
	}
	// The upgrade that introduced the random form found the first 3 deliveries.
	_, err := b.db.Exec(`UPDATE relay.settings SET value = $1 WHERE name = 'delivery_id_legacy_max'`, strconv.FormatInt(rows[2], 10))
	require.NoError(t, err)
	b = serve(t, b.db, b.db) // an API started after the upgrade

	var shown []string
	for _, row := range rows {
		res := b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(row), "t1", "")
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		id := res.json(t)["id"].(string)
		require.Regexp(t, `^dlv_[0-9a-hjkmnp-tv-z]{26}$`, id)
		require.NotContains(t, shown, id)
		shown = append(shown, id)
	}
	for i := 1; i < len(shown); i++ {
		same := 0
		for j := 4; j < len(shown[i]); j++ {
			if shown[i][j] == shown[i-1][j] {
				same++
			}
		}
		require.Less(t, same, 10, "consecutive deliveries' IDs look alike: %s %s", shown[i-1], shown[i])
	}

	for i, row := range rows {
		old := "dlv_" + strconv.FormatInt(row, 36)
		res := b.call(t, http.MethodGet, "/v1/deliveries/"+old, "t1", "")
		if i <= 2 {
			require.Equal(t, http.StatusOK, res.status, "old ID %s of a delivery from before the upgrade: %s", old, res.body)
			require.Equal(t, shown[i], res.json(t)["id"], "answered with its new ID")
			res = b.call(t, http.MethodPost, "/v1/deliveries/"+old+"/retry", "t1", "")
			require.Equal(t, http.StatusAccepted, res.status, "retry by old ID: %s", res.body)
			require.Equal(t, shown[i], res.json(t)["id"])
		} else {
			require.Equal(t, http.StatusNotFound, res.status, "old form of a delivery made after the upgrade: %s", old)
		}
	}

	for _, bad := range []string{"dlv_" + strings.Repeat("0", 26), "dlv_" + strings.Repeat("z", 26), "dlv_abcdefghjkmnpqrstvwxyz012",
		"dlv_" + strings.ToUpper(shown[0][4:]), shown[0] + "0", shown[0][:29]} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			path := "/v1/deliveries/" + bad
			if method == http.MethodPost {
				path += "/retry"
			}
			res := b.call(t, method, path, "t1", "")
			require.Equal(t, http.StatusNotFound, res.status, "%s %s: %s", method, bad, res.body)
			require.Equal(t, "not_found", res.code(t))
		}
	}
}
