package api

import (
	"strings"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

// blockedWait ends every blocked_reason: what happens to the deliveries meanwhile, since
// that is what a subscription's owner worries about first.
const blockedWait = " Its deliveries wait, unsent, until then."

// blockedReason phrases a key problem (Config.KeyProblem's answer) for the subscription's
// owner, who may not run the relay: what is wrong, and which setting fixes it. nil when
// there is no problem.
//
// The problem arrives as text (an error's message, from another component), so the kind is
// found by the secrets package's own error texts rather than a second copy of them; a
// problem of another kind (a damaged stored value, which no key setting fixes) is shown as it
// is, with no remedy rather than a wrong one.
func blockedReason(problem string) *string {
	if problem == "" {
		return nil
	}
	var remedy string
	switch {
	case strings.Contains(problem, secrets.ErrNoKey.Error()):
		remedy = "; set RELAY_ENCRYPTION_KEY to the key it was sealed with."
	case strings.Contains(problem, secrets.ErrUnknownKey.Error()):
		remedy = "; configure the key it was sealed with as RELAY_ENCRYPTION_KEY or RELAY_ENCRYPTION_KEY_PREVIOUS."
	case strings.Contains(problem, secrets.ErrDecrypt.Error()):
		remedy = "; it was altered, or sealed with another key of the same id: configure the key it was sealed with as RELAY_ENCRYPTION_KEY or RELAY_ENCRYPTION_KEY_PREVIOUS."
	default:
		remedy = "."
	}
	what := "the relay cannot sign for this subscription: "
	if secrets.IsClientCertificateProblem(problem) {
		what = "the relay cannot present this subscription's client certificate: "
	}
	reason := what + problem + remedy + blockedWait
	return &reason
}
