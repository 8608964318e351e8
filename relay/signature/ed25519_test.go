package signature_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/signature"
)

// newPair answers a fresh key pair in text form and the public key as bytes.
func newPair(t testing.TB) (private, public string, pub ed25519.PublicKey) {
	t.Helper()
	private, public, err := signature.NewKeyPair()
	require.NoError(t, err)
	pub, err = signature.DecodePublicKey(public)
	require.NoError(t, err)
	return private, public, pub
}

func mustSigner(t testing.TB, key string) signature.Signer {
	t.Helper()
	s, err := signature.ParseSigningKey(key)
	require.NoError(t, err)
	return s
}

func TestNewKeyPair(t *testing.T) {
	t.Parallel()
	private, public, pub := newPair(t)
	require.True(t, strings.HasPrefix(private, "whsk_"), private)
	require.True(t, strings.HasPrefix(public, "whpk_"), public)
	require.Len(t, pub, 32)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(private, "whsk_"))
	require.NoError(t, err)
	require.Len(t, raw, 64)
	require.Equal(t, []byte(pub), raw[32:], "the private key's second half is the public key")

	got, err := signature.PublicKeyOf(private)
	require.NoError(t, err)
	require.Equal(t, public, got)

	other, _, _ := newPair(t)
	require.NotEqual(t, private, other)

	_, err = signature.PublicKeyOf(vectorSecret)
	require.ErrorIs(t, err, signature.ErrInvalidSecret, "an HMAC secret has no public key")
}

// TestEd25519SignatureIsStandardWebhooksV1a checks the v1a format against crypto/ed25519
// directly: "v1a," and the base64 of the ed25519 signature over "<id>.<timestamp>.<body>".
func TestEd25519SignatureIsStandardWebhooksV1a(t *testing.T) {
	t.Parallel()
	private, _, pub := newPair(t)
	s := mustSigner(t, private)
	require.Equal(t, signature.SchemeEd25519, s.Scheme())

	sig := signature.SignatureHeader([]signature.Signer{s}, vectorID, vectorTimestamp, []byte(vectorBody))
	encoded, ok := strings.CutPrefix(sig, "v1a,")
	require.True(t, ok, sig)
	raw, err := base64.StdEncoding.DecodeString(encoded)
	require.NoError(t, err)
	msg := []byte(vectorID + "." + "1614265330" + "." + vectorBody)
	require.True(t, ed25519.Verify(pub, msg, raw))
	require.False(t, ed25519.Verify(pub, append(msg, ' '), raw))

	// ed25519 is deterministic: the same message, the same signature.
	require.Equal(t, sig, signature.SignatureHeader([]signature.Signer{s}, vectorID, vectorTimestamp, []byte(vectorBody)))
}

func TestParseSigningKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, signature.SchemeHMAC, mustSigner(t, vectorSecret).Scheme())

	_, seed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for name, bad := range map[string]string{
		"Seed only":     "whsk_" + base64.StdEncoding.EncodeToString(seed.Seed()),
		"NotBase64":     "whsk_%%%",
		"Empty":         "whsk_",
		"Unpadded":      "whsk_" + base64.RawStdEncoding.EncodeToString(seed),
		"PublicKey":     "whpk_" + base64.StdEncoding.EncodeToString(seed[32:]),
		"HMACEmpty":     "whsec_",
		"TrailingSpace": "whsk_" + base64.StdEncoding.EncodeToString(seed) + " ",
	} {
		t.Run(strings.ReplaceAll(name, " ", ""), func(t *testing.T) {
			_, err := signature.ParseSigningKey(bad)
			require.ErrorIs(t, err, signature.ErrInvalidSecret)
			if _, encoded, _ := strings.Cut(bad, "_"); len(encoded) > 8 {
				require.NotContains(t, err.Error(), strings.TrimSpace(encoded), "never quotes the key")
			}
		})
	}
}

func TestVerifyEd25519(t *testing.T) {
	t.Parallel()
	oldPriv, oldPub, _ := newPair(t)
	newPriv, newPub, _ := newPair(t)
	body := []byte(vectorBody)
	ts := vectorTimestamp
	both := signature.SignatureHeader([]signature.Signer{mustSigner(t, newPriv), mustSigner(t, oldPriv)}, vectorID, ts, body)
	require.Len(t, strings.Fields(both), 2)

	verifier := func(keys ...string) *signature.Verifier {
		v, err := signature.NewVerifier(keys...)
		require.NoError(t, err)
		v.Now = fixedClock(ts)
		return v
	}

	t.Run("EitherKeyDuringRotation", func(t *testing.T) {
		require.NoError(t, verifier(oldPub).Verify(headers(vectorID, ts, both), body))
		require.NoError(t, verifier(newPub).Verify(headers(vectorID, ts, both), body))
	})
	t.Run("WrongKey", func(t *testing.T) {
		_, otherPub, _ := newPair(t)
		require.ErrorIs(t, verifier(otherPub).Verify(headers(vectorID, ts, both), body), signature.ErrNoMatchingSignature)
	})
	t.Run("AlteredBody", func(t *testing.T) {
		require.ErrorIs(t, verifier(newPub).Verify(headers(vectorID, ts, both), []byte(vectorBody+" ")), signature.ErrNoMatchingSignature)
	})
	t.Run("AlteredTimestamp", func(t *testing.T) {
		v := verifier(newPub)
		require.ErrorIs(t, v.Verify(headers(vectorID, ts+1, both), body), signature.ErrNoMatchingSignature)
	})
	t.Run("HMACSecretDoesNotAcceptV1a", func(t *testing.T) {
		require.ErrorIs(t, verifier(vectorSecret).Verify(headers(vectorID, ts, both), body), signature.ErrNoMatchingSignature)
	})
	t.Run("PublicKeyDoesNotAcceptV1", func(t *testing.T) {
		require.ErrorIs(t, verifier(newPub).Verify(headers(vectorID, ts, vectorSignature), body), signature.ErrNoMatchingSignature)
	})
	t.Run("MixedVerifier", func(t *testing.T) {
		v := verifier(vectorSecret, newPub)
		require.NoError(t, v.Verify(headers(vectorID, ts, vectorSignature), body))
		require.NoError(t, v.Verify(headers(vectorID, ts, both), body))
	})
	t.Run("BoundedWork", func(t *testing.T) {
		// Eight forged v1a signatures before the real one: Verify gives up before it.
		forged := strings.Repeat("v1a,"+base64.StdEncoding.EncodeToString(make([]byte, 64))+" ", 8)
		good := signature.SignatureHeader([]signature.Signer{mustSigner(t, newPriv)}, vectorID, ts, body)
		require.ErrorIs(t, verifier(newPub).Verify(headers(vectorID, ts, forged+good), body), signature.ErrNoMatchingSignature)
		require.NoError(t, verifier(newPub).Verify(headers(vectorID, ts, forged[len(forged)/8:]+good), body))
	})
	t.Run("BadPublicKeys", func(t *testing.T) {
		for _, bad := range []string{"whpk_", "whpk_%%%", "whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 31))} {
			_, err := signature.NewVerifier(bad)
			require.ErrorIs(t, err, signature.ErrInvalidSecret, bad)
		}
	})
}

// FuzzVerifyEd25519 is FuzzVerify for v1a: arbitrary headers never panic, and whatever the
// key signs verifies.
func FuzzVerifyEd25519(f *testing.F) {
	f.Add(vectorID, "v1a,", []byte(vectorBody))
	f.Add("msg_1", "v1a,"+strings.Repeat("A", 88)+" v1,x", []byte("{}"))
	f.Add("", "v1a,====", []byte(nil))
	private, public, _ := newPair(f)
	s := mustSigner(f, private)
	v, err := signature.NewVerifier(public)
	require.NoError(f, err)
	v.Now = fixedClock(vectorTimestamp)
	f.Fuzz(func(t *testing.T, id, sig string, body []byte) {
		h := headers(id, vectorTimestamp, sig)
		_ = v.Verify(h, body)
		if id == "" {
			return
		}
		h.Set(signature.HeaderSignature, signature.SignatureHeader([]signature.Signer{s}, id, vectorTimestamp, body))
		require.NoError(t, v.Verify(h, body))
	})
}

func BenchmarkSignEd25519(b *testing.B) {
	private, _, _ := newPair(b)
	s := []signature.Signer{mustSigner(b, private)}
	body := []byte(strings.Repeat(`{"id":"evt_1","event_type":"signup.created"}`, 20))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = signature.SignatureHeader(s, vectorID, vectorTimestamp, body)
	}
}
