package api

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/referralloop/outbox-relay/relay/ids"
)

// testMessage is the message in a webhook.test event's payload.
const testMessage = "test event from outbox-relay"

// replayStatuses are the delivery statuses a replay may re-queue: the finished ones.
var replayStatuses = []string{"failed", "cancelled", "succeeded"}

// minSince and maxSince bound a replay's since: earlier or later cannot change its answer.
var (
	minSince = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxSince = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// parseNoBody checks the body of a route that takes none: absent, empty, or the empty
// object {}. Anything else is 400 (unknown_field, invalid_json).
func parseNoBody(body []byte) error {
	if body == nil {
		return nil
	}
	_, err := decodeObject(body, nil)
	return err
}

// replayRequest is a validated POST /v1/subscriptions/{id}/replay body.
type replayRequest struct {
	Since  time.Time
	Status string
}

var replayFields = []string{"since", "status"}

// parseReplay decodes and checks a replay body: since (RFC 3339, required) and status
// (failed, cancelled or succeeded; failed when absent or null). Pure. An empty body is
// accepted as a body and then lacks since: 422 invalid_since.
func parseReplay(body []byte) (replayRequest, error) {
	in := replayRequest{Status: "failed"}
	obj := jsonObject{}
	if body != nil {
		var err error
		if obj, err = decodeObject(body, replayFields); err != nil {
			return in, err
		}
	}
	since, ok, err := field[string](obj, "since", "a string (an RFC 3339 timestamp)")
	if err != nil {
		return in, err
	}
	if !ok {
		// Replay accepts an empty body or {}. Without since, every stored delivery
		// in the status counts (retention bounds how far back that reaches).
		in.Since = minSince
		since = ""
	} else if in.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
		return in, invalid(codeInvalidSince, "since %q is not an RFC 3339 timestamp such as 2026-11-27T05:00:00Z", truncate(since))
	}
	// In UTC, because PostgreSQL refuses offsets beyond 15:59 that RFC 3339 allows, and
	// within the years 1 to 9999, which it stores however the offset moved them.
	switch in.Since = in.Since.UTC(); {
	case in.Since.Before(minSince):
		in.Since = minSince
	case in.Since.After(maxSince):
		in.Since = maxSince
	}
	status, ok, err := field[string](obj, "status", "a string")
	if err != nil {
		return in, err
	}
	if ok {
		if !slices.Contains(replayStatuses, status) {
			return in, invalid(codeInvalidStatus, "status must be one of %s", strings.Join(replayStatuses, ", "))
		}
		in.Status = status
	}
	return in, nil
}

// rotateSecret is POST /v1/subscriptions/{id}/rotate-secret: a new secret (for v1a, a new
// ed25519 key pair) signs from now on; the current one becomes the previous secret and signs
// beside it (two signatures in webhook-signature) for SecretRotationOverlap. Answers the new
// secret, or for v1a the new public key.
func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request, s scope) error {
	id, body, err := subscriptionRequest(w, r)
	if err != nil {
		return err
	}
	if err := parseNoBody(body); err != nil {
		return err
	}
	var scheme string
	err = a.db.GetContext(r.Context(), &scheme, a.q.getScheme, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("subscription")
	}
	if err != nil {
		return fmt.Errorf("reading signature scheme: %w", err)
	}
	shown, stored, err := a.newSecret(scheme)
	if err != nil {
		return err
	}
	var got string
	err = a.db.GetContext(r.Context(), &got, a.q.rotateSecret, id, s.sqlTenant(), stored, a.overlap.Milliseconds(), scheme)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("subscription") // deleted in between: the scheme itself never changes
	}
	if err != nil {
		return fmt.Errorf("rotating secret: %w", err)
	}
	a.log.Info().Str("subscription_id", id).Str("signature_scheme", scheme).Dur("overlap", a.overlap).Msg("subscription secret rotated")
	writeJSON(w, http.StatusOK, newSecretAnswer(scheme, shown))
	return nil
}

// sendTest is POST /v1/subscriptions/{id}/test: a webhook.test event for this subscription
// only, whatever its event types and filter. A paused or disabled subscription is refused
// with 409 subscription_not_active rather than queued: the deliverer sends nothing to it, so
// the test would sit unsent and then arrive unexpectedly once it is active again.
func (a *API) sendTest(w http.ResponseWriter, r *http.Request, s scope) error {
	id, body, err := subscriptionRequest(w, r)
	if err != nil {
		return err
	}
	if err := parseNoBody(body); err != nil {
		return err
	}
	var (
		status     string
		eventID    sql.NullString
		deliveryID sql.NullInt64
	)
	err = a.db.QueryRowContext(r.Context(), a.q.sendTest, id, s.sqlTenant(), testMessage).Scan(&status, &eventID, &deliveryID)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("subscription")
	}
	if err != nil {
		return fmt.Errorf("queueing test event: %w", err)
	}
	if !eventID.Valid || !deliveryID.Valid {
		return errorf(http.StatusConflict, codeNotActive, "subscription is %s; set its status to active (PATCH) before sending a test", status)
	}
	a.queued()
	a.log.Info().Str("subscription_id", id).Str("event_id", eventID.String).Str("delivery_id", a.ids.Format(deliveryID.Int64)).Msg("test event queued")
	writeJSON(w, http.StatusAccepted, struct {
		EventID    string `json:"event_id"`
		DeliveryID string `json:"delivery_id"`
	}{eventID.String, a.ids.Format(deliveryID.Int64)})
	return nil
}

// replay is POST /v1/subscriptions/{id}/replay: the subscription's deliveries in one finished
// status (failed by default) created at or after since go back to pending, due now, keeping
// their attempt count so the next attempt has the next number. Deliveries of a paused or
// disabled subscription are re-queued too and wait until it is active.
func (a *API) replay(w http.ResponseWriter, r *http.Request, s scope) error {
	id, body, err := subscriptionRequest(w, r)
	if err != nil {
		return err
	}
	in, err := parseReplay(body)
	if err != nil {
		return err
	}
	var found, count int64
	if err := a.db.QueryRowContext(r.Context(), a.q.replay, id, s.sqlTenant(), in.Status, in.Since).Scan(&found, &count); err != nil {
		return fmt.Errorf("replaying deliveries: %w", err)
	}
	if found == 0 {
		return notFound("subscription")
	}
	if count > 0 {
		a.queued()
	}
	a.log.Info().Str("subscription_id", id).Str("status", in.Status).Int64("count", count).Msg("deliveries replayed")
	writeJSON(w, http.StatusAccepted, struct {
		Count int64 `json:"count"`
	}{count})
	return nil
}

// retryDelivery is POST /v1/deliveries/{id}/retry: whatever its status, the delivery goes
// back to pending, due now, and its next attempt has the next number. Refused with 409 when
// it is being sent right now (delivery_in_flight: pending under a live lease) or its
// subscription is deleted (subscription_deleted). A delivery of a paused or disabled
// subscription is re-queued and waits until it is active. Answers the delivery.
func (a *API) retryDelivery(w http.ResponseWriter, r *http.Request, s scope) error {
	id, ok := a.ids.Parse(r.PathValue("id"))
	if !ok {
		return notFound("delivery")
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	if err := parseNoBody(body); err != nil {
		return err
	}

	tx, err := a.db.BeginTxx(r.Context(), nil)
	if err != nil {
		return fmt.Errorf("beginning retry: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var state struct {
		InFlight bool `db:"in_flight"`
		Deleted  bool `db:"deleted"`
	}
	err = tx.GetContext(r.Context(), &state, a.q.lockDelivery, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("delivery")
	}
	if err != nil {
		return fmt.Errorf("reading delivery: %w", err)
	}
	switch {
	case state.Deleted:
		return errorf(http.StatusConflict, codeSubscriptionDeleted, "the delivery's subscription is deleted")
	case state.InFlight:
		return errorf(http.StatusConflict, codeDeliveryInFlight, "the delivery is being sent right now; retry after this attempt ends")
	}
	var row deliveryRow
	if err := tx.GetContext(r.Context(), &row, a.q.retryDelivery, id); err != nil {
		return fmt.Errorf("re-queueing delivery: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing retry: %w", err)
	}
	a.queued()
	a.log.Info().Str("delivery_id", a.ids.Format(id)).Str("subscription_id", row.SubscriptionID).Msg("delivery re-queued")
	out, err := a.withAttempts(r.Context(), []deliveryRow{row})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, out[0])
	return nil
}

// subscriptionRequest reads what every write on one subscription starts with: the
// subscription ID from the path (a malformed one is 404, like a missing one) and the body.
func subscriptionRequest(w http.ResponseWriter, r *http.Request) (id string, body []byte, err error) {
	id = r.PathValue("id")
	if !ids.ValidSubscriptionID(id) {
		return "", nil, notFound("subscription")
	}
	body, err = readBody(w, r)
	return id, body, err
}
