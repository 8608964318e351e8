package api_test

import (
	"bytes"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/keycheck"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

// TestBlockedReason wires the API to a real key check, as the relay does, and makes some
// subscriptions unsignable the way a key rotation that forgot RELAY_ENCRYPTION_KEY_PREVIOUS
// does: their secret or a header value sealed with a key this relay lacks. Each shows why
// in blocked_reason wherever a subscription is answered, the others show null, tenancy is
// unchanged, and configuring the missing key clears the reason.
func TestBlockedReason(t *testing.T) {
	t.Parallel()
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, secrets.KeySize) }
	box := func(current, previous []byte) *secrets.Box {
		t.Helper()
		bx, err := secrets.New(current, previous)
		require.NoError(t, err)
		return bx
	}
	ours, theirs := box(key(1), nil), box(key(2), nil)
	var checker atomic.Pointer[keycheck.Checker]
	b := setup(t, withBox(ours), func(c *api.Config) {
		c.KeyProblem = func(id string) string {
			if k := checker.Load(); k != nil {
				return k.Problem(id)
			}
			return ""
		}
	})
	scan := func(open func(string) (string, error)) {
		t.Helper()
		k, err := keycheck.New(keycheck.Config{DB: b.db, Open: open, Logger: zerolog.New(zerolog.NewTestWriter(t))})
		require.NoError(t, err)
		require.NoError(t, k.Scan(t.Context()))
		checker.Store(k)
	}

	created := b.create(t, "t1", `{"target_url": "https://hooks.example.com/blocked", "event_types": ["*"]}`)
	require.Contains(t, created, "blocked_reason")
	require.Nil(t, created["blocked_reason"], "a new secret is sealed with the relay's own key")
	blocked := created["id"].(string)
	fine := b.createURL(t, "t1", "https://hooks.example.com/fine")
	header := b.create(t, "t1", `{"target_url": "https://hooks.example.com/header", "event_types": ["*"],
		"headers": {"Authorization": "Bearer abc"}}`)["id"].(string)
	other := b.createURL(t, "t2", "https://hooks.example.com/other")

	// Sealed by a relay with another key.
	sealedSecret, err := theirs.Seal("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	sealedHeader, err := theirs.Seal("Bearer abc")
	require.NoError(t, err)
	for _, id := range []string{blocked, other} {
		_, err = b.db.Exec(`UPDATE relay.subscriptions SET secret = $1 WHERE id = $2`, sealedSecret, id)
		require.NoError(t, err)
	}
	_, err = b.db.Exec(`UPDATE relay.subscriptions SET headers = jsonb_build_object('Authorization', jsonb_build_object('sealed', $1::text)) WHERE id = $2`,
		sealedHeader, header)
	require.NoError(t, err)
	scan(ours.Open)

	theirID := secrets.KeyID(key(2))
	reasonOf := func(sub map[string]any) any {
		t.Helper()
		require.Contains(t, sub, "blocked_reason", "always there, null when not blocked")
		return sub["blocked_reason"]
	}
	requireBlocked := func(sub map[string]any, what string) {
		t.Helper()
		reason, ok := reasonOf(sub).(string)
		require.True(t, ok, "%s: blocked_reason %v", sub["id"], sub["blocked_reason"])
		for _, want := range []string{
			"the relay cannot sign for this subscription: ", what,
			"unknown key (key " + theirID + ")",
			"configure the key it was sealed with as RELAY_ENCRYPTION_KEY or RELAY_ENCRYPTION_KEY_PREVIOUS",
			"Its deliveries wait, unsent, until then.",
		} {
			require.Contains(t, reason, want)
		}
		require.NotContains(t, reason, "Bearer", "never a value")
	}
	get := func(tenant, id string) map[string]any {
		t.Helper()
		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, tenant, "")
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		return res.json(t)
	}
	byID := func(tenant string) map[string]map[string]any {
		t.Helper()
		res := b.call(t, http.MethodGet, "/v1/subscriptions", tenant, "")
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		out := map[string]map[string]any{}
		for _, s := range res.json(t)["data"].([]any) {
			sub := s.(map[string]any)
			out[sub["id"].(string)] = sub
		}
		return out
	}

	t.Run("GetOne", func(t *testing.T) {
		requireBlocked(get("t1", blocked), "signing secret")
		requireBlocked(get("t1", header), `custom header "Authorization"`)
		require.Nil(t, reasonOf(get("t1", fine)))
		requireBlocked(get("", other), "signing secret")
	})
	t.Run("List", func(t *testing.T) {
		t1 := byID("t1")
		require.Len(t, t1, 3, "tenant t1 sees its own only")
		requireBlocked(t1[blocked], "signing secret")
		requireBlocked(t1[header], `custom header "Authorization"`)
		require.Nil(t, reasonOf(t1[fine]))
		all := byID("")
		require.Len(t, all, 4)
		requireBlocked(all[other], "signing secret")
		require.Equal(t, t1[blocked], all[blocked], "the operator sees the same")
	})
	t.Run("Tenancy", func(t *testing.T) {
		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+other, "t1", "")
		require.Equal(t, http.StatusNotFound, res.status)
		require.Equal(t, "not_found", res.code(t))
	})
	t.Run("Patch", func(t *testing.T) {
		res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+blocked, "t1", `{"description": "still waiting"}`)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		requireBlocked(res.json(t), "signing secret")
		require.Equal(t, res.json(t), get("t1", blocked))
	})
	t.Run("KeyConfigured", func(t *testing.T) {
		scan(box(key(1), key(2)).Open)
		for id, sub := range byID("") {
			require.Nil(t, reasonOf(sub), id)
		}
		require.Nil(t, reasonOf(get("t1", blocked)))
	})
}
