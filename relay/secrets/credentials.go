package secrets

import (
	"fmt"

	"github.com/referralloop/outbox-relay/relay/signature"
)

// SigningKey turns a subscription's signing secret, as stored, into its HMAC key: opened with
// open when sealed (open is a Box's Open; nil means every value is stored in clear), then
// decoded from its whsec_ form. The deliverer signs with it, and the key check at start-up
// tries it on every active subscription, so both agree on what "cannot be opened" means.
func SigningKey(stored string, open func(string) (string, error)) ([]byte, error) {
	plain := stored
	if open != nil {
		var err error
		if plain, err = open(stored); err != nil {
			return nil, fmt.Errorf("opening the signing secret: %w", err)
		}
	}
	key, err := signature.DecodeSecret(plain)
	if err != nil {
		return nil, fmt.Errorf("the signing secret is not a whsec_ value: %w", err)
	}
	return key, nil
}
