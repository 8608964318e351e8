package api

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

// TestBlockedReasonPhrases feeds blockedReason the problems the key check reports, made by
// the real secrets code rather than copied, so that a change of their wording that loses
// the remedy fails here.
func TestBlockedReasonPhrases(t *testing.T) {
	t.Parallel()
	box := func(current, previous byte) *secrets.Box {
		t.Helper()
		var c, p []byte
		if current != 0 {
			c = bytes.Repeat([]byte{current}, secrets.KeySize)
		}
		if previous != 0 {
			p = bytes.Repeat([]byte{previous}, secrets.KeySize)
		}
		b, err := secrets.New(c, p)
		require.NoError(t, err)
		return b
	}
	sealed, err := box(1, 0).Seal("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	keyID := secrets.KeyID(bytes.Repeat([]byte{1}, secrets.KeySize))
	problem := func(open func(string) (string, error), stored string) string {
		t.Helper()
		_, err := secrets.SigningKey(stored, open)
		require.Error(t, err)
		return err.Error()
	}
	// An altered value under the configured key's id: the id matches, the content does not.
	// One base64 digit inside the ciphertext changes, which keeps the value well-formed.
	at := strings.LastIndex(sealed, ":") + 10
	flip := byte('A')
	if sealed[at] == 'A' {
		flip = 'B'
	}
	altered := sealed[:at] + string(flip) + sealed[at+1:]

	for _, tc := range []struct {
		name, problem string
		want          []string
	}{
		{"NoKey", problem(box(0, 0).Open, sealed),
			[]string{"no encryption key is configured", "set RELAY_ENCRYPTION_KEY to the key it was sealed with"}},
		{"UnknownKey", problem(box(2, 3).Open, sealed),
			[]string{"unknown key (key " + keyID + ")", "as RELAY_ENCRYPTION_KEY or RELAY_ENCRYPTION_KEY_PREVIOUS"}},
		{"UnknownKeyOfHeader", fmt.Sprintf("custom header %q: %s", "Authorization", problem(box(2, 0).Open, sealed)),
			[]string{`custom header "Authorization"`, "RELAY_ENCRYPTION_KEY_PREVIOUS"}},
		{"DoesNotDecrypt", problem(box(1, 0).Open, altered),
			[]string{"does not decrypt", "altered, or sealed with another key of the same id"}},
		{"NotWhsec", problem(nil, "plain-but-not-whsec"),
			[]string{"not a whsec_ or whsk_ value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := blockedReason(tc.problem)
			require.NotNil(t, got)
			require.True(t, strings.HasPrefix(*got, "the relay cannot sign for this subscription: "+tc.problem), *got)
			require.True(t, strings.HasSuffix(*got, ". Its deliveries wait, unsent, until then."), *got)
			for _, w := range tc.want {
				require.Contains(t, *got, w)
			}
			if tc.name == "NotWhsec" {
				require.NotContains(t, *got, "RELAY_ENCRYPTION_KEY", "no key setting fixes a damaged value")
			}
		})
	}
	require.Nil(t, blockedReason(""))

	// A client certificate's key says so, with the same remedy.
	_, err = secrets.ClientCertificate("CERT", sealed, box(0, 0).Open)
	require.Error(t, err)
	got := blockedReason(err.Error())
	require.NotNil(t, got)
	require.True(t, strings.HasPrefix(*got, "the relay cannot present this subscription's client certificate: opening the client certificate's key: "), *got)
	require.Contains(t, *got, "set RELAY_ENCRYPTION_KEY to the key it was sealed with")
}
