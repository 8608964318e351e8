package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
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

// whsec answers a whsec_ secret of an n-byte random key.
func whsec(t *testing.T, n int) string {
	t.Helper()
	key := make([]byte, n)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// setupSealed is setup with secrets sealed by a Box of a fixed key, which it answers too.
func setupSealed(t *testing.T, opts ...func(*api.Config)) (*bundle, *secrets.Box) {
	t.Helper()
	box, err := secrets.New(bytes.Repeat([]byte{9}, 32), nil)
	require.NoError(t, err)
	b := setup(t, append([]func(*api.Config){func(c *api.Config) { c.SealSecret, c.OpenSecret = box.Seal, box.Open }}, opts...)...)
	return b, box
}

func TestCreateWithOwnSecret(t *testing.T) {
	t.Parallel()
	b, box := setupSealed(t)

	for _, n := range []int{24, 32, 64} {
		secret := whsec(t, n)
		created := b.create(t, "t1", `{"target_url": "https://hooks.example.com/own`+secret[6:10]+`", "event_types": ["*"], "secret": "`+secret+`"}`)
		id := created["id"].(string)
		require.Equal(t, secret, created["secret"], "the 201 shows the secret given")
		require.Equal(t, "v1", created["signature_scheme"])
		require.NotContains(t, created, "public_key")

		res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "t1", "")
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, map[string]any{"secret": secret}, res.json(t))

		st := b.subscriptionState(t, id)
		require.True(t, strings.HasPrefix(st.Secret, "enc:v1:"), "stored sealed like a made secret")
		require.NotContains(t, st.Secret, secret[6:])
		plain, err := box.Open(st.Secret)
		require.NoError(t, err)
		require.Equal(t, secret, plain)
	}

	t.Run("DuplicateStillDetected", func(t *testing.T) {
		body := `{"target_url": "https://hooks.example.com/dup", "event_types": ["*"], "secret": "` + whsec(t, 32) + `"}`
		first := b.create(t, "t1", body)
		res := b.call(t, http.MethodPost, "/v1/subscriptions", "t1", `{"target_url": "https://hooks.example.com/dup", "event_types": ["*"], "secret": "`+whsec(t, 32)+`"}`)
		require.Equal(t, http.StatusConflict, res.status, "body: %s", res.body)
		require.Equal(t, "duplicate_subscription", res.code(t))
		require.Equal(t, first["id"], res.json(t)["error"].(map[string]any)["existing_id"])
	})

	t.Run("IdempotencyKey", func(t *testing.T) {
		secret := whsec(t, 32)
		body := `{"target_url": "https://hooks.example.com/idem", "event_types": ["*"], "secret": "` + secret + `"}`
		h := http.Header{"Idempotency-Key": {"own-secret-1"}}
		first := b.callWith(t, http.MethodPost, "/v1/subscriptions", "t1", body, h)
		require.Equal(t, http.StatusCreated, first.status, "body: %s", first.body)
		again := b.callWith(t, http.MethodPost, "/v1/subscriptions", "t1", body, h)
		require.Equal(t, http.StatusCreated, again.status)
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
		require.Equal(t, first.body, again.body)
		require.Equal(t, secret, again.json(t)["secret"])

		// The same key with another secret is another request.
		other := strings.Replace(body, secret, whsec(t, 32), 1)
		res := b.callWith(t, http.MethodPost, "/v1/subscriptions", "t1", other, h)
		require.Equal(t, http.StatusUnprocessableEntity, res.status)
		require.Equal(t, "idempotency_key_reused", res.code(t))
	})
}

func TestCreateWithOwnSecretRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key23, key65 := whsec(t, 23), whsec(t, 65)
	raw32 := whsec(t, 32)[6:]
	before := b.snapshot(t)
	for _, tt := range []struct {
		name, secret, inMsg string
	}{
		{"NotWhsec", raw32, "must start with whsec_"},
		{"OtherPrefix", "whsk_" + raw32, "must start with whsec_"},
		{"Empty", "whsec_", "0 bytes"},
		{"BadBase64", "whsec_" + strings.Repeat("*", 44), "standard base64"},
		{"URLSafeBase64", "whsec_" + strings.Repeat("-_", 22), "standard base64"},
		{"Unpadded", "whsec_" + strings.TrimRight(whsec(t, 32)[6:], "="), "does not decode"},
		{"Newline", "whsec_" + raw32[:20] + `\n` + raw32[20:], "standard base64"},
		{"TrailingSpace", "whsec_" + raw32 + " ", "standard base64"},
		{"TooShort23", key23, "23 bytes; it must be 24 to 64"},
		{"TooLong65", key65, "65 bytes; it must be 24 to 64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := b.call(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"], "secret": "`+tt.secret+`"}`)
			require.Equal(t, http.StatusUnprocessableEntity, res.status, "body: %s", res.body)
			require.Equal(t, "invalid_secret", res.code(t))
			require.Contains(t, res.message(t), "secret")
			require.Contains(t, res.message(t), tt.inMsg)
			if enc := strings.TrimPrefix(tt.secret, "whsec_"); len(enc) > 8 {
				require.NotContains(t, string(res.body), strings.TrimSpace(strings.ReplaceAll(enc, `\n`, "")[:16]), "never echoes the value")
			}
		})
	}
	t.Run("WithV1a", func(t *testing.T) {
		res := b.call(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"], "signature_scheme": "v1a", "secret": "`+whsec(t, 32)+`"}`)
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "body: %s", res.body)
		require.Equal(t, "invalid_secret", res.code(t))
		require.Contains(t, res.message(t), "v1a")
	})
	t.Run("NotAString", func(t *testing.T) {
		res := b.call(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"], "secret": 42}`)
		require.Equal(t, http.StatusBadRequest, res.status, "body: %s", res.body)
		require.Equal(t, "invalid_json", res.code(t))
		require.Contains(t, res.message(t), `"secret"`)
	})
	for _, bad := range []string{`"v2"`, `"V1A"`, `""`, `"ed25519"`} {
		res := b.call(t, http.MethodPost, "/v1/subscriptions", "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"], "signature_scheme": `+bad+`}`)
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", bad, res.body)
		require.Equal(t, "invalid_signature_scheme", res.code(t))
		require.Contains(t, res.message(t), "signature_scheme must be one of v1, v1a")
	}
	require.Equal(t, before, b.snapshot(t), "nothing refused was stored")
}

// publicKeyOf decodes a whpk_ value with nothing but the standard library.
func publicKeyOf(t *testing.T, whpk string) ed25519.PublicKey {
	t.Helper()
	enc, ok := strings.CutPrefix(whpk, "whpk_")
	require.True(t, ok, whpk)
	raw, err := base64.StdEncoding.DecodeString(enc)
	require.NoError(t, err)
	require.Len(t, raw, ed25519.PublicKeySize)
	return raw
}

func TestSignatureSchemeV1a(t *testing.T) {
	t.Parallel()
	b, box := setupSealed(t)

	created := b.create(t, "t1", `{"target_url": "https://hooks.example.com/a", "event_types": ["*"], "signature_scheme": "v1a"}`)
	id := created["id"].(string)
	require.Equal(t, "v1a", created["signature_scheme"])
	require.NotContains(t, created, "secret")
	public := created["public_key"].(string)
	publicKeyOf(t, public)

	got := b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "t1", "").json(t)
	require.Equal(t, "v1a", got["signature_scheme"])
	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "t1", "")
	require.Equal(t, http.StatusOK, res.status)
	require.Equal(t, map[string]any{"public_key": public}, res.json(t))

	// Stored: the private key, sealed; its public half is what the API showed.
	st := b.subscriptionState(t, id)
	require.True(t, strings.HasPrefix(st.Secret, "enc:v1:"), st.Secret)
	private, err := box.Open(st.Secret)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(private, "whsk_"))
	raw, err := base64.StdEncoding.DecodeString(private[5:])
	require.NoError(t, err)
	require.Len(t, raw, ed25519.PrivateKeySize)
	require.Equal(t, []byte(publicKeyOf(t, public)), raw[32:])
	require.Equal(t, []byte(publicKeyOf(t, public)), []byte(ed25519.NewKeyFromSeed(raw[:32]).Public().(ed25519.PublicKey)))

	// Rotation: a new pair; the old private key signs beside it for the overlap.
	res = b.call(t, http.MethodPost, "/v1/subscriptions/"+id+"/rotate-secret", "t1", "")
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	rotated := res.json(t)
	require.Len(t, rotated, 1, "only the public key: %s", res.body)
	newPublic := rotated["public_key"].(string)
	require.NotEqual(t, public, newPublic)
	publicKeyOf(t, newPublic)
	st = b.subscriptionState(t, id)
	prev, err := box.Open(st.PreviousSecret.String)
	require.NoError(t, err)
	require.Equal(t, private, prev)
	require.Equal(t, map[string]any{"public_key": newPublic}, b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "t1", "").json(t))

	// No answer of any route carries the private key.
	cur, err := box.Open(st.Secret)
	require.NoError(t, err)
	for _, path := range []string{"/v1/subscriptions", "/v1/subscriptions/" + id, "/v1/subscriptions/" + id + "?reveal=headers", "/v1/subscriptions/" + id + "/secret"} {
		res := b.call(t, http.MethodGet, path, "t1", "")
		require.Equal(t, http.StatusOK, res.status, path)
		for _, k := range []string{private, cur} {
			require.NotContains(t, string(res.body), k[5:25], path)
		}
		require.NotContains(t, string(res.body), "whsk_", path)
	}

	// The scheme cannot be changed, nor a secret set.
	for body, code := range map[string]string{
		`{"signature_scheme": "v1"}`:                "invalid_signature_scheme",
		`{"signature_scheme": "v1a"}`:               "invalid_signature_scheme",
		`{"secret": "` + whsec(t, 32) + `"}`:        "invalid_secret",
		`{"description": "x", "secret": "whsec_A"}`: "invalid_secret",
	} {
		res := b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "t1", body)
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", body, res.body)
		require.Equal(t, code, res.code(t), body)
		require.NotContains(t, string(res.body), "whsec_", "never echoes the value")
	}
	require.Equal(t, "v1a", b.call(t, http.MethodGet, "/v1/subscriptions/"+id, "t1", "").json(t)["signature_scheme"])

	// v1 explicitly, and the default.
	v1 := b.create(t, "t1", `{"target_url": "https://hooks.example.com/b", "event_types": ["*"], "signature_scheme": "v1"}`)
	require.Equal(t, "v1", v1["signature_scheme"])
	require.True(t, strings.HasPrefix(v1["secret"].(string), "whsec_"))
	require.NotContains(t, v1, "public_key")
}

// TestSigningWithDeliverer runs the real deliverer: a subscription with its own secret and a
// v1a one, each webhook checked as a receiver would, the v1a one with crypto/ed25519 alone
// against the raw header.
func TestSigningWithDeliverer(t *testing.T) {
	t.Parallel()
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
	b, box := setupSealed(t, func(c *api.Config) {
		c.Targets = targets.Policy{AllowHTTP: true, AllowPrivate: true}
		c.DeliveriesQueued = kick
	})
	mu.Lock()
	var err error
	d, err = deliver.New(deliver.Config{
		DB: b.db, DeliveryIDs: b.ids, Owner: "api-test", UserAgent: "outbox-relay/test", PollInterval: time.Second,
		OpenSecret: box.Open, Logger: zerolog.New(zerolog.NewTestWriter(t)),
	})
	mu.Unlock()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	t.Run("OwnSecret", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		secret := whsec(t, 24) // a Svix-sized key
		sub := b.create(t, "", `{"target_url": "`+rc.URL+`/own", "event_types": ["*"], "secret": "`+secret+`"}`)["id"].(string)
		require.Equal(t, http.StatusAccepted, b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "", "").status)
		got := rc.WaitFor(t, 1, 10*time.Second)[0]
		v, err := signature.NewVerifier(secret)
		require.NoError(t, err)
		require.NoError(t, v.Verify(got.Header, got.Body))
		require.True(t, strings.HasPrefix(got.Header.Get("webhook-signature"), "v1,"))
	})

	t.Run("V1a", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		created := b.create(t, "", `{"target_url": "`+rc.URL+`/v1a", "event_types": ["*"], "signature_scheme": "v1a"}`)
		sub, public := created["id"].(string), created["public_key"].(string)
		require.Equal(t, http.StatusAccepted, b.call(t, http.MethodPost, "/v1/subscriptions/"+sub+"/test", "", "").status)
		got := rc.WaitFor(t, 1, 10*time.Second)[0]
		header := got.Header.Get("webhook-signature")
		require.Equal(t, header, got.Header.Get("X-Webhook-Signature"))
		enc, ok := strings.CutPrefix(header, "v1a,")
		require.True(t, ok, header)
		sig, err := base64.StdEncoding.DecodeString(enc)
		require.NoError(t, err)
		msg := got.Header.Get("webhook-id") + "." + got.Header.Get("webhook-timestamp") + "." + string(got.Body)
		require.True(t, ed25519.Verify(publicKeyOf(t, public), []byte(msg), sig), "ed25519 over id.timestamp.body")

		v, err := signature.NewVerifier(public)
		require.NoError(t, err)
		require.NoError(t, v.Verify(got.Header, got.Body), "and the relay's own verifier agrees")
	})
}
