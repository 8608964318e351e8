package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

const mask = "********"

// withBox makes the API seal and open with box, as the relay does with RELAY_ENCRYPTION_KEY.
func withBox(box *secrets.Box) func(*api.Config) {
	return func(c *api.Config) {
		c.SealSecret = box.Seal
		c.OpenSecret = box.Open
	}
}

func newBox(t *testing.T, key byte) *secrets.Box {
	t.Helper()
	var k []byte
	if key != 0 {
		k = bytes.Repeat([]byte{key}, secrets.KeySize)
	}
	box, err := secrets.New(k, nil)
	require.NoError(t, err)
	return box
}

// storedHeaders reads a subscription's headers column as the database holds it.
func (b *bundle) storedHeaders(t *testing.T, id string) (text string, values map[string]any) {
	t.Helper()
	require.NoError(t, b.db.Get(&text, `SELECT headers::text FROM relay.subscriptions WHERE id = $1`, id))
	require.NoError(t, json.Unmarshal([]byte(text), &values))
	return text, values
}

// revealed answers GET ?reveal=headers's headers, failing on anything but 200.
func (b *bundle) revealed(t *testing.T, tenant, id string) map[string]any {
	t.Helper()
	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"?reveal=headers", tenant, "")
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	return res.json(t)["headers"].(map[string]any)
}

func TestHeadersSealedAtRest(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, secrets.KeySize)
	box, err := secrets.New(key, nil)
	require.NoError(t, err)
	b := setup(t, withBox(box))

	sub := b.create(t, "tenant-a", `{"target_url": "https://hooks.example.com/", "event_types": ["*"],
		"headers": {"Authorization": "Bearer tok-123", "X-Team": "growth"}}`)
	id := sub["id"].(string)
	masked := map[string]any{"Authorization": mask, "X-Team": mask}
	require.Equal(t, masked, sub["headers"], "the 201 masks values too")

	// At rest: names in clear, every value a sealed object, no token anywhere.
	text, stored := b.storedHeaders(t, id)
	require.NotContains(t, text, "tok-123")
	require.NotContains(t, text, "growth")
	require.Len(t, stored, 2)
	for name, v := range stored {
		obj, ok := v.(map[string]any)
		require.True(t, ok, "%s is stored as an object: %v", name, v)
		require.Len(t, obj, 1, name)
		sealed, _ := obj["sealed"].(string)
		require.True(t, strings.HasPrefix(sealed, "enc:v1:"+secrets.KeyID(key)+":"), "%s: %s", name, sealed)
	}
	plain, err := secrets.OpenHeaders([]byte(text), box.Open)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Authorization": "Bearer tok-123", "X-Team": "growth"}, plain, "what the deliverer reads")

	// Every answer masks; only GET one with ?reveal=headers shows the values.
	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "tenant-a", "")
	require.Equal(t, masked, res.json(t)["headers"])
	res = b.call(t, http.MethodGet, "/v1/subscriptions", "tenant-a", "")
	require.Equal(t, masked, res.json(t)["data"].([]any)[0].(map[string]any)["headers"])
	res = b.call(t, http.MethodGet, "/v1/subscriptions?reveal=headers", "tenant-a", "")
	require.Equal(t, masked, res.json(t)["data"].([]any)[0].(map[string]any)["headers"], "reveal is GET one only")
	require.NotContains(t, string(res.body), "tok-123")
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123", "X-Team": "growth"}, b.revealed(t, "tenant-a", id))
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123", "X-Team": "growth"}, b.revealed(t, "", id), "the operator sees every tenant")

	// Tenancy holds for reveal: another tenant's subscription does not exist.
	for _, tenant := range []string{"tenant-b"} {
		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"?reveal=headers", tenant, "")
		require.Equal(t, http.StatusNotFound, res.status)
		require.Equal(t, "not_found", res.code(t))
		require.NotContains(t, string(res.body), "tok-123")
	}

	for _, q := range []string{"reveal=secret", "reveal=", "reveal=HEADERS", "reveal=headers&reveal=secret"} {
		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"?"+q, "tenant-a", "")
		require.Equal(t, http.StatusUnprocessableEntity, res.status, q)
		require.Equal(t, "invalid_reveal", res.code(t), q)
	}
}

// TestHeadersPatchKeepsMaskedValues is a client doing GET, modify, PATCH: the masks it sends
// back keep the stored values, its changes apply.
func TestHeadersPatchKeepsMaskedValues(t *testing.T) {
	t.Parallel()
	box := newBox(t, 3)
	b := setup(t, withBox(box))
	id := b.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"],
		"headers": {"Authorization": "Bearer tok-123", "X-Team": "growth"}}`)["id"].(string)
	_, before := b.storedHeaders(t, id)

	got := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "", "").json(t)
	headers := got["headers"].(map[string]any)
	headers["X-Team"] = "retention"
	headers["X-New"] = "fresh"
	res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", jsonBody(t, map[string]any{"headers": headers}))
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	require.Equal(t, map[string]any{"Authorization": mask, "X-Team": mask, "X-New": mask}, res.json(t)["headers"])
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123", "X-Team": "retention", "X-New": "fresh"}, b.revealed(t, "", id))
	text, after := b.storedHeaders(t, id)
	require.Equal(t, before["Authorization"], after["Authorization"], "the kept value is the stored one, not resealed")
	require.NotContains(t, text, "retention")
	require.NotContains(t, text, "fresh")

	// A name in another case still names the same header; a header left out is removed.
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"headers": {"authorization": "********"}}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	require.Equal(t, map[string]any{"authorization": "Bearer tok-123"}, b.revealed(t, "", id))

	// Other fields leave the headers alone.
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"description": "x"}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	require.Equal(t, map[string]any{"authorization": "Bearer tok-123"}, b.revealed(t, "", id))

	// A mask for a header that is not stored has nothing to keep.
	before2 := b.snapshot(t)
	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"headers": {"authorization": "********", "X-Other": "********"}}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s", res.body)
	require.Equal(t, "invalid_headers", res.code(t))
	require.Contains(t, res.message(t), `"X-Other"`)
	require.Equal(t, before2, b.snapshot(t))
}

// TestHeadersWithoutKey: a relay without an encryption key stores values in clear, and
// still masks them in answers.
func TestHeadersWithoutKey(t *testing.T) {
	t.Parallel()
	b := setup(t, withBox(newBox(t, 0)))
	id := b.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"],
		"headers": {"Authorization": "Bearer tok-123"}}`)["id"].(string)
	_, stored := b.storedHeaders(t, id)
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123"}, stored)
	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "", "")
	require.Equal(t, map[string]any{"Authorization": mask}, res.json(t)["headers"])
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123"}, b.revealed(t, "", id))

	res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"headers": {"Authorization": "********", "X-B": "b"}}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	_, stored = b.storedHeaders(t, id)
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123", "X-B": "b"}, stored)
}

// TestHeadersKeyTurnedOn: values stored in clear before a key was configured are shown and
// kept, and sealed when a PATCH keeps them.
func TestHeadersKeyTurnedOn(t *testing.T) {
	t.Parallel()
	box := newBox(t, 4)
	b := setup(t, withBox(box))
	id := b.createURL(t, "", "https://hooks.example.com/")
	_, err := b.db.Exec(`UPDATE relay.subscriptions SET headers = '{"Authorization": "Bearer old-clear"}' WHERE id = $1`, id)
	require.NoError(t, err)

	require.Equal(t, map[string]any{"Authorization": "Bearer old-clear"}, b.revealed(t, "", id))
	res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"headers": {"Authorization": "********"}}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	text, _ := b.storedHeaders(t, id)
	require.NotContains(t, text, "old-clear")
	require.Equal(t, map[string]any{"Authorization": "Bearer old-clear"}, b.revealed(t, "", id))
}

// TestHeadersKeyMissing: values sealed under a key the relay no longer has are still masked
// in GET and kept by a PATCH with the mask; reveal says what is wrong instead of a bare 500.
func TestHeadersKeyMissing(t *testing.T) {
	t.Parallel()
	sealedBy := setup(t, withBox(newBox(t, 5)))
	id := sealedBy.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"],
		"headers": {"Authorization": "Bearer tok-123"}}`)["id"].(string)
	_, before := sealedBy.storedHeaders(t, id)

	for name, box := range map[string]*secrets.Box{"NoKey": newBox(t, 0), "OtherKey": newBox(t, 6)} {
		a, err := api.New(api.Config{DB: sealedBy.db, DeliveryIDs: sealedBy.ids, SealSecret: box.Seal, OpenSecret: box.Open})
		require.NoError(t, err, name)
		b := *sealedBy
		b.srv = newServer(t, a)

		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "", "")
		require.Equal(t, http.StatusOK, res.status, "%s: %s", name, res.body)
		require.Equal(t, map[string]any{"Authorization": mask}, res.json(t)["headers"], name)

		res = b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"?reveal=headers", "", "")
		require.Equal(t, http.StatusInternalServerError, res.status, "%s: %s", name, res.body)
		require.Equal(t, "secret_unavailable", res.code(t), name)
		require.Equal(t, "a header value of this subscription is encrypted with a key this relay is not configured with", res.message(t), name)
		require.Empty(t, res.header.Get("Retry-After"), name)

		res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "", `{"headers": {"Authorization": "********"}}`)
		require.Equal(t, http.StatusOK, res.status, "%s: %s", name, res.body)
		_, after := b.storedHeaders(t, id)
		require.Equal(t, before, after, "%s: kept as stored", name)
	}
	require.Equal(t, map[string]any{"Authorization": "Bearer tok-123"}, sealedBy.revealed(t, "", id))
}
