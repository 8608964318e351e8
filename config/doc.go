// Package config turns the process environment into a validated Config. It is
// the only package of outbox-relay that reads environment variables; every
// other package receives plain values through its own Config struct.
//
// # Variables
//
// Every variable is named RELAY_<NAME> and declared once, as an envconfig tag
// on a Config field, together with its default and a one-line description.
// Usage renders that table (it is what `outbox-relay help` prints), so the
// documentation cannot drift from the code. The full names are written out
// in the tags and read without a prefix on purpose: envconfig would otherwise
// fall back to the unprefixed name, and a container's own DATABASE_URL or
// API_TOKEN must never be picked up by the relay by accident.
//
// Required are RELAY_DATABASE_URL and RELAY_API_TOKEN. The relay runs without
// authentication only when an operator asks for it twice: RELAY_API_TOKEN is
// present in the environment with an empty value and RELAY_INSECURE_NO_AUTH
// is true. A token together with RELAY_INSECURE_NO_AUTH=true is refused as
// ambiguous, as is an unset RELAY_API_TOKEN.
//
// # Failure
//
// Load stops at the first bad variable, in the order of the Config fields,
// and returns an *Error: a single line that starts with the variable's name,
// says what is wrong and what a good value looks like, e.g.
//
//	RELAY_POLL_INTERVAL: invalid duration "abc" (want e.g. 500ms, 1s)
//
// envconfig's own long error format never reaches the caller.
//
// # Secrets
//
// The API token, the database URLs (which may carry a password) and the
// encryption keys are never echoed in an error. For start-up logging use
// Config.Redacted or Config.String, which mask them; %v and %#v of a Config
// go through String as well.
//
// Values are checked but nothing is contacted: the database URL is parsed,
// not dialled, and listen addresses are parsed, not bound.
package config
