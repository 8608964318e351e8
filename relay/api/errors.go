package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/referralloop/outbox-relay/relay/targets"
)

// Error codes, the "code" of an error answer. They are part of the API: clients branch on
// them, so existing codes never change meaning.
const (
	codeInvalidJSON              = "invalid_json"           // 400: not JSON, trailing data, duplicate field, wrong JSON type
	codeUnknownField             = "unknown_field"          // 400
	codeInvalidTenantID          = "invalid_tenant_id"      // 400: X-Tenant-ID (or the caller's tenant) unusable
	codeUnauthorized             = "unauthorized"           // 401
	codeNotFound                 = "not_found"              // 404: missing, malformed ID, another tenant's
	codeMethodNotAllowed         = "method_not_allowed"     // 405
	codeDuplicate                = "duplicate_subscription" // 409
	codeBodyTooLarge             = "body_too_large"         // 413
	codeUnsupportedMediaType     = "unsupported_media_type" // 415
	codeInvalidTargetURL         = targets.CodeInvalidTargetURL
	codeInvalidEventTypes        = "invalid_event_types"
	codeInvalidEventType         = "invalid_event_type" // the event_type list filter
	codeInvalidFilter            = "invalid_filter"
	codeInvalidHeaders           = "invalid_headers"
	codeInvalidMetadata          = "invalid_metadata"
	codeInvalidDescription       = "invalid_description"
	codeInvalidSecret            = "invalid_secret"           // 422: a supplied secret that is not usable, or given where none is taken
	codeInvalidScheme            = "invalid_signature_scheme" // 422: signature_scheme other than v1 or v1a, or in a PATCH
	codeInvalidRateLimit         = "invalid_rate_limit"       // 422: rate_limit not a number in range
	codeInvalidTimeout           = "invalid_timeout"          // 422: timeout not whole seconds 1 to 30
	codeInvalidLimit             = "invalid_limit"
	codeInvalidCursor            = "invalid_cursor"
	codeInvalidStatus            = "invalid_status"
	codeInvalidSince             = "invalid_since"              // 422: replay's since, the lists' since
	codeInvalidUntil             = "invalid_until"              // 422: GET /v1/events?until=
	codeInvalidSubscriptionID    = "invalid_subscription_id"    // 422: GET /v1/deliveries?subscription_id=
	codeInvalidIdempotency       = "invalid_idempotency_key"    // 400: Idempotency-Key empty, too long, repeated
	codeIdempotencyReused        = "idempotency_key_reused"     // 422: same key, another request
	codeIdempotencyInUse         = "idempotency_key_in_use"     // 409: the first request with the key is still running
	codeNotActive                = "subscription_not_active"    // 409: test of a paused or disabled subscription
	codeSubscriptionDeleted      = "subscription_deleted"       // 409: retry of a deleted subscription's delivery
	codeDeliveryInFlight         = "delivery_in_flight"         // 409: retry of a delivery being sent right now
	codeInternal                 = "internal_error"             // 500, never with detail
	codeDatabaseUnavailable      = "database_unavailable"       // 503 with Retry-After: the database cannot be reached or takes no work
	codeInvalidReveal            = "invalid_reveal"             // 422: GET /v1/subscriptions/{id}?reveal= other than headers
	codeInvalidClientCertificate = "invalid_client_certificate" // 422: client_certificate not a PEM chain with its leaf's key
	codeSecretUnavailable        = "secret_unavailable"         // 500: a stored secret or header value is sealed under a key the relay lacks
)

// errorCodes lists every code above, for the OpenAPI document's check.
var errorCodes = []string{
	codeInvalidJSON, codeUnknownField, codeInvalidTenantID, codeUnauthorized, codeNotFound,
	codeMethodNotAllowed, codeDuplicate, codeBodyTooLarge, codeUnsupportedMediaType,
	codeInvalidTargetURL, codeInvalidEventTypes, codeInvalidEventType, codeInvalidFilter,
	codeInvalidHeaders, codeInvalidMetadata, codeInvalidDescription, codeInvalidSecret,
	codeInvalidScheme, codeInvalidLimit,
	codeInvalidCursor, codeInvalidStatus, codeInvalidSince, codeInvalidIdempotency,
	codeIdempotencyReused, codeIdempotencyInUse, codeNotActive, codeSubscriptionDeleted,
	codeDeliveryInFlight, codeInternal, codeDatabaseUnavailable, codeInvalidReveal,
	codeSecretUnavailable, codeInvalidUntil, codeInvalidSubscriptionID,
	codeInvalidRateLimit, codeInvalidTimeout, codeInvalidClientCertificate,
}

// apiError is an answer for the caller: its status, code and message are sent as they are.
// Any other error a handler returns is internal: logged, and answered with a bare 500.
type apiError struct {
	status  int
	code    string
	message string
	// existingID is set on 409 duplicate_subscription only.
	existingID string
	// retryAfter, when positive, is sent as Retry-After (whole seconds).
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// invalid is a 422: valid JSON, a value that is not acceptable.
func invalid(code, format string, args ...any) *apiError {
	return errorf(http.StatusUnprocessableEntity, code, format, args...)
}

func badJSON(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, codeInvalidJSON, format, args...)
}

func notFound(what string) *apiError {
	return errorf(http.StatusNotFound, codeNotFound, "%s not found", what)
}

var errInternal = &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "internal error"}

// databaseRetryAfter is the Retry-After of a 503 database_unavailable: long enough not to
// hammer a database that is restarting or failing over, short enough that a client's retry
// lands soon after it is back.
const databaseRetryAfter = 5 * time.Second

var errDatabaseUnavailable = &apiError{
	status:     http.StatusServiceUnavailable,
	code:       codeDatabaseUnavailable,
	message:    "database unavailable, retry later",
	retryAfter: databaseRetryAfter,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	ExistingID string `json:"existing_id,omitempty"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.retryAfter/time.Second)))
	}
	writeJSON(w, e.status, errorBody{Error: errorDetail{Code: e.code, Message: e.message, ExistingID: e.existingID}})
}

// writeJSON answers v. The values handlers pass always marshal; should one not, the caller
// still gets a well-formed 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal_error","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // answers may carry secrets
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// truncate shortens caller input quoted back in a message.
func truncate(s string) string {
	const max = 64
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	return string(r[:max]) + "..."
}
