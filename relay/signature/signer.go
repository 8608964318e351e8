package signature

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
)

// PrivateKeyPrefix starts an ed25519 signing key (the v1a scheme): "whsk_" and the standard
// base64 of the 64-byte private key (seed, then public key), as crypto/ed25519 holds it.
// Senders keep it; it is never given to a receiver.
const PrivateKeyPrefix = "whsk_"

// PublicKeyPrefix starts an ed25519 verification key: "whpk_" and the standard base64 of the
// 32-byte public key. It is what a receiver of v1a signatures is given.
const PublicKeyPrefix = "whpk_"

// Signature schemes, the version before the comma in the signature header.
const (
	// SchemeHMAC is Standard Webhooks' symmetric scheme: HMAC-SHA256 under a whsec_ secret.
	SchemeHMAC = "v1"
	// SchemeEd25519 is Standard Webhooks' asymmetric scheme: ed25519 under a whsk_ key,
	// verified with the whpk_ public key.
	SchemeEd25519 = "v1a"
)

const (
	asymmetricPrefix = "v1a,"
	// encodedEd25519Len is the length of a base64-encoded ed25519 signature: 64 bytes in 88
	// characters.
	encodedEd25519Len = 88
)

// Signer makes one signature of a webhook, as the signature header carries it: "v1,<HMAC>"
// or "v1a,<ed25519>". Make one with ParseSigningKey, NewHMACSigner or NewEd25519Signer. A
// Signer holds its key decoded, so signing parses nothing; it is safe for concurrent use.
type Signer interface {
	// Scheme answers SchemeHMAC or SchemeEd25519.
	Scheme() string
	signatureLen() int
	writeSignature(b *strings.Builder, msgID string, timestamp int64, body []byte)
}

var (
	_ Signer = hmacSigner{}
	_ Signer = ed25519Signer{}
)

// NewHMACSigner answers the v1 Signer for an HMAC key (DecodeSecret's result).
func NewHMACSigner(key []byte) Signer { return hmacSigner{key: key} }

// NewEd25519Signer answers the v1a Signer for an ed25519 private key. It panics if the key
// is not ed25519.PrivateKeySize bytes long, like crypto/ed25519 itself.
func NewEd25519Signer(key ed25519.PrivateKey) Signer {
	if len(key) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("signature: ed25519 private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize))
	}
	return ed25519Signer{key: key}
}

// ParseSigningKey answers the Signer for a signing key in text form: a "whsk_" ed25519
// private key (v1a), otherwise a whsec_ secret as DecodeSecret reads it (v1). The key says
// its scheme, so whoever stores keys needs no separate field to sign correctly. Errors wrap
// ErrInvalidSecret and never contain the key.
func ParseSigningKey(text string) (Signer, error) {
	if encoded, ok := strings.CutPrefix(text, PrivateKeyPrefix); ok {
		key, err := base64.StdEncoding.Strict().DecodeString(encoded)
		if err != nil || len(key) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("decoding signing key: %w: not %s and the base64 of a %d-byte ed25519 private key",
				ErrInvalidSecret, PrivateKeyPrefix, ed25519.PrivateKeySize)
		}
		return ed25519Signer{key: key}, nil
	}
	key, err := DecodeSecret(text)
	if err != nil {
		return nil, err
	}
	return hmacSigner{key: key}, nil
}

// NewKeyPair makes a fresh ed25519 key pair for the v1a scheme: private is "whsk_..." (for
// ParseSigningKey; keep it secret), public is "whpk_..." (for receivers, NewVerifier).
func NewKeyPair() (private, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating ed25519 key: %w", err)
	}
	return PrivateKeyPrefix + base64.StdEncoding.EncodeToString(priv),
		PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub), nil
}

// PublicKeyOf answers the "whpk_..." public key of a "whsk_..." private key. The public key
// is the private key's second half, so nothing is computed.
func PublicKeyOf(private string) (string, error) {
	s, err := ParseSigningKey(private)
	if err != nil {
		return "", err
	}
	e, ok := s.(ed25519Signer)
	if !ok {
		return "", fmt.Errorf("%w: not an ed25519 private key (%s...)", ErrInvalidSecret, PrivateKeyPrefix)
	}
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(e.key[ed25519.SeedSize:]), nil
}

// DecodePublicKey answers the ed25519 public key in a "whpk_..." value. Errors wrap
// ErrInvalidSecret.
func DecodePublicKey(public string) (ed25519.PublicKey, error) {
	encoded, ok := strings.CutPrefix(public, PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("decoding public key: %w: does not start with %s", ErrInvalidSecret, PublicKeyPrefix)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("decoding public key: %w: not the base64 of a %d-byte ed25519 public key",
			ErrInvalidSecret, ed25519.PublicKeySize)
	}
	return key, nil
}

// SignatureHeader returns the webhook-signature value for a request signed by every signer,
// space-separated. During a rotation signers holds the new and the old key, so receivers
// that have either accept the request. It is the one place the relay signs webhooks.
func SignatureHeader(signers []Signer, msgID string, timestamp int64, body []byte) string {
	if len(signers) == 0 {
		return ""
	}
	n := len(signers) - 1
	for _, s := range signers {
		n += s.signatureLen()
	}
	var b strings.Builder
	b.Grow(n)
	for i, s := range signers {
		if i > 0 {
			b.WriteByte(' ')
		}
		s.writeSignature(&b, msgID, timestamp, body)
	}
	return b.String()
}

type hmacSigner struct{ key []byte }

func (hmacSigner) Scheme() string    { return SchemeHMAC }
func (hmacSigner) signatureLen() int { return len(versionPrefix) + encodedMACLen }

func (s hmacSigner) writeSignature(b *strings.Builder, msgID string, timestamp int64, body []byte) {
	var sum [sha256.Size]byte
	mac(&sum, s.key, msgID, timestamp, body)
	writeSignature(b, &sum)
}

type ed25519Signer struct{ key ed25519.PrivateKey }

func (ed25519Signer) Scheme() string    { return SchemeEd25519 }
func (ed25519Signer) signatureLen() int { return len(asymmetricPrefix) + encodedEd25519Len }

func (s ed25519Signer) writeSignature(b *strings.Builder, msgID string, timestamp int64, body []byte) {
	// ed25519 hashes the message twice, so it needs it whole: "<msgID>.<timestamp>.<body>"
	// in a pooled buffer rather than a fresh copy of the body per request.
	m := signedMessage(msgID, timestamp, body)
	var enc [encodedEd25519Len]byte
	base64.StdEncoding.Encode(enc[:], ed25519.Sign(s.key, m.buf))
	m.release()
	b.WriteString(asymmetricPrefix)
	b.Write(enc[:])
}

// message is "<msgID>.<timestamp>.<body>" in one buffer, for ed25519.
type message struct{ buf []byte }

// maxPooledMessage stops one large payload from pinning a large buffer in the pool.
const maxPooledMessage = 64 << 10

var messagePool = sync.Pool{New: func() any { return &message{buf: make([]byte, 0, 4096)} }}

func signedMessage(msgID string, timestamp int64, body []byte) *message {
	m := messagePool.Get().(*message)
	m.buf = appendSignedPrefix(m.buf[:0], msgID, timestamp)
	m.buf = append(m.buf, body...)
	return m
}

func (m *message) release() {
	if cap(m.buf) <= maxPooledMessage {
		messagePool.Put(m)
	}
}
