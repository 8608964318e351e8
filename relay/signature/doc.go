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
// right. It refuses timestamps more than Tolerance (default five minutes) away from its clock
// in either direction, which bounds how long a captured request can be replayed; receivers
// that must never process a request twice should also remember webhook-id, which stays the
// same across retries. Signatures with a version other than v1 are skipped, not rejected, so
// a sender can add a new scheme before receivers understand it.
//
// # Failures
//
// Verify returns an error wrapping one of ErrMissingHeaders, ErrInvalidTimestamp,
// ErrTimestampOutOfTolerance or ErrNoMatchingSignature, so callers can tell a misconfigured
// sender from a stale or forged request with errors.Is. It never panics on any input.
// DecodeSecret and NewVerifier refuse empty and non-base64 secrets with an error wrapping
// ErrInvalidSecret.
package signature
