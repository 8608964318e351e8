package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Caller is who makes a request, as established by the middleware in front of the handler
// (TenantFromHeader, or forward auth in reverse-proxy mode). Handlers read it from the request
// context only.
type Caller struct {
	// TenantID scopes the request to one tenant's subscriptions, deliveries and events. When
	// set it wins over Operator: a caller is never more than its narrowest claim.
	TenantID string
	// Operator sees and manages every tenant's objects. Only for callers without TenantID.
	Operator bool
}

type callerKey struct{}

// WithCaller returns ctx carrying c, for the handler to read.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFromContext returns the Caller WithCaller stored in ctx; ok is false when there is none.
func CallerFromContext(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// maxTenantIDLength bounds a tenant ID in bytes (openapi.json says so too).
const maxTenantIDLength = 255

// scope is what a request may see: one tenant, or everything (the operator).
type scope struct {
	tenant string // empty for the operator
}

func (s scope) operator() bool { return s.tenant == "" }

// sqlTenant is the scope as a query parameter: NULL for the operator, which every query
// reads as "no tenant restriction".
func (s scope) sqlTenant() sql.NullString {
	return sql.NullString{String: s.tenant, Valid: s.tenant != ""}
}

// scopeOf turns the caller in ctx into a scope. No caller, or a caller that is neither a
// tenant nor the operator, is refused: the handler fails closed whatever sits in front of it.
func scopeOf(ctx context.Context) (scope, *apiError) {
	c, ok := CallerFromContext(ctx)
	switch {
	case !ok:
		return scope{}, errorf(http.StatusUnauthorized, codeUnauthorized, "no authenticated caller")
	case c.TenantID != "":
		if err := ValidateTenantID(c.TenantID); err != nil {
			return scope{}, errorf(http.StatusBadRequest, codeInvalidTenantID, "%s", err)
		}
		return scope{tenant: c.TenantID}, nil
	case c.Operator:
		return scope{}, nil
	default:
		return scope{}, errorf(http.StatusUnauthorized, codeUnauthorized, "no authenticated caller")
	}
}

// ValidateTenantID answers why id cannot be a tenant ID, or nil when it can: 1 to 255 bytes
// of valid UTF-8 without control characters (C0, DEL, C1). It is the only rule: the
// X-Tenant-ID header and the tenant that forward auth names in reverse-proxy mode are both
// held to it, so a tenant the operator can address is a tenant forward auth can name.
//
// It refuses what would break: PostgreSQL rejects invalid UTF-8 and NUL in text, and a
// control character would cut a header or a log line. Other characters that print nothing
// (no-break space, zero-width joiner and non-joiner) are accepted on purpose: they are
// ordinary parts of words in several scripts and of emoji, a tenant ID is chosen by the
// operator or the application, never by the public, and which code points count as printable
// moves with Go's Unicode tables, which a rule for stored identifiers must not.
func ValidateTenantID(id string) error {
	switch {
	case id == "":
		return errors.New("tenant ID is empty")
	case len(id) > maxTenantIDLength:
		return fmt.Errorf("tenant ID is longer than %d bytes", maxTenantIDLength)
	case !utf8.ValidString(id):
		return errors.New("tenant ID is not valid UTF-8")
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return errors.New("tenant ID contains a control character")
	}
	return nil
}

// TenantFromHeader sets the Caller from the X-Tenant-ID header: a tenant caller when the
// header is present, the operator when it is absent. A header that is present but empty, or
// given more than once, is refused with 400 rather than read as the operator.
//
// It trusts the header, so it belongs behind BearerAuth (whoever holds the token is the
// operator and may act as any tenant), never on a port where the public can set headers.
func TenantFromHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values, present := r.Header[http.CanonicalHeaderKey("X-Tenant-ID")]
		if !present {
			next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), Caller{Operator: true})))
			return
		}
		if len(values) != 1 {
			writeError(w, errorf(http.StatusBadRequest, codeInvalidTenantID, "X-Tenant-ID is given more than once"))
			return
		}
		if err := ValidateTenantID(values[0]); err != nil {
			writeError(w, errorf(http.StatusBadRequest, codeInvalidTenantID, "X-Tenant-ID: %s", err))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), Caller{TenantID: values[0]})))
	})
}

// BearerAuth lets through only requests with "Authorization: Bearer <token>"; others get 401
// unauthorized in the JSON error shape. The comparison takes the same time whatever the
// token sent. An empty token disables the check (RELAY_INSECURE_NO_AUTH): the caller of
// BearerAuth is responsible for allowing that only on purpose.
func BearerAuth(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		// Hashing first makes the comparison independent of the lengths as well.
		gotSum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(gotSum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outbox-relay"`)
			writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "missing or invalid bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken extracts the token of an "Authorization: Bearer <token>" value; the scheme is
// case-insensitive (RFC 9110).
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
