// Package secrets encrypts subscription signing secrets, custom header values and client
// certificate keys at rest (RELAY_ENCRYPTION_KEY and RELAY_ENCRYPTION_KEY_PREVIOUS).
//
// # Format
//
// A sealed value is
//
//	enc:v1:<key id>:<base64(nonce | ciphertext)>
//
// with AES-256-GCM, a fresh random 12-byte nonce per value, standard base64 with padding, and
// the key id the first 8 hex digits of SHA-256(key). The prefix "enc:v1:<key id>:" is the
// AEAD's additional data, so a value cannot be moved to another version or key id without
// failing authentication. The key id lets Open pick the key that sealed a value, so a key
// rotation needs no flag day: the new key seals, the previous one still opens, and
// NeedsReseal tells a sweep which values to rewrite under the new key.
//
// # Clear values
//
// Anything that does not start with "enc:" is a value stored in clear ("whsec_..." secrets
// written before encryption was turned on) and passes through Open unchanged, with or without
// keys, so encryption can be turned on at any time. A Box without a current key (New(nil,
// nil)) seals nothing either: Seal answers its input. A sealed value without a key that
// opens it is an error (ErrNoKey, ErrUnknownKey), never a pass-through: a sealed value
// handed out as if it were a secret would sign with garbage.
//
// # Custom header values
//
// A subscription's custom headers (often "Authorization: Bearer ...") are credentials too.
// The headers column stays a JSON object from header name, in clear, to a value that is
// either a JSON string, in clear, or {"sealed": "enc:v1:<key id>:<base64>"}, sealed by a Box
// as above. Values are in clear when no key is configured and in rows written before header
// values were sealed. The JSON type, not the text, says which: a clear value is never passed
// to Open, so a header whose value happens to start with "enc:" is sent as it is.
// SealHeaderValue, DecodeHeaders and EncodeHeaders write and read the column; OpenHeaders
// turns it into the headers to send, and is all the deliverer needs.
//
// # Client certificates
//
// A subscription's client certificate is stored as its PEM chain, in clear (certificates are
// public), and its private key, a PEM string sealed like a secret. NormalizeClientCertificate
// checks and re-encodes what the API is given; ClientCertificate opens and parses what is
// stored, for the deliverer and the key check alike, so both agree on what cannot be used.
//
// # Failures
//
// Errors name the key id at most; they never contain the plain text, the stored value or a
// key, so they are safe to log. Seal fails only if the system's random source does.
package secrets
