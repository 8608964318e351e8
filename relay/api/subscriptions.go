package api

import (
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// Limits on a subscription's fields.
const (
	maxEventTypes        = 100
	maxDescriptionLength = 1024 // characters
	maxHeaders           = 50
	maxHeaderNameLength  = 256
	maxHeaderValueLength = 4096 // bytes
	// A rate limit is requests per second: at least one per 1,000 s, at most 10,000 a
	// second (more is no limit worth a token bucket).
	minRateLimit = 0.001
	maxRateLimit = 10000
	// A timeout is whole seconds, 1 to 30.
	minTimeout = 1
	maxTimeout = 30
)

// subscriptionStatuses are the values of subscriptions.status.
var subscriptionStatuses = []string{"active", "paused", "disabled"}

// reservedHeaders are header names a subscription's custom headers may not set: those the
// relay sets on every webhook and those that belong to the transport. Lower case.
var reservedHeaders = []string{
	"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature",
	"x-webhook-signature", "x-webhook-event", "x-webhook-attempt",
	"host", "content-length", "transfer-encoding", "connection", "keep-alive",
	"proxy-connection", "te", "trailer", "upgrade", "expect",
}

// subscriptionRow is one subscriptions row as the API reads it (never the secret).
type subscriptionRow struct {
	Seq            int64           `db:"seq"`
	ID             string          `db:"id"`
	TenantID       sql.NullString  `db:"tenant_id"`
	TargetURL      string          `db:"target_url"`
	EventTypes     pq.StringArray  `db:"event_types"`
	Filter         []byte          `db:"filter"`
	Headers        []byte          `db:"headers"`
	Description    string          `db:"description"`
	Metadata       []byte          `db:"metadata"`
	Ordered        bool            `db:"ordered"`
	RateLimit      sql.NullFloat64 `db:"rate_limit"`
	TimeoutSeconds sql.NullInt64   `db:"timeout_seconds"`
	Status         string          `db:"status"`
	DisabledReason sql.NullString  `db:"disabled_reason"`
	Scheme         string          `db:"signature_scheme"`
	// ClientCert is the client certificate's PEM chain (never its key), NULL for none.
	ClientCert sql.NullString `db:"client_cert"`
	CreatedAt  time.Time      `db:"created_at"`
	UpdatedAt  time.Time      `db:"updated_at"`
}

// subscriptionJSON is a subscription as the API shows it. Header values are masked
// (headerMask) unless GET /v1/subscriptions/{id} is asked to reveal them.
type subscriptionJSON struct {
	ID             string          `json:"id"`
	TenantID       *string         `json:"tenant_id"`
	TargetURL      string          `json:"target_url"`
	EventTypes     []string        `json:"event_types"`
	Filter         json.RawMessage `json:"filter"`
	Headers        json.RawMessage `json:"headers"`
	Description    string          `json:"description"`
	Metadata       json.RawMessage `json:"metadata"`
	Ordered        bool            `json:"ordered"`
	RateLimit      *float64        `json:"rate_limit"`
	Timeout        *int64          `json:"timeout"`
	Status         string          `json:"status"`
	DisabledReason *string         `json:"disabled_reason"`
	BlockedReason  *string         `json:"blocked_reason"`
	Scheme         string          `json:"signature_scheme"`
	// ClientCertificate shows the leaf's subject and expiry only, never the PEMs.
	ClientCertificate *clientCertificateJSON `json:"client_certificate"`
	CreatedAt         time.Time              `json:"created_at"`
	UpdatedAt         time.Time              `json:"updated_at"`
}

// show answers r as the API shows it, with what Config.KeyProblem knows of it.
func (a *API) show(r subscriptionRow) subscriptionJSON {
	return subscriptionJSON{
		ID:                r.ID,
		TenantID:          nullable(r.TenantID),
		TargetURL:         r.TargetURL,
		EventTypes:        []string(r.EventTypes),
		Filter:            json.RawMessage(r.Filter), // nil, hence null, when unset
		Headers:           maskHeaders(r.Headers),
		Description:       r.Description,
		Metadata:          jsonOr(r.Metadata, "{}"),
		Ordered:           r.Ordered,
		RateLimit:         nullableFloat(r.RateLimit),
		Timeout:           nullableInt(r.TimeoutSeconds),
		Status:            r.Status,
		DisabledReason:    nullable(r.DisabledReason),
		BlockedReason:     blockedReason(a.keyProblem(r.ID)),
		Scheme:            r.Scheme,
		ClientCertificate: showClientCertificate(r.ClientCert),
		CreatedAt:         r.CreatedAt.UTC(),
		UpdatedAt:         r.UpdatedAt.UTC(),
	}
}

func nullable(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func nullableFloat(f sql.NullFloat64) *float64 {
	if !f.Valid {
		return nil
	}
	return &f.Float64
}

func nullableInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

func jsonOr(b []byte, def string) json.RawMessage {
	if b == nil {
		return json.RawMessage(def)
	}
	return json.RawMessage(b)
}

// newSubscription is a validated create request.
type newSubscription struct {
	TargetURL   string
	EventTypes  []string // normalised: deduplicated, sorted
	Filter      json.RawMessage
	Headers     map[string]string
	Description string
	Metadata    json.RawMessage
	Ordered     bool
	// Secret is the caller's own whsec_ secret, or "" to have one made.
	Secret string
	// Scheme is signature.SchemeHMAC (v1) or signature.SchemeEd25519 (v1a).
	Scheme    string
	RateLimit sql.NullFloat64
	Timeout   sql.NullInt64 // seconds
	// ClientCertificate is presented to the receiver (mTLS); nil for none.
	ClientCertificate *clientCertificate
}

var createFields = []string{"target_url", "event_types", "event_type", "description", "filter", "headers", "metadata", "ordered",
	"secret", "signature_scheme", "rate_limit", "timeout", "client_certificate"}

// signatureSchemes are the values of signature_scheme.
var signatureSchemes = []string{signature.SchemeHMAC, signature.SchemeEd25519}

// Bounds of a supplied secret's key, in bytes. 24 admits the secrets Svix and others make
// (the shortest in use); 64 is the HMAC-SHA256 block size, beyond which HMAC hashes the key
// down anyway.
const (
	minSecretKeyBytes = 24
	maxSecretKeyBytes = 64
)

// checkSecret checks a secret brought by the caller: "whsec_" and the standard base64 (with
// padding, no whitespace) of a key of minSecretKeyBytes to maxSecretKeyBytes. Messages never
// quote the value: it is a credential.
func checkSecret(secret string) error {
	encoded, ok := strings.CutPrefix(secret, signature.SecretPrefix)
	if !ok {
		return invalid(codeInvalidSecret, "secret must start with %s", signature.SecretPrefix)
	}
	for i := 0; i < len(encoded); i++ {
		if c := encoded[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return invalid(codeInvalidSecret, "secret must be %s followed by standard base64 (A-Z, a-z, 0-9, +, /, = padding)", signature.SecretPrefix)
		}
	}
	key, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return invalid(codeInvalidSecret, "secret must be %s followed by standard base64 with padding; the part after %s does not decode", signature.SecretPrefix, signature.SecretPrefix)
	}
	if len(key) < minSecretKeyBytes || len(key) > maxSecretKeyBytes {
		return invalid(codeInvalidSecret, "secret's key is %d bytes; it must be %d to %d bytes (base64-decoded)", len(key), minSecretKeyBytes, maxSecretKeyBytes)
	}
	return nil
}

// parseCreateSubscription decodes and checks a POST /v1/subscriptions body. It is pure: the
// target URL is checked for syntax only by the Policy afterwards, with DNS. Errors are
// *apiError (400 or 422).
func parseCreateSubscription(body []byte) (newSubscription, error) {
	var in newSubscription
	if body == nil {
		return in, badJSON("request body is empty; send a JSON object")
	}
	obj, err := decodeObject(body, createFields)
	if err != nil {
		return in, err
	}

	targetURL, ok, err := field[string](obj, "target_url", "a string")
	if err != nil {
		return in, err
	}
	if !ok {
		return in, invalid(codeInvalidTargetURL, "target_url is required")
	}
	in.TargetURL = targetURL

	list, hasList, err := field[[]string](obj, "event_types", "an array of strings")
	if err != nil {
		return in, err
	}
	one, hasOne, err := field[string](obj, "event_type", "a string")
	if err != nil {
		return in, err
	}
	switch {
	case hasList && hasOne:
		return in, invalid(codeInvalidEventTypes, "give event_types or event_type, not both")
	case hasOne:
		list = []string{one}
	case !hasList:
		return in, invalid(codeInvalidEventTypes, "event_types is required")
	}
	if in.EventTypes, err = normalizeEventTypes(list); err != nil {
		return in, err
	}

	if in.Description, _, err = field[string](obj, "description", "a string"); err != nil {
		return in, err
	}
	if err := checkDescription(in.Description); err != nil {
		return in, err
	}
	if in.Filter, err = normalizeObject(obj, "filter", codeInvalidFilter); err != nil {
		return in, err
	}
	if string(in.Filter) == "{}" {
		in.Filter = nil // contained in every payload: the same as no filter, and stored so
	}
	if in.Headers, _, err = field[map[string]string](obj, "headers", "an object of strings"); err != nil {
		return in, err
	}
	if err := checkHeaders(in.Headers); err != nil {
		return in, err
	}
	if err := checkNoMask(in.Headers, func(string) bool { return false }); err != nil {
		return in, err
	}
	if in.Metadata, err = normalizeObject(obj, "metadata", codeInvalidMetadata); err != nil {
		return in, err
	}
	if in.Ordered, _, err = field[bool](obj, "ordered", "true or false"); err != nil {
		return in, err
	}
	scheme, ok, err := field[string](obj, "signature_scheme", "a string")
	if err != nil {
		return in, err
	}
	in.Scheme = signature.SchemeHMAC
	if ok {
		if !slices.Contains(signatureSchemes, scheme) {
			return in, invalid(codeInvalidScheme, "signature_scheme must be one of %s", strings.Join(signatureSchemes, ", "))
		}
		in.Scheme = scheme
	}
	secret, hasSecret, err := field[string](obj, "secret", "a string")
	if err != nil {
		return in, err
	}
	if hasSecret {
		if in.Scheme == signature.SchemeEd25519 {
			return in, invalid(codeInvalidSecret, "secret cannot be given with signature_scheme %s: the relay makes the ed25519 key pair and keeps the private key", signature.SchemeEd25519)
		}
		if err := checkSecret(secret); err != nil {
			return in, err
		}
		in.Secret = secret
	}
	if in.RateLimit, err = parseRateLimit(obj); err != nil {
		return in, err
	}
	if in.Timeout, err = parseTimeout(obj); err != nil {
		return in, err
	}
	if in.ClientCertificate, err = parseClientCertificate(obj); err != nil {
		return in, err
	}
	return in, nil
}

// parseRateLimit reads rate_limit: requests per second, a number from minRateLimit to
// maxRateLimit (fractions allowed: 0.5 is one request every two seconds); absent or null
// for none. Anything else, a string "5" included, is 422 invalid_rate_limit.
func parseRateLimit(obj jsonObject) (sql.NullFloat64, error) {
	raw := obj["rate_limit"]
	if isNull(raw) {
		return sql.NullFloat64{}, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || v < minRateLimit || v > maxRateLimit {
		return sql.NullFloat64{}, invalid(codeInvalidRateLimit,
			"rate_limit must be a number of requests per second from %g to %d (e.g. 0.5 or 10), or null for none", minRateLimit, maxRateLimit)
	}
	return sql.NullFloat64{Float64: v, Valid: true}, nil
}

// parseTimeout reads timeout: whole seconds from minTimeout to maxTimeout; absent or null
// for RELAY_DELIVERY_TIMEOUT. Anything else is 422 invalid_timeout.
func parseTimeout(obj jsonObject) (sql.NullInt64, error) {
	raw := obj["timeout"]
	if isNull(raw) {
		return sql.NullInt64{}, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || v != math.Trunc(v) || v < minTimeout || v > maxTimeout {
		return sql.NullInt64{}, invalid(codeInvalidTimeout,
			"timeout must be a whole number of seconds from %d to %d, or null for the relay's default (RELAY_DELIVERY_TIMEOUT)", minTimeout, maxTimeout)
	}
	return sql.NullInt64{Int64: int64(v), Valid: true}, nil
}

// validEventPattern reports whether p may be in a subscription's event_types: "*", an exact
// event type, or a prefix wildcard "<event type>.*".
func validEventPattern(p string) bool {
	if p == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(p, ".*"); ok {
		return outbox.ValidEventType(prefix)
	}
	return outbox.ValidEventType(p)
}

// normalizeEventTypes checks every pattern and answers them deduplicated and sorted, so that
// the duplicate check compares sets.
func normalizeEventTypes(list []string) ([]string, error) {
	if len(list) == 0 {
		return nil, invalid(codeInvalidEventTypes, "event_types must not be empty")
	}
	if len(list) > maxEventTypes {
		return nil, invalid(codeInvalidEventTypes, "event_types has %d entries, the limit is %d", len(list), maxEventTypes)
	}
	for _, p := range list {
		if !validEventPattern(p) {
			return nil, invalid(codeInvalidEventTypes,
				"event type %q is not valid: use an exact type such as signup.created, a prefix wildcard such as signup.*, or *", truncate(p))
		}
	}
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out), nil
}

func checkDescription(d string) error {
	if n := utf8.RuneCountInString(d); n > maxDescriptionLength {
		return invalid(codeInvalidDescription, "description is %d characters long, the limit is %d", n, maxDescriptionLength)
	}
	if strings.ContainsRune(d, 0) {
		return invalid(codeInvalidDescription, "description must not contain the character U+0000")
	}
	return nil
}

// checkHeaders checks custom headers: valid names that the relay does not set itself, each
// once whatever its case, and values without control characters.
func checkHeaders(h map[string]string) error {
	if len(h) > maxHeaders {
		return invalid(codeInvalidHeaders, "headers has %d entries, the limit is %d", len(h), maxHeaders)
	}
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names) // the first problem found does not depend on map order
	seen := make(map[string]bool, len(h))
	for _, name := range names {
		lower := strings.ToLower(name)
		switch {
		case name == "" || len(name) > maxHeaderNameLength || !isToken(name):
			return invalid(codeInvalidHeaders, "header name %q is not a valid HTTP header name", truncate(name))
		case slices.Contains(reservedHeaders, lower):
			return invalid(codeInvalidHeaders, "header %q is set by the relay and cannot be overridden", name)
		case seen[lower]:
			return invalid(codeInvalidHeaders, "header %q is given more than once (names are case-insensitive)", name)
		}
		seen[lower] = true
		value := h[name]
		if len(value) > maxHeaderValueLength {
			return invalid(codeInvalidHeaders, "value of header %q is longer than %d bytes", name, maxHeaderValueLength)
		}
		if !validHeaderValue(value) {
			return invalid(codeInvalidHeaders, "value of header %q contains a control character", name)
		}
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token, what a header name must be.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value: no control characters
// but horizontal tab.
func validHeaderValue(s string) bool {
	for _, r := range s {
		if r < ' ' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// createSubscription is POST /v1/subscriptions.
//
// Idempotency-Key will wrap this route, not live in it: the stored answer is the whole
// response this handler writes.
func (a *API) createSubscription(w http.ResponseWriter, r *http.Request, s scope) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	in, err := parseCreateSubscription(body)
	if err != nil {
		return err
	}
	if err := a.targets.Validate(r.Context(), in.TargetURL); err != nil {
		if terr, ok := errors.AsType[*targets.Error](err); ok {
			return invalid(terr.Code, "%s", terr.Message)
		}
		return fmt.Errorf("validating target URL: %w", err)
	}

	shown, stored, err := a.newSecret(in.Scheme)
	if err != nil {
		return err
	}
	if in.Secret != "" {
		shown = in.Secret
		if stored, err = a.sealSecret(in.Secret); err != nil {
			return fmt.Errorf("sealing secret: %w", err)
		}
	}
	headers, err := a.sealHeaders(in.Headers)
	if err != nil {
		return err
	}
	certChain, certKey, err := a.sealClientCertificate(in.ClientCertificate)
	if err != nil {
		return fmt.Errorf("sealing client certificate key: %w", err)
	}
	metadata := in.Metadata
	if metadata == nil {
		metadata = json.RawMessage("{}")
	}
	filter := sql.NullString{String: string(in.Filter), Valid: in.Filter != nil}
	eventTypes := pq.StringArray(in.EventTypes)

	// A duplicate found and then deleted before we read its id is retried once or twice;
	// after that the conflict is real contention and answered without an id.
	for range 3 {
		var row subscriptionRow
		err = a.db.GetContext(r.Context(), &row, a.q.insertSubscription,
			ids.NewSubscriptionID(), s.sqlTenant(), in.TargetURL, eventTypes, filter,
			string(headers), in.Description, string(metadata), in.Ordered, stored, in.Scheme, in.RateLimit, in.Timeout, certChain, certKey)
		if err == nil {
			a.log.Info().Str("subscription_id", row.ID).Str("tenant_id", s.tenant).Str("signature_scheme", in.Scheme).
				Bool("secret_supplied", in.Secret != "").Msg("subscription created")
			writeJSON(w, http.StatusCreated, struct {
				subscriptionJSON
				secretAnswer
			}{a.show(row), newSecretAnswer(in.Scheme, shown)})
			return nil
		}
		if !isDuplicate(err) {
			return fmt.Errorf("inserting subscription: %w", err)
		}
		var existing string
		err = a.db.GetContext(r.Context(), &existing, a.q.findDuplicate, s.sqlTenant(), in.TargetURL, eventTypes, filter, nil)
		if err == nil {
			aerr := errorf(http.StatusConflict, codeDuplicate, "a subscription with the same target_url, event_types and filter exists")
			aerr.existingID = existing
			return aerr
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("finding duplicate subscription: %w", err)
		}
	}
	return errorf(http.StatusConflict, codeDuplicate, "a subscription with the same target_url, event_types and filter is being changed; try again")
}

// isDuplicate reports whether err is the unique violation of subscriptions_duplicate_idx.
func isDuplicate(err error) bool {
	pqErr, ok := errors.AsType[*pq.Error](err)
	return ok && pqErr.Code == "23505" && pqErr.Constraint == "subscriptions_duplicate_idx"
}

// listSubscriptions is GET /v1/subscriptions: newest first, filtered by ?status= and
// ?event_type= (an exact type lists every subscription that would receive it; a pattern
// lists those that have that very pattern).
func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request, s scope) error {
	q := r.URL.Query()
	p, err := a.parsePage(q, cursorSubscriptions)
	if err != nil {
		return err
	}
	var status, eventType any
	if v := q.Get("status"); v != "" {
		if !slices.Contains(subscriptionStatuses, v) {
			return invalid(codeInvalidStatus, "status must be one of %s", strings.Join(subscriptionStatuses, ", "))
		}
		status = v
	}
	exact := false
	if v := q.Get("event_type"); v != "" {
		if !validEventPattern(v) {
			return invalid(codeInvalidEventType, "event_type %q is not an event type or pattern", truncate(v))
		}
		eventType = v
		exact = outbox.ValidEventType(v)
	}
	var rows []subscriptionRow
	if err := a.db.SelectContext(r.Context(), &rows, a.q.listSubscriptions,
		s.sqlTenant(), status, eventType, exact, p.beforeParam(), p.limit+1); err != nil {
		return fmt.Errorf("listing subscriptions: %w", err)
	}
	rows, next := paginate(a, rows, p.limit, cursorSubscriptions, func(r subscriptionRow) int64 { return r.Seq })
	out := list[subscriptionJSON]{Data: make([]subscriptionJSON, 0, len(rows)), NextCursor: next}
	for _, row := range rows {
		out.Data = append(out.Data, a.show(row))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// loadSubscription answers the live subscription {id} of the request within s, or 404.
func (a *API) loadSubscription(r *http.Request, s scope) (subscriptionRow, error) {
	var row subscriptionRow
	id := r.PathValue("id")
	if !ids.ValidSubscriptionID(id) {
		return row, notFound("subscription")
	}
	err := a.db.GetContext(r.Context(), &row, a.q.getSubscription, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return row, notFound("subscription")
	}
	if err != nil {
		return row, fmt.Errorf("reading subscription: %w", err)
	}
	return row, nil
}

// getSubscription is GET /v1/subscriptions/{id}: header values masked, or in clear with
// ?reveal=headers.
func (a *API) getSubscription(w http.ResponseWriter, r *http.Request, s scope) error {
	reveal := false
	if values, ok := r.URL.Query()["reveal"]; ok {
		for _, v := range values {
			if v != "headers" {
				return invalid(codeInvalidReveal, "reveal must be headers")
			}
		}
		reveal = true
	}
	row, err := a.loadSubscription(r, s)
	if err != nil {
		return err
	}
	out := a.show(row)
	if reveal {
		if out.Headers, err = a.revealHeaders(row.ID, row.Headers); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getSecret is GET /v1/subscriptions/{id}/secret.
func (a *API) getSecret(w http.ResponseWriter, r *http.Request, s scope) error {
	id := r.PathValue("id")
	if !ids.ValidSubscriptionID(id) {
		return notFound("subscription")
	}
	var stored string
	err := a.db.GetContext(r.Context(), &stored, a.q.getSecret, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("subscription")
	}
	if err != nil {
		return fmt.Errorf("reading secret: %w", err)
	}
	plain, err := a.openSecret(stored)
	if err != nil {
		// Not the caller's fault: a wrong or missing encryption key.
		a.log.Error().Err(err).Str("subscription_id", id).Msg("opening signing secret")
		return errSecretUnavailable("the signing secret")
	}
	// The key says its scheme: an ed25519 private key is never shown, only its public half.
	if strings.HasPrefix(plain, signature.PrivateKeyPrefix) {
		public, err := signature.PublicKeyOf(plain)
		if err != nil {
			return fmt.Errorf("subscription %s: reading the public key of its signing key: %w", id, err)
		}
		writeJSON(w, http.StatusOK, newSecretAnswer(signature.SchemeEd25519, public))
		return nil
	}
	writeJSON(w, http.StatusOK, newSecretAnswer(signature.SchemeHMAC, plain))
	return nil
}

// deleteSubscription is DELETE /v1/subscriptions/{id}: a soft delete that cancels the
// subscription's pending deliveries; deleted subscriptions answer 404 from then on.
func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request, s scope) error {
	id := r.PathValue("id")
	if !ids.ValidSubscriptionID(id) {
		return notFound("subscription")
	}
	var deleted, cancelled int64
	if err := a.db.QueryRowxContext(r.Context(), a.q.deleteSubscription, id, s.sqlTenant()).Scan(&deleted, &cancelled); err != nil {
		return fmt.Errorf("deleting subscription: %w", err)
	}
	if deleted == 0 {
		return notFound("subscription")
	}
	a.log.Info().Str("subscription_id", id).Int64("cancelled", cancelled).Msg("subscription deleted")
	a.cancelled(int(cancelled))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
