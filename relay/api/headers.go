package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

// headerMask stands for every custom header value in an answer: values are often credentials
// (Authorization: Bearer ...), so they are shown only to GET /v1/subscriptions/{id}
// ?reveal=headers. Sent back unchanged in a PATCH, it keeps the stored value, so that a
// client doing GET, modify, PATCH does not overwrite its token with asterisks.
const headerMask = "********"

// maskHeaders answers a stored headers column as the API shows it: each name with
// headerMask as its value. A column that is not an object of header values (written by hand)
// shows as no headers rather than failing the whole answer; only reveal reads the values.
func maskHeaders(raw []byte) json.RawMessage {
	var names map[string]json.RawMessage
	if err := json.Unmarshal(raw, &names); err != nil || names == nil {
		return json.RawMessage("{}")
	}
	masked := make(map[string]string, len(names))
	for name := range names {
		masked[name] = headerMask
	}
	b, err := json.Marshal(masked)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}

// checkNoMask refuses headerMask as the value of a new header: there is no stored value it
// could keep, and storing the asterisks themselves would silently break the receiver's
// authentication (a client copying the headers of another subscription's GET).
func checkNoMask(h map[string]string, has func(name string) bool) error {
	for _, name := range sortedNames(h) {
		if h[name] == headerMask && !has(name) {
			return invalid(codeInvalidHeaders,
				"value of header %q is the mask %s, which keeps a stored value, but the subscription has no such header; send the real value",
				truncate(name), headerMask)
		}
	}
	return nil
}

func sortedNames(h map[string]string) []string {
	names := slices.Collect(maps.Keys(h))
	slices.Sort(names) // the first problem reported does not depend on map order
	return names
}

// sealHeaders answers the headers column for new plain headers: every value sealed with
// SealSecret, or in clear when no encryption key is configured.
func (a *API) sealHeaders(h map[string]string) ([]byte, error) {
	stored := make(map[string]secrets.HeaderValue, len(h))
	for name, plain := range h {
		v, err := secrets.SealHeaderValue(plain, a.sealSecret)
		if err != nil {
			return nil, fmt.Errorf("sealing header value: %w", err)
		}
		stored[name] = v
	}
	return secrets.EncodeHeaders(stored)
}

// mergeHeaders answers the headers column after a PATCH that sets headers to h: h replaces
// the stored headers, except that a value equal to headerMask keeps the stored value of the
// header with that name (in any case). A kept value stored in clear is sealed on the way
// when a key is configured. A mask for a header that is not stored is 422 invalid_headers.
func (a *API) mergeHeaders(current []byte, h map[string]string) ([]byte, error) {
	cur, err := secrets.DecodeHeaders(current)
	if err != nil {
		return nil, fmt.Errorf("reading stored headers: %w", err)
	}
	byLower := make(map[string]secrets.HeaderValue, len(cur))
	for name, v := range cur {
		byLower[strings.ToLower(name)] = v
	}
	if err := checkNoMask(h, func(name string) bool { _, ok := byLower[strings.ToLower(name)]; return ok }); err != nil {
		return nil, err
	}
	next := make(map[string]secrets.HeaderValue, len(h))
	for name, plain := range h {
		v, kept := byLower[strings.ToLower(name)]
		switch {
		case plain == headerMask && kept && v.IsSealed():
			// Kept as it is: opening is not needed, so a value sealed under a key this relay
			// lacks survives a PATCH too.
		case plain == headerMask && kept:
			plain = v.Plain
			fallthrough
		default:
			if v, err = secrets.SealHeaderValue(plain, a.sealSecret); err != nil {
				return nil, fmt.Errorf("sealing header value: %w", err)
			}
		}
		next[name] = v
	}
	return secrets.EncodeHeaders(next)
}

// revealHeaders answers a stored headers column with every value in clear, opened with
// OpenSecret. A value that cannot be opened (sealed under a key this relay is not configured
// with) is 500 secret_unavailable.
func (a *API) revealHeaders(id string, raw []byte) (json.RawMessage, error) {
	plain, err := secrets.OpenHeaders(raw, a.openSecret)
	if err != nil {
		a.log.Error().Err(err).Str("subscription_id", id).Msg("opening header values")
		return nil, errSecretUnavailable("a header value")
	}
	b, err := json.Marshal(plain)
	if err != nil {
		return nil, fmt.Errorf("encoding headers: %w", err)
	}
	return b, nil
}

// errSecretUnavailable is the answer when a stored value is sealed under a key this relay
// does not have: a configuration problem of the relay, which no retry of the request fixes.
func errSecretUnavailable(what string) *apiError {
	return errorf(http.StatusInternalServerError, codeSecretUnavailable,
		"%s of this subscription is encrypted with a key this relay is not configured with", what)
}
