package signature

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SecretPrefix starts every secret the relay hands out. DecodeSecret accepts secrets with or
// without it, because some senders and users drop it.
const SecretPrefix = "whsec_"

// Header names of the Standard Webhooks format.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	// HeaderSignatureAlt carries the same value as HeaderSignature; it is the name in the
	// product docs, so receivers written against those docs find it.
	HeaderSignatureAlt = "X-Webhook-Signature"
)

// Canonical forms of the header names: http.Header.Get allocates to canonicalize any other
// spelling, and Verify runs on every request.
var (
	canonicalID           = http.CanonicalHeaderKey(HeaderID)
	canonicalTimestamp    = http.CanonicalHeaderKey(HeaderTimestamp)
	canonicalSignature    = http.CanonicalHeaderKey(HeaderSignature)
	canonicalSignatureAlt = http.CanonicalHeaderKey(HeaderSignatureAlt)
)

// DefaultTolerance is how far a timestamp may be from the verifier's clock, in either
// direction. Five minutes is the Standard Webhooks recommendation: long enough for clock skew
// and slow networks, short enough that a captured request cannot be replayed for long.
const DefaultTolerance = 5 * time.Minute

// secretKeyLen is the key length NewSecret makes: as long as the SHA-256 output, so the key is
// never the weakest part of the MAC.
const secretKeyLen = 32

// encodedMACLen is the length of a base64-encoded HMAC-SHA256: 32 bytes in 44 characters.
const encodedMACLen = 44

// versionPrefix starts each signature this package makes and the only version it checks.
const versionPrefix = "v1,"

var (
	// ErrInvalidSecret means a secret is empty or not standard base64.
	ErrInvalidSecret = errors.New("invalid secret")
	// ErrMissingHeaders means webhook-id, webhook-timestamp or the signature header is absent
	// or empty: usually a sender that does not sign at all.
	ErrMissingHeaders = errors.New("missing webhook headers")
	// ErrInvalidTimestamp means webhook-timestamp is not an integer number of Unix seconds.
	ErrInvalidTimestamp = errors.New("invalid webhook timestamp")
	// ErrTimestampOutOfTolerance means the timestamp is too old or too far in the future:
	// a replayed request or a badly wrong clock on one side.
	ErrTimestampOutOfTolerance = errors.New("webhook timestamp out of tolerance")
	// ErrNoMatchingSignature means no v1 or v1a signature matched any key: a wrong secret or
	// public key, or a request altered on the way.
	ErrNoMatchingSignature = errors.New("no matching signature")
)

// NewSecret returns a fresh secret: SecretPrefix and the standard base64 of 32 random bytes.
func NewSecret() (string, error) {
	var key [secretKeyLen]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key[:]), nil
}

// DecodeSecret returns the HMAC key inside secret: the standard base64 decoding of secret
// after an optional SecretPrefix. Any non-empty key is accepted so that secrets made by other
// Standard Webhooks senders (24-byte keys are common) work too.
func DecodeSecret(secret string) ([]byte, error) {
	encoded := strings.TrimPrefix(secret, SecretPrefix)
	if encoded == "" {
		return nil, fmt.Errorf("decoding secret: %w: empty", ErrInvalidSecret)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("decoding secret: %w: %w", ErrInvalidSecret, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("decoding secret: %w: empty key", ErrInvalidSecret)
	}
	return key, nil
}

// Sign returns the Standard Webhooks signature of one request: "v1," and the base64
// HMAC-SHA256 under key of "<msgID>.<timestamp>.<body>".
func Sign(key []byte, msgID string, timestamp int64, body []byte) string {
	var sum [sha256.Size]byte
	mac(&sum, key, msgID, timestamp, body)
	var b strings.Builder
	b.Grow(len(versionPrefix) + encodedMACLen)
	writeSignature(&b, &sum)
	return b.String()
}

// mac writes HMAC-SHA256(key, "<msgID>.<timestamp>.<body>") into sum. The body is hashed in
// place rather than copied into one big message.
func mac(sum *[sha256.Size]byte, key []byte, msgID string, timestamp int64, body []byte) {
	s := scratchPool.Get().(*scratch)
	p := appendSignedPrefix(s.prefix[:0], msgID, timestamp)
	h := hmac.New(sha256.New, key)
	h.Write(p)
	h.Write(body)
	h.Sum(s.sum[:0])
	*sum = s.sum
	if cap(p) <= maxPooledPrefix {
		s.prefix = p[:0]
	}
	scratchPool.Put(s)
}

// appendSignedPrefix appends "<msgID>.<timestamp>.", what both schemes sign before the body.
func appendSignedPrefix(p []byte, msgID string, timestamp int64) []byte {
	p = append(p, msgID...)
	p = append(p, '.')
	p = strconv.AppendInt(p, timestamp, 10)
	return append(p, '.')
}

// scratch is the space mac needs besides the HMAC state. hash.Hash is an interface, so every
// slice passed to its methods escapes to the heap; pooling the space keeps Sign down to the
// HMAC state and the returned string.
type scratch struct {
	prefix []byte
	sum    [sha256.Size]byte
}

// maxPooledPrefix stops a single huge webhook-id from pinning a large buffer in the pool.
const maxPooledPrefix = 1024

var scratchPool = sync.Pool{New: func() any { return &scratch{prefix: make([]byte, 0, 128)} }}

func writeSignature(b *strings.Builder, sum *[sha256.Size]byte) {
	var enc [encodedMACLen]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	b.WriteString(versionPrefix)
	b.Write(enc[:])
}

// Verifier checks signed requests against one or more secrets or public keys. Make it with
// NewVerifier: the zero value holds no keys and rejects every request. Its fields may be
// changed after NewVerifier and before the first Verify; Verify itself is safe for
// concurrent use.
type Verifier struct {
	keys       [][]byte            // HMAC keys, for v1 signatures
	publicKeys []ed25519.PublicKey // for v1a signatures

	// Tolerance is how far webhook-timestamp may be from Now, in either direction, in whole
	// seconds (rounded down). Zero or negative means DefaultTolerance, so a forgotten field
	// never disables replay protection. Optional.
	Tolerance time.Duration

	// Now is the verifier's clock; nil means time.Now. Optional: tests set it to check
	// recorded requests.
	Now func() time.Time
}

// NewVerifier returns a Verifier that accepts requests signed with any of secrets: whsec_
// secrets check v1 (HMAC) signatures, whpk_ public keys check v1a (ed25519) ones. Pass the
// old and the new secret or public key during a rotation.
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("creating verifier: %w: no secrets", ErrInvalidSecret)
	}
	v := &Verifier{Tolerance: DefaultTolerance}
	for i, s := range secrets {
		if strings.HasPrefix(s, PublicKeyPrefix) {
			k, err := DecodePublicKey(s)
			if err != nil {
				return nil, fmt.Errorf("secret %d: %w", i+1, err)
			}
			v.publicKeys = append(v.publicKeys, k)
			continue
		}
		k, err := DecodeSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		v.keys = append(v.keys, k)
	}
	return v, nil
}

// maxAsymmetricChecks bounds the v1a signatures one request may make Verify check: an
// ed25519 verification costs about as much as a thousand HMACs, and the header comes from
// anyone. A rotation sends two.
const maxAsymmetricChecks = 8

// Verify checks that h and body form a request signed with one of the verifier's secrets,
// stamped within Tolerance of Now. It returns nil or an error wrapping ErrMissingHeaders,
// ErrInvalidTimestamp, ErrTimestampOutOfTolerance or ErrNoMatchingSignature.
//
// The timestamp is checked before any signature so that a stale request costs no HMAC work.
// v1 signatures are checked against the secrets, v1a ones against the public keys (at most
// maxAsymmetricChecks of them); other versions are skipped.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	msgID := h.Get(canonicalID)
	rawTS := h.Get(canonicalTimestamp)
	sigs := h.Get(canonicalSignature)
	if sigs == "" {
		sigs = h.Get(canonicalSignatureAlt)
	}
	switch {
	case msgID == "":
		return fmt.Errorf("%w: %s", ErrMissingHeaders, HeaderID)
	case rawTS == "":
		return fmt.Errorf("%w: %s", ErrMissingHeaders, HeaderTimestamp)
	case sigs == "":
		return fmt.Errorf("%w: %s", ErrMissingHeaders, HeaderSignature)
	}

	ts, err := strconv.ParseInt(rawTS, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, truncate(rawTS))
	}
	if err := v.checkTimestamp(ts); err != nil {
		return err
	}

	// Expected MACs are computed lazily, once per key, and only if a v1 signature exists:
	// a header full of foreign versions costs no HMAC work.
	var (
		expected      [][sha256.Size]byte
		expectedSpace [2][sha256.Size]byte  // a rotation's two keys, without a heap allocation
		got           [sha256.Size + 1]byte // Decode wants room for DecodedLen(44) = 33 bytes
	)
	var (
		msg        *message // "<msgID>.<timestamp>.<body>", built for the first v1a signature
		asymmetric int
		edSig      [ed25519.SignatureSize + 2]byte // DecodedLen(88) = 66
	)
	defer func() {
		if msg != nil {
			msg.release()
		}
	}()
	for sig := range strings.FieldsSeq(sigs) {
		if encoded, ok := strings.CutPrefix(sig, asymmetricPrefix); ok {
			if len(v.publicKeys) == 0 || len(encoded) != encodedEd25519Len || asymmetric == maxAsymmetricChecks {
				continue
			}
			asymmetric++
			n, err := base64.StdEncoding.Decode(edSig[:], []byte(encoded))
			if err != nil || n != ed25519.SignatureSize {
				continue
			}
			if msg == nil {
				msg = signedMessage(msgID, ts, body)
			}
			for _, k := range v.publicKeys {
				if ed25519.Verify(k, msg.buf, edSig[:n]) {
					return nil
				}
			}
			continue
		}
		encoded, ok := strings.CutPrefix(sig, versionPrefix)
		if !ok || len(encoded) != encodedMACLen || len(v.keys) == 0 {
			continue
		}
		n, err := base64.StdEncoding.Decode(got[:], []byte(encoded))
		if err != nil || n != sha256.Size {
			continue
		}
		if expected == nil {
			expected = expectedSpace[:0]
			for _, k := range v.keys {
				var sum [sha256.Size]byte
				mac(&sum, k, msgID, ts, body)
				expected = append(expected, sum)
			}
		}
		for i := range expected {
			if hmac.Equal(got[:n], expected[i][:]) {
				return nil
			}
		}
	}
	return ErrNoMatchingSignature
}

// checkTimestamp compares in whole seconds, without converting ts to a time.Time, so that
// absurd timestamps (near the int64 limits) cannot overflow into the accepted window.
func (v *Verifier) checkTimestamp(ts int64) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	nowSec := now().Unix()
	tolSec := int64(tol / time.Second)
	// nowSec is a real clock reading, far from the int64 limits, so these cannot overflow
	// unless Tolerance is centuries long; clamp just in case.
	low, high := nowSec-tolSec, nowSec+tolSec
	if low > nowSec {
		low = minInt64
	}
	if high < nowSec {
		high = maxInt64
	}
	if ts < low || ts > high {
		return fmt.Errorf("%w: %d is more than %s from now (%d)", ErrTimestampOutOfTolerance, ts, tol, nowSec)
	}
	return nil
}

const (
	maxInt64 = 1<<63 - 1
	minInt64 = -1 << 63
)

// truncate keeps error messages short when a header is huge or hostile.
func truncate(s string) string {
	const max = 32
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
