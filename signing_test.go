package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// v1aSignatures reads a webhook-signature header the way a receiver without our code would:
// space-separated "v1a,<base64>" entries, each an ed25519 signature.
func v1aSignatures(t *testing.T, header string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range strings.Fields(header) {
		enc, ok := strings.CutPrefix(f, "v1a,")
		require.True(t, ok, "only v1a signatures: %q", header)
		sig, err := base64.StdEncoding.DecodeString(enc)
		require.NoError(t, err)
		require.Len(t, sig, ed25519.SignatureSize)
		out = append(out, sig)
	}
	return out
}

// rawPublicKey decodes "whpk_<base64>" with the standard library alone.
func rawPublicKey(t *testing.T, whpk string) ed25519.PublicKey {
	t.Helper()
	enc, ok := strings.CutPrefix(whpk, "whpk_")
	require.True(t, ok, whpk)
	pub, err := base64.StdEncoding.DecodeString(enc)
	require.NoError(t, err)
	require.Len(t, pub, ed25519.PublicKeySize)
	return pub
}

// TestV1aSignaturesEndToEnd runs the relay binary with RELAY_ENCRYPTION_KEY and a v1a
// subscription: its webhooks carry ed25519 signatures that crypto/ed25519 verifies with the
// public key the API handed out, both keys sign during a rotation's overlap, the private key
// is stored sealed and appears in no answer and no log line. A subscription created with its
// own whsec_ secret, on the same relay, signs with that secret.
func TestV1aSignaturesEndToEnd(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	ed, own := newCountingReceiver(t, 0), newCountingReceiver(t, 0)
	encKey := newKey(t)
	p := startRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+encKey, "RELAY_SECRET_ROTATION_OVERLAP=1h")
	var answers []string
	call := func(method, path string, body any) (int, map[string]any) {
		status, got := p.call(t, method, path, body)
		b, err := json.Marshal(got)
		require.NoError(t, err)
		answers = append(answers, string(b))
		return status, got
	}

	status, created := call(http.MethodPost, "/v1/subscriptions", map[string]any{
		"target_url": ed.URL + "/hook", "event_types": []string{"*"}, "signature_scheme": "v1a"})
	require.Equal(t, http.StatusCreated, status, "%v", created)
	id := created["id"].(string)
	require.Equal(t, "v1a", created["signature_scheme"])
	require.NotContains(t, created, "secret")
	firstPublic := created["public_key"].(string)

	key := make([]byte, 24) // the size Svix makes
	_, err := rand.Read(key)
	require.NoError(t, err)
	ownSecret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	status, ownSub := call(http.MethodPost, "/v1/subscriptions", map[string]any{
		"target_url": own.URL + "/hook", "event_types": []string{"*"}, "secret": ownSecret})
	require.Equal(t, http.StatusCreated, status, "%v", ownSub)
	require.Equal(t, ownSecret, ownSub["secret"])
	require.Equal(t, "v1", ownSub["signature_scheme"])

	// At rest: sealed, with nothing of either key in clear.
	var stored, storedOwn string
	require.NoError(t, db.Get(&stored, `SELECT secret FROM relay.subscriptions WHERE id = $1`, id))
	require.NoError(t, db.Get(&storedOwn, `SELECT secret FROM relay.subscriptions WHERE id = $1`, ownSub["id"]))
	for _, s := range []string{stored, storedOwn} {
		require.True(t, strings.HasPrefix(s, "enc:v1:"), "stored %q", s)
		require.NotContains(t, s, "whsk_")
		require.NotContains(t, s, "whsec_")
	}
	rawKey, err := base64.StdEncoding.DecodeString(encKey)
	require.NoError(t, err)
	box, err := secrets.New(rawKey, nil)
	require.NoError(t, err)
	firstPrivate, err := box.Open(stored)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(firstPrivate, "whsk_"))

	insertEvents(t, db, 1, 1)
	req := ed.WaitFor(t, 1, 15*time.Second)[0]
	sigs := v1aSignatures(t, req.Header.Get("webhook-signature"))
	require.Len(t, sigs, 1)
	msg := []byte(req.Header.Get("webhook-id") + "." + req.Header.Get("webhook-timestamp") + "." + string(req.Body))
	require.True(t, ed25519.Verify(rawPublicKey(t, firstPublic), msg, sigs[0]), "crypto/ed25519 verifies the v1a signature")
	require.Equal(t, req.Header.Get("webhook-signature"), req.Header.Get("X-Webhook-Signature"))

	ownReq := own.WaitFor(t, 1, 15*time.Second)[0]
	v, err := signature.NewVerifier(ownSecret)
	require.NoError(t, err)
	require.NoError(t, v.Verify(ownReq.Header, ownReq.Body), "the supplied secret signs")

	// Rotation: a new pair, and both keys sign during the overlap, new first.
	status, rotated := call(http.MethodPost, "/v1/subscriptions/"+id+"/rotate-secret", nil)
	require.Equal(t, http.StatusOK, status, "%v", rotated)
	newPublic := rotated["public_key"].(string)
	require.NotEqual(t, firstPublic, newPublic)
	status, shown := call(http.MethodGet, "/v1/subscriptions/"+id+"/secret", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, map[string]any{"public_key": newPublic}, shown)
	status, got := call(http.MethodGet, "/v1/subscriptions/"+id, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "v1a", got["signature_scheme"])
	call(http.MethodGet, "/v1/subscriptions", nil)

	insertEvents(t, db, 1, 1)
	req = ed.WaitFor(t, 2, 15*time.Second)[1]
	sigs = v1aSignatures(t, req.Header.Get("webhook-signature"))
	require.Len(t, sigs, 2, "two signatures during the overlap")
	msg = []byte(req.Header.Get("webhook-id") + "." + req.Header.Get("webhook-timestamp") + "." + string(req.Body))
	newPub, oldPub := rawPublicKey(t, newPublic), rawPublicKey(t, firstPublic)
	require.True(t, ed25519.Verify(newPub, msg, sigs[0]), "the new key's signature")
	require.True(t, ed25519.Verify(oldPub, msg, sigs[1]), "the old key's signature")
	require.False(t, ed25519.Verify(oldPub, msg, sigs[0]))
	for _, public := range []string{firstPublic, newPublic} {
		v, err := signature.NewVerifier(public)
		require.NoError(t, err)
		require.NoError(t, v.Verify(req.Header, req.Body), "the relay's verifier agrees for %s", public)
	}
	require.Equal(t, 0, p.stop(t))

	// The private keys are in no answer and no log line.
	require.NoError(t, db.Get(&stored, `SELECT secret FROM relay.subscriptions WHERE id = $1`, id))
	newPrivate, err := box.Open(stored)
	require.NoError(t, err)
	for _, private := range []string{firstPrivate, newPrivate} {
		enc := strings.TrimPrefix(private, "whsk_")
		for _, a := range answers {
			require.NotContains(t, a, enc[:32])
		}
		require.NotContains(t, p.Output(), enc[:32])
	}
	for _, a := range answers {
		require.NotContains(t, a, "whsk_")
	}
	require.NotContains(t, p.Output(), "whsk_")
	require.NotContains(t, p.Output(), ownSecret[6:])
}
