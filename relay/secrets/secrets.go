package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

const (
	// sealedPrefix starts every value this package (any version) seals.
	sealedPrefix = "enc:"
	// v1Prefix starts a value sealed in the format of this version.
	v1Prefix = "enc:v1:"
	// keyIDLen is the length of a key id in hex digits.
	keyIDLen = 8
)

var (
	// ErrNoKey means a value is sealed but the Box has no key at all.
	ErrNoKey = errors.New("secret is encrypted but no encryption key is configured")
	// ErrUnknownKey means a value is sealed with a key that is neither the current nor the
	// previous one.
	ErrUnknownKey = errors.New("secret is encrypted with an unknown key")
	// ErrMalformed means a value starts like a sealed one but is not in the format.
	ErrMalformed = errors.New("encrypted secret is malformed")
	// ErrDecrypt means authentication failed: the value was altered, or sealed with another
	// key that happens to share the key id.
	ErrDecrypt = errors.New("encrypted secret does not decrypt")
)

// Box seals and opens secrets. The zero Box and a nil *Box have no keys: they seal nothing
// and open only clear values. A Box is safe for concurrent use.
type Box struct {
	current  *key
	previous *key
}

type key struct {
	id   string
	aead cipher.AEAD
}

// New returns a Box that seals with current and opens values sealed with current or
// previous. A nil (empty) current turns encryption off; previous is then not allowed. Keys
// must be KeySize bytes.
func New(current, previous []byte) (*Box, error) {
	if len(current) == 0 {
		if len(previous) != 0 {
			return nil, errors.New("secrets: a previous key needs a current key")
		}
		return &Box{}, nil
	}
	b := &Box{}
	var err error
	if b.current, err = newKey(current); err != nil {
		return nil, fmt.Errorf("secrets: current key: %w", err)
	}
	if len(previous) != 0 {
		if b.previous, err = newKey(previous); err != nil {
			return nil, fmt.Errorf("secrets: previous key: %w", err)
		}
		if b.previous.id == b.current.id {
			// The same key twice (or, astronomically unlikely, two keys with one id): the
			// previous one adds nothing, and a shared id would make Open ambiguous.
			b.previous = nil
		}
	}
	return b, nil
}

func newKey(k []byte) (*key, error) {
	if len(k) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(k), KeySize)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &key{id: KeyID(k), aead: aead}, nil
}

// KeyID is the id a sealed value names its key by: the first 8 hex digits of SHA-256(k).
// It identifies a key without revealing it.
func KeyID(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:])[:keyIDLen]
}

// Enabled reports whether b seals (has a current key).
func (b *Box) Enabled() bool { return b != nil && b.current != nil }

// Seal answers what to store for plain: "enc:v1:<key id>:<base64(nonce|ciphertext)>" under
// the current key, or plain itself when b has no key.
func (b *Box) Seal(plain string) (string, error) {
	if !b.Enabled() {
		return plain, nil
	}
	k := b.current
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("generating nonce: %w", err)
	}
	prefix := v1Prefix + k.id + ":"
	sealed := k.aead.Seal(nonce, nonce, []byte(plain), []byte(prefix))
	return prefix + base64.StdEncoding.EncodeToString(sealed), nil
}

// Open answers the plain value of stored: values in clear (anything not starting with
// "enc:", such as "whsec_...") as they are, sealed values decrypted with the key they name.
func (b *Box) Open(stored string) (string, error) {
	if !strings.HasPrefix(stored, sealedPrefix) {
		return stored, nil
	}
	id, data, err := parse(stored)
	if err != nil {
		return "", err
	}
	k, err := b.keyFor(id)
	if err != nil {
		return "", err
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", fmt.Errorf("%w: not base64", ErrMalformed)
	}
	ns := k.aead.NonceSize()
	if len(raw) < ns+k.aead.Overhead() {
		return "", fmt.Errorf("%w: too short", ErrMalformed)
	}
	plain, err := k.aead.Open(nil, raw[:ns], raw[ns:], []byte(v1Prefix+id+":"))
	if err != nil {
		return "", fmt.Errorf("%w (key %s)", ErrDecrypt, id)
	}
	return string(plain), nil
}

// NeedsReseal reports whether stored should be rewritten as Seal(Open(stored)): it is in
// clear, or sealed with a key other than the current one (the previous key, during a key
// rotation). Always false when b has no current key: there is nothing to seal with.
func (b *Box) NeedsReseal(stored string) bool {
	if !b.Enabled() {
		return false
	}
	if !strings.HasPrefix(stored, sealedPrefix) {
		return true
	}
	id, _, err := parse(stored)
	return err == nil && id != b.current.id
}

// parse splits a sealed value into its key id and base64 data.
func parse(stored string) (id, data string, err error) {
	rest, ok := strings.CutPrefix(stored, v1Prefix)
	if !ok {
		return "", "", fmt.Errorf("%w: unknown format version", ErrMalformed)
	}
	id, data, ok = strings.Cut(rest, ":")
	if !ok || len(id) != keyIDLen || !isLowerHex(id) {
		return "", "", fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	return id, data, nil
}

func (b *Box) keyFor(id string) (*key, error) {
	if b == nil || b.current == nil {
		return nil, ErrNoKey
	}
	for _, k := range []*key{b.current, b.previous} {
		if k != nil && k.id == id {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w (key %s)", ErrUnknownKey, id)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
