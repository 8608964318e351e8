package api

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/relay/targets"
)

// settableStatuses are the statuses a PATCH may set; disabled is the relay's own verdict.
var settableStatuses = []string{"active", "paused"}

var patchFields = []string{"target_url", "event_types", "event_type", "description", "filter", "headers", "metadata", "ordered", "status",
	"secret", "signature_scheme", "rate_limit", "timeout", "client_certificate"}

// subscriptionPatch is a validated PATCH request. A nil pointer (or nil slice) leaves the
// field as it is.
type subscriptionPatch struct {
	TargetURL  *string
	EventTypes []string // normalised: deduplicated, sorted
	// Filter points to nil to remove the filter.
	Filter *json.RawMessage
	// Headers points to an empty map to remove every custom header.
	Headers     *map[string]string
	Description *string
	// Metadata points to the new object ({} when it was set to null).
	Metadata *json.RawMessage
	Ordered  *bool
	Status   *string // active or paused
	// RateLimit and Timeout point to their new value; an invalid one (null) clears it.
	RateLimit *sql.NullFloat64
	Timeout   *sql.NullInt64
	// SetClientCertificate says client_certificate was given: ClientCertificate replaces
	// the stored one, nil removing it.
	SetClientCertificate bool
	ClientCertificate    *clientCertificate
}

// parsePatchSubscription decodes and checks a PATCH /v1/subscriptions/{id} body, with the
// rules of parseCreateSubscription for each field present. Absent fields stay unchanged; null
// resets an optional field to its default (filter: none; headers and metadata: {};
// description: ""; ordered: false; rate_limit: none; timeout: RELAY_DELIVERY_TIMEOUT;
// client_certificate: none) and is refused for target_url, event_types and status,
// which a subscription cannot be without. Pure: the target URL's DNS check comes later.
func parsePatchSubscription(body []byte) (subscriptionPatch, error) {
	var p subscriptionPatch
	if body == nil {
		return p, badJSON("request body is empty; send a JSON object with the fields to change")
	}
	obj, err := decodeObject(body, patchFields)
	if err != nil {
		return p, err
	}
	has := func(name string) bool { _, ok := obj[name]; return ok }

	// Known, so not 400 unknown_field, but fixed at creation: a 422 that says what to do.
	if has("secret") {
		return p, invalid(codeInvalidSecret, "secret cannot be changed by PATCH; use POST /v1/subscriptions/{id}/rotate-secret, or create a subscription with the secret")
	}
	if has("signature_scheme") {
		return p, invalid(codeInvalidScheme, "signature_scheme cannot be changed by PATCH; create a new subscription with the scheme wanted")
	}

	if has("target_url") {
		v, ok, err := field[string](obj, "target_url", "a string")
		if err != nil {
			return p, err
		}
		if !ok {
			return p, invalid(codeInvalidTargetURL, "target_url cannot be removed; give a new URL or leave the field out")
		}
		p.TargetURL = &v
	}

	if has("event_types") && has("event_type") {
		return p, invalid(codeInvalidEventTypes, "give event_types or event_type, not both")
	}
	if has("event_types") || has("event_type") {
		var list []string
		var ok bool
		if has("event_types") {
			list, ok, err = field[[]string](obj, "event_types", "an array of strings")
		} else {
			var one string
			one, ok, err = field[string](obj, "event_type", "a string")
			list = []string{one}
		}
		if err != nil {
			return p, err
		}
		if !ok {
			return p, invalid(codeInvalidEventTypes, "event_types cannot be removed; give new event types or leave the field out")
		}
		if p.EventTypes, err = normalizeEventTypes(list); err != nil {
			return p, err
		}
	}

	if has("description") {
		d, _, err := field[string](obj, "description", "a string")
		if err != nil {
			return p, err
		}
		if err := checkDescription(d); err != nil {
			return p, err
		}
		p.Description = &d
	}
	if has("filter") {
		f, err := normalizeObject(obj, "filter", codeInvalidFilter)
		if err != nil {
			return p, err
		}
		if string(f) == "{}" {
			f = nil // as on creation: contained in every payload, so no filter
		}
		p.Filter = &f
	}
	if has("headers") {
		h, _, err := field[map[string]string](obj, "headers", "an object of strings")
		if err != nil {
			return p, err
		}
		if err := checkHeaders(h); err != nil {
			return p, err
		}
		if h == nil {
			h = map[string]string{}
		}
		p.Headers = &h
	}
	if has("metadata") {
		m, err := normalizeObject(obj, "metadata", codeInvalidMetadata)
		if err != nil {
			return p, err
		}
		if m == nil {
			m = json.RawMessage("{}")
		}
		p.Metadata = &m
	}
	if has("ordered") {
		o, _, err := field[bool](obj, "ordered", "true or false")
		if err != nil {
			return p, err
		}
		p.Ordered = &o
	}
	if has("rate_limit") {
		v, err := parseRateLimit(obj)
		if err != nil {
			return p, err
		}
		p.RateLimit = &v
	}
	if has("timeout") {
		v, err := parseTimeout(obj)
		if err != nil {
			return p, err
		}
		p.Timeout = &v
	}
	if has("client_certificate") {
		c, err := parseClientCertificate(obj)
		if err != nil {
			return p, err
		}
		p.SetClientCertificate, p.ClientCertificate = true, c
	}
	if has("status") {
		st, ok, err := field[string](obj, "status", "a string")
		if err != nil {
			return p, err
		}
		if !ok || (st != "active" && st != "paused") {
			return p, invalid(codeInvalidStatus, "status must be active or paused (disabled is set by the relay itself; set active to re-enable)")
		}
		p.Status = &st
	}
	return p, nil
}

// patchSubscription is PATCH /v1/subscriptions/{id}: change some fields, validated as on
// creation, and answer the whole subscription. Setting status active on a paused or disabled
// subscription clears disabled_reason and failing_since, so it starts with a clean health
// record; its waiting deliveries go out again (those cancelled when it was disabled do not:
// replay them).
func (a *API) patchSubscription(w http.ResponseWriter, r *http.Request, s scope) error {
	id, body, err := subscriptionRequest(w, r)
	if err != nil {
		return err
	}
	p, err := parsePatchSubscription(body)
	if err != nil {
		return err
	}
	if p.TargetURL != nil {
		if err := a.targets.Validate(r.Context(), *p.TargetURL); err != nil {
			if terr, ok := errors.AsType[*targets.Error](err); ok {
				return invalid(terr.Code, "%s", terr.Message)
			}
			return fmt.Errorf("validating target URL: %w", err)
		}
	}

	tx, err := a.db.BeginTxx(r.Context(), nil)
	if err != nil {
		return fmt.Errorf("beginning update: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	var cur subscriptionRow
	err = tx.GetContext(r.Context(), &cur, a.q.lockSubscription, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("subscription")
	}
	if err != nil {
		return fmt.Errorf("reading subscription: %w", err)
	}

	// Merge: the new value where the patch has one, the current one elsewhere.
	next := cur
	if p.TargetURL != nil {
		next.TargetURL = *p.TargetURL
	}
	if p.EventTypes != nil {
		next.EventTypes = pq.StringArray(p.EventTypes)
	}
	if p.Filter != nil {
		next.Filter = *p.Filter
	}
	if p.Headers != nil {
		if next.Headers, err = a.mergeHeaders(cur.Headers, *p.Headers); err != nil {
			return err
		}
	}
	if p.Description != nil {
		next.Description = *p.Description
	}
	if p.Metadata != nil {
		next.Metadata = *p.Metadata
	}
	if p.Ordered != nil {
		next.Ordered = *p.Ordered
	}
	if p.Status != nil {
		next.Status = *p.Status
	}
	if p.RateLimit != nil {
		next.RateLimit = *p.RateLimit
	}
	if p.Timeout != nil {
		next.TimeoutSeconds = *p.Timeout
	}
	certChain, certKey, err := a.sealClientCertificate(p.ClientCertificate)
	if err != nil {
		return fmt.Errorf("sealing client certificate key: %w", err)
	}
	reactivated := p.Status != nil && next.Status == "active" && cur.Status != "active"
	filter := sql.NullString{String: string(next.Filter), Valid: next.Filter != nil}

	var row subscriptionRow
	err = tx.GetContext(r.Context(), &row, a.q.updateSubscription, id, next.TargetURL, next.EventTypes,
		filter, string(jsonOr(next.Headers, "{}")), next.Description, string(jsonOr(next.Metadata, "{}")),
		next.Ordered, next.Status, p.Status != nil, reactivated, next.RateLimit, next.TimeoutSeconds,
		p.SetClientCertificate, certChain, certKey)
	if isDuplicate(err) {
		_ = tx.Rollback()
		aerr := errorf(http.StatusConflict, codeDuplicate, "another subscription has the same target_url, event_types and filter")
		var existing string
		err := a.db.GetContext(r.Context(), &existing, a.q.findDuplicate, cur.TenantID, next.TargetURL, next.EventTypes, filter, id)
		switch {
		case err == nil:
			aerr.existingID = existing
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("finding duplicate subscription: %w", err)
		}
		return aerr
	}
	if err != nil {
		return fmt.Errorf("updating subscription: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing update: %w", err)
	}
	a.log.Info().Str("subscription_id", id).Str("status", row.Status).Msg("subscription updated")
	if reactivated {
		a.queued() // its waiting deliveries are claimable again
	}
	writeJSON(w, http.StatusOK, a.show(row))
	return nil
}
