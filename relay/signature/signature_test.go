package signature_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/signature"
)

// The test vector from the Standard Webhooks specification: what every official library
// produces, so passing it means receivers using those libraries accept our requests.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = int64(1614265330)
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustKey(t testing.TB, secret string) []byte {
	t.Helper()
	k, err := signature.DecodeSecret(secret)
	require.NoError(t, err)
	return k
}

func fixedClock(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(signature.HeaderID, id)
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(signature.HeaderSignature, sig)
	return h
}

func TestSignSpecVector(t *testing.T) {
	t.Parallel()
	got := signature.Sign(mustKey(t, vectorSecret), vectorID, vectorTimestamp, []byte(vectorBody))
	require.Equal(t, vectorSignature, got)
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	s1, err := signature.NewSecret()
	require.NoError(t, err)
	s2, err := signature.NewSecret()
	require.NoError(t, err)

	require.True(t, strings.HasPrefix(s1, signature.SecretPrefix))
	require.NotEqual(t, s1, s2)
	key := mustKey(t, s1)
	require.Len(t, key, 32)
	// The encoding round-trips, so the secret a user copies is exactly the key we sign with.
	require.Equal(t, s1, signature.SecretPrefix+base64.StdEncoding.EncodeToString(key))
}

func TestDecodeSecret(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		secret  string
		wantLen int
		wantErr bool
	}{
		{name: "WithPrefix", secret: vectorSecret, wantLen: 24},
		{name: "WithoutPrefix", secret: strings.TrimPrefix(vectorSecret, "whsec_"), wantLen: 24},
		{name: "ShortKeyAccepted", secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte{1}), wantLen: 1},
		{name: "Empty", secret: "", wantErr: true},
		{name: "PrefixOnly", secret: "whsec_", wantErr: true},
		{name: "NotBase64", secret: "whsec_not base64!", wantErr: true},
		{name: "URLAlphabet", secret: "whsec_-_-_", wantErr: true},
		{name: "MissingPadding", secret: "whsec_AQ", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key, err := signature.DecodeSecret(tt.secret)
			if tt.wantErr {
				require.ErrorIs(t, err, signature.ErrInvalidSecret)
				require.True(t, strings.HasPrefix(err.Error(), "decoding secret: "), err.Error())
				return
			}
			require.NoError(t, err)
			require.Len(t, key, tt.wantLen)
		})
	}
}

func TestSignatureHeader(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t, vectorSecret), []byte("another key")
	body := []byte(vectorBody)

	s1, s2 := signature.NewHMACSigner(k1), signature.NewHMACSigner(k2)

	require.Empty(t, signature.SignatureHeader(nil, vectorID, vectorTimestamp, body))
	require.Equal(t, vectorSignature,
		signature.SignatureHeader([]signature.Signer{s1}, vectorID, vectorTimestamp, body))
	require.Equal(t,
		vectorSignature+" "+signature.Sign(k2, vectorID, vectorTimestamp, body),
		signature.SignatureHeader([]signature.Signer{s1, s2}, vectorID, vectorTimestamp, body))
}

func TestNewVerifier(t *testing.T) {
	t.Parallel()
	_, err := signature.NewVerifier()
	require.ErrorIs(t, err, signature.ErrInvalidSecret)

	_, err = signature.NewVerifier(vectorSecret, "whsec_%%%")
	require.ErrorIs(t, err, signature.ErrInvalidSecret)
	require.Contains(t, err.Error(), "secret 2")

	v, err := signature.NewVerifier(vectorSecret)
	require.NoError(t, err)
	require.Equal(t, signature.DefaultTolerance, v.Tolerance)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	oldSecret := vectorSecret
	newSecret, err := signature.NewSecret()
	require.NoError(t, err)
	oldKey, newKey := mustKey(t, oldSecret), mustKey(t, newSecret)
	body := []byte(vectorBody)
	now := vectorTimestamp

	sign := func(key []byte, id string, ts int64, b string) string {
		return signature.Sign(key, id, ts, []byte(b))
	}
	rotation := signature.SignatureHeader([]signature.Signer{signature.NewHMACSigner(newKey), signature.NewHMACSigner(oldKey)}, vectorID, now, body)

	for _, tt := range []struct {
		name    string
		secrets []string
		header  http.Header
		body    string
		want    error
	}{
		{name: "SpecVector", secrets: []string{oldSecret}, header: headers(vectorID, now, vectorSignature), body: vectorBody},
		{name: "TamperedBody", secrets: []string{oldSecret}, header: headers(vectorID, now, vectorSignature), body: `{"test": 2432232315}`, want: signature.ErrNoMatchingSignature},
		{name: "TamperedID", secrets: []string{oldSecret}, header: headers("msg_other", now, vectorSignature), body: vectorBody, want: signature.ErrNoMatchingSignature},
		{name: "TamperedTimestamp", secrets: []string{oldSecret}, header: headers(vectorID, now+1, vectorSignature), body: vectorBody, want: signature.ErrNoMatchingSignature},
		{name: "WrongSecret", secrets: []string{newSecret}, header: headers(vectorID, now, vectorSignature), body: vectorBody, want: signature.ErrNoMatchingSignature},
		{name: "RotationVerifiesWithOldSecret", secrets: []string{oldSecret}, header: headers(vectorID, now, rotation), body: vectorBody},
		{name: "RotationVerifiesWithNewSecret", secrets: []string{newSecret}, header: headers(vectorID, now, rotation), body: vectorBody},
		{name: "VerifierHoldingBothSecrets", secrets: []string{newSecret, oldSecret}, header: headers(vectorID, now, vectorSignature), body: vectorBody},
		{name: "OtherVersionsIgnored", secrets: []string{oldSecret}, header: headers(vectorID, now, "v2,abc v1a,xyz "+vectorSignature), body: vectorBody},
		{name: "OnlyOtherVersions", secrets: []string{oldSecret}, header: headers(vectorID, now, "v2,"+strings.TrimPrefix(vectorSignature, "v1,")), body: vectorBody, want: signature.ErrNoMatchingSignature},
		{name: "GarbageSignature", secrets: []string{oldSecret}, header: headers(vectorID, now, "v1,!!!! v1, v1,AAAA"), body: vectorBody, want: signature.ErrNoMatchingSignature},
		{name: "TruncatedSignature", secrets: []string{oldSecret}, header: headers(vectorID, now, vectorSignature[:len(vectorSignature)-4]), body: vectorBody, want: signature.ErrNoMatchingSignature},
		{name: "ExtraSpaces", secrets: []string{oldSecret}, header: headers(vectorID, now, "  v2,x   "+vectorSignature+"  "), body: vectorBody},
		{name: "OldTimestampRefused", secrets: []string{oldSecret}, header: headers(vectorID, now-301, sign(oldKey, vectorID, now-301, vectorBody)), body: vectorBody, want: signature.ErrTimestampOutOfTolerance},
		{name: "FutureTimestampRefused", secrets: []string{oldSecret}, header: headers(vectorID, now+301, sign(oldKey, vectorID, now+301, vectorBody)), body: vectorBody, want: signature.ErrTimestampOutOfTolerance},
		{name: "EdgeOfToleranceAccepted", secrets: []string{oldSecret}, header: headers(vectorID, now-300, sign(oldKey, vectorID, now-300, vectorBody)), body: vectorBody},
		{name: "HugeTimestamp", secrets: []string{oldSecret}, header: headers(vectorID, 1<<63-1, vectorSignature), body: vectorBody, want: signature.ErrTimestampOutOfTolerance},
		{name: "NegativeTimestamp", secrets: []string{oldSecret}, header: headers(vectorID, -1<<63, vectorSignature), body: vectorBody, want: signature.ErrTimestampOutOfTolerance},
		{name: "MissingID", secrets: []string{oldSecret}, header: headers("", now, vectorSignature), body: vectorBody, want: signature.ErrMissingHeaders},
		{name: "MissingSignature", secrets: []string{oldSecret}, header: headers(vectorID, now, ""), body: vectorBody, want: signature.ErrMissingHeaders},
		{name: "MissingTimestamp", secrets: []string{oldSecret}, header: func() http.Header {
			h := headers(vectorID, now, vectorSignature)
			h.Del(signature.HeaderTimestamp)
			return h
		}(), body: vectorBody, want: signature.ErrMissingHeaders},
		{name: "NonNumericTimestamp", secrets: []string{oldSecret}, header: func() http.Header {
			h := headers(vectorID, now, vectorSignature)
			h.Set(signature.HeaderTimestamp, "2021-02-25T15:02:10Z")
			return h
		}(), body: vectorBody, want: signature.ErrInvalidTimestamp},
		{name: "AltHeaderFallback", secrets: []string{oldSecret}, header: func() http.Header {
			h := headers(vectorID, now, "")
			h.Del(signature.HeaderSignature)
			h.Set(signature.HeaderSignatureAlt, vectorSignature)
			return h
		}(), body: vectorBody},
		{name: "PrimaryHeaderWins", secrets: []string{oldSecret}, header: func() http.Header {
			h := headers(vectorID, now, "v1,"+strings.Repeat("A", 43)+"=")
			h.Set(signature.HeaderSignatureAlt, vectorSignature)
			return h
		}(), body: vectorBody, want: signature.ErrNoMatchingSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := signature.NewVerifier(tt.secrets...)
			require.NoError(t, err)
			v.Now = fixedClock(now)
			err = v.Verify(tt.header, []byte(tt.body))
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	t.Parallel()
	key := mustKey(t, vectorSecret)
	v, err := signature.NewVerifier(vectorSecret)
	require.NoError(t, err)
	v.Now = fixedClock(vectorTimestamp)
	v.Tolerance = time.Hour

	ts := vectorTimestamp - 3000
	h := headers(vectorID, ts, signature.Sign(key, vectorID, ts, []byte(vectorBody)))
	require.NoError(t, v.Verify(h, []byte(vectorBody)))

	// Zero means the default, not "accept anything": a Verifier built by hand stays safe.
	v.Tolerance = 0
	require.ErrorIs(t, v.Verify(h, []byte(vectorBody)), signature.ErrTimestampOutOfTolerance)
}

// TestVerifyRealClock checks the default clock: a request signed just now verifies.
func TestVerifyRealClock(t *testing.T) {
	t.Parallel()
	v, err := signature.NewVerifier(vectorSecret)
	require.NoError(t, err)
	ts := time.Now().Unix()
	h := headers(vectorID, ts, signature.Sign(mustKey(t, vectorSecret), vectorID, ts, []byte(vectorBody)))
	require.NoError(t, v.Verify(h, []byte(vectorBody)))
}

func BenchmarkSign(b *testing.B) {
	key := mustKey(b, vectorSecret)
	body := []byte(strings.Repeat(`{"id":"evt_1","event_type":"signup.created"}`, 20))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = signature.Sign(key, vectorID, vectorTimestamp, body)
	}
}

func BenchmarkVerify(b *testing.B) {
	key := mustKey(b, vectorSecret)
	body := []byte(strings.Repeat(`{"id":"evt_1","event_type":"signup.created"}`, 20))
	v, err := signature.NewVerifier(vectorSecret)
	require.NoError(b, err)
	v.Now = fixedClock(vectorTimestamp)
	h := headers(vectorID, vectorTimestamp, signature.Sign(key, vectorID, vectorTimestamp, body))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := v.Verify(h, body); err != nil {
			b.Fatal(err)
		}
	}
}
