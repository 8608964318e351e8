package secrets

import (
	"errors"
	"fmt"
	"strings"

	"github.com/referralloop/outbox-relay/relay/signature"
)

// SigningKey turns a subscription's signing secret, as stored, into its Signer: opened with
// open when sealed (open is a Box's Open; nil means every value is stored in clear), then
// decoded from its whsec_ form (an HMAC secret, v1) or whsk_ form (an ed25519 private key,
// v1a). The deliverer signs with it, and the key check at start-up tries it on every active
// subscription, so both agree on what "cannot be opened" means.
func SigningKey(stored string, open func(string) (string, error)) (signature.Signer, error) {
	plain := stored
	if open != nil {
		var err error
		if plain, err = open(stored); err != nil {
			return nil, fmt.Errorf("opening the signing secret: %w", err)
		}
	}
	s, err := signature.ParseSigningKey(plain)
	if err != nil {
		return nil, fmt.Errorf("the signing secret is not a whsec_ or whsk_ value: %w", err)
	}
	return s, nil
}

// KeyIDOf answers the id of the key that sealed stored, or "" when stored is not a sealed
// value in a known format. It names a key without opening anything, for messages that say
// which key is missing.
func KeyIDOf(stored string) string {
	if !strings.HasPrefix(stored, sealedPrefix) {
		return ""
	}
	id, _, err := parse(stored)
	if err != nil {
		return ""
	}
	return id
}

// Unopenable reports whether err means a stored value cannot be opened with the configured
// keys (none at all, an unknown one, one that fails to decrypt it, or a malformed value):
// a matter of configuration, not of the database or the network.
func Unopenable(err error) bool {
	return errors.Is(err, ErrNoKey) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrDecrypt) ||
		errors.Is(err, ErrMalformed) || errors.Is(err, ErrMalformedHeaders)
}
