// Package signature signs and verifies webhooks in the Standard Webhooks format
// (https://www.standardwebhooks.com). The relay uses it to sign every delivery; receivers
// written in Go use it to check them.
//
// # Format
//
// A secret is "whsec_" followed by the standard base64 encoding of the key. The relay makes
// 32-byte keys (NewSecret); any non-empty key is accepted, so secrets made by other Standard
// Webhooks senders verify too. A request carries three headers:
//
//	webhook-id:        the event ID, the same on every retry
//	webhook-timestamp: Unix seconds of this attempt
//	webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>
//
// # Asymmetric signatures (v1a)
//
// Standard Webhooks' asymmetric scheme signs with an ed25519 private key the sender keeps
// ("whsk_" and the base64 of the 64-byte crypto/ed25519 private key) and is verified with
// its public key ("whpk_" and the base64 of the 32 bytes), so a receiver holds nothing that
// could sign:
//
//	webhook-signature: v1a,<base64 ed25519-signature(private key, "<webhook-id>.<webhook-timestamp>.<body>")>
//
// NewKeyPair makes a pair, ParseSigningKey reads either kind of signing key (the prefix says
// which scheme), and SignatureHeader is the one function that signs, whatever the scheme.
// NewVerifier takes whpk_ public keys beside whsec_ secrets.
//
// During a secret rotation the signature header holds one signature per secret, separated by
// spaces, so a receiver holding either the old or the new secret accepts the request.
// X-Webhook-Signature carries the same value (the name in the product docs); Verify reads it
// only when webhook-signature is absent.
//
// # Guarantees
//
// Sign is deterministic and bit-compatible with the official Standard Webhooks libraries: the
// specification's test vector is part of the tests. Verify compares signatures in constant
// time (hmac.Equal), so response timing does not leak how much of a forged signature was
// right; ed25519 verification (crypto/ed25519) is constant-time in the key by design. It
// refuses timestamps more than Tolerance (default five minutes) away from its clock
// in either direction, which bounds how long a captured request can be replayed; receivers
// that must never process a request twice should also remember webhook-id, which stays the
// same across retries. Signatures with a version other than v1 and v1a are skipped, not
// rejected, so a sender can add a new scheme before receivers understand it. An ed25519
// check costs about what a thousand HMACs do and the header comes from anyone, so Verify
// checks at most eight v1a signatures per request (a rotation sends two).
//
// # Failures
//
// Verify returns an error wrapping one of ErrMissingHeaders, ErrInvalidTimestamp,
// ErrTimestampOutOfTolerance or ErrNoMatchingSignature, so callers can tell a misconfigured
// sender from a stale or forged request with errors.Is. It never panics on any input.
// DecodeSecret, ParseSigningKey, DecodePublicKey and NewVerifier refuse empty, non-base64
// and wrongly sized keys with an error wrapping ErrInvalidSecret that never quotes the key.
package signature
