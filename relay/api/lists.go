package api

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// The lists of every event and every delivery the caller may see: GET /v1/events and GET
// /v1/deliveries. Both run newest first by row id, paginated like the other lists, and
// each filter combination walks an index in that order (migration 0009), so a page costs
// about its own rows however large the tables are.

// eventSummaryJSON is an event in GET /v1/events: the event part of GET /v1/events/{id},
// its deliveries replaced by their number (those the caller can see).
type eventSummaryJSON struct {
	EventID       string          `json:"event_id"`
	EventType     string          `json:"event_type"`
	TenantID      *string         `json:"tenant_id"`
	OrderingKey   *string         `json:"ordering_key"`
	Payload       json.RawMessage `json:"payload"`
	CreatedAt     time.Time       `json:"created_at"`
	DeliveryCount int             `json:"delivery_count"`
}

type eventListRow struct {
	eventRow
	ID            int64 `db:"id"`
	DeliveryCount int   `db:"delivery_count"`
}

// queryTime reads an optional RFC 3339 timestamp parameter; a bad one is 422 with code
// (which names the parameter).
func queryTime(q url.Values, name, code string) (any, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, invalid(code, "%s %q is not an RFC 3339 timestamp such as 2026-11-27T05:00:00Z", name, truncate(v))
	}
	return t, nil
}

// queryEventType reads an optional exact event type filter.
func queryEventType(q url.Values) (any, error) {
	v := q.Get("event_type")
	if v == "" {
		return nil, nil
	}
	if !outbox.ValidEventType(v) {
		return nil, invalid(codeInvalidEventType, "event_type %q is not an event type (such as signup.created)", truncate(v))
	}
	return v, nil
}

// listEvents is GET /v1/events: the outbox events the caller may see (a tenant: its own),
// newest first; filters event_type (exact), since and until (created_at, RFC 3339, since
// inclusive, until exclusive).
func (a *API) listEvents(w http.ResponseWriter, r *http.Request, s scope) error {
	q := r.URL.Query()
	p, err := a.parsePage(q, cursorEvents)
	if err != nil {
		return err
	}
	eventType, err := queryEventType(q)
	if err != nil {
		return err
	}
	since, err := queryTime(q, "since", codeInvalidSince)
	if err != nil {
		return err
	}
	until, err := queryTime(q, "until", codeInvalidUntil)
	if err != nil {
		return err
	}
	var rows []eventListRow
	if err := a.db.SelectContext(r.Context(), &rows, a.q.listEvents,
		s.sqlTenant(), eventType, since, until, p.beforeParam(), p.limit+1); err != nil {
		return fmt.Errorf("listing events: %w", err)
	}
	rows, next := paginate(a, rows, p.limit, cursorEvents, func(r eventListRow) int64 { return r.ID })
	out := list[eventSummaryJSON]{Data: make([]eventSummaryJSON, 0, len(rows)), NextCursor: next}
	for _, ev := range rows {
		out.Data = append(out.Data, eventSummaryJSON{
			EventID:       ev.EventID,
			EventType:     ev.EventType,
			TenantID:      nullable(ev.TenantID),
			OrderingKey:   nullable(ev.OrderingKey),
			Payload:       json.RawMessage(ev.Payload),
			CreatedAt:     ev.CreatedAt.UTC(),
			DeliveryCount: ev.DeliveryCount,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deliverySummaryJSON is a delivery in GET /v1/deliveries: GET /v1/deliveries/{id} without
// its attempts, with its event's type and a summary of its latest attempt (null before the
// first).
type deliverySummaryJSON struct {
	ID             string           `json:"id"`
	EventID        string           `json:"event_id"`
	EventType      string           `json:"event_type"`
	SubscriptionID string           `json:"subscription_id"`
	Status         string           `json:"status"`
	AttemptCount   int              `json:"attempt_count"`
	NextAttemptAt  *time.Time       `json:"next_attempt_at"`
	CreatedAt      time.Time        `json:"created_at"`
	UpdatedAt      time.Time        `json:"updated_at"`
	LastAttempt    *lastAttemptJSON `json:"last_attempt"`
}

// lastAttemptJSON is the latest attempt of a listed delivery, without its response body.
type lastAttemptJSON struct {
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int       `json:"duration_ms"`
	StatusCode *int      `json:"status_code"`
	Error      *string   `json:"error"`
}

type deliveryListRow struct {
	deliveryRow
	EventType      string         `db:"event_type"`
	LastAttempt    sql.NullInt32  `db:"last_attempt"`
	LastStartedAt  sql.NullTime   `db:"last_started_at"`
	LastDurationMS sql.NullInt32  `db:"last_duration_ms"`
	LastStatusCode sql.NullInt32  `db:"last_status_code"`
	LastError      sql.NullString `db:"last_error"`
}

// listDeliveries is GET /v1/deliveries: the deliveries the caller may see (a tenant: those
// of its subscriptions, deleted ones included), newest first; filters status,
// subscription_id, event_type (exact) and since (created_at, RFC 3339, inclusive).
func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request, s scope) error {
	q := r.URL.Query()
	p, err := a.parsePage(q, cursorDeliveries)
	if err != nil {
		return err
	}
	var status, subscription any
	if v := q.Get("status"); v != "" {
		if !slices.Contains(deliveryStatuses, v) {
			return invalid(codeInvalidStatus, "status must be one of %s", strings.Join(deliveryStatuses, ", "))
		}
		status = v
	}
	if v := q.Get("subscription_id"); v != "" {
		if !ids.ValidSubscriptionID(v) {
			return invalid(codeInvalidSubscriptionID, "subscription_id %q is not a subscription ID (sub_ and 26 characters)", truncate(v))
		}
		subscription = v
	}
	eventType, err := queryEventType(q)
	if err != nil {
		return err
	}
	since, err := queryTime(q, "since", codeInvalidSince)
	if err != nil {
		return err
	}
	var rows []deliveryListRow
	if err := a.db.SelectContext(r.Context(), &rows, a.q.listDeliveries,
		s.sqlTenant(), status, subscription, eventType, since, p.beforeParam(), p.limit+1); err != nil {
		return fmt.Errorf("listing deliveries: %w", err)
	}
	rows, next := paginate(a, rows, p.limit, cursorDeliveries, func(r deliveryListRow) int64 { return r.ID })
	out := list[deliverySummaryJSON]{Data: make([]deliverySummaryJSON, 0, len(rows)), NextCursor: next}
	for _, row := range rows {
		d := row.toJSON(a.ids.Format(row.ID), nil)
		item := deliverySummaryJSON{
			ID: d.ID, EventID: d.EventID, EventType: row.EventType, SubscriptionID: d.SubscriptionID,
			Status: d.Status, AttemptCount: d.AttemptCount, NextAttemptAt: d.NextAttemptAt,
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
		}
		if row.LastAttempt.Valid {
			last := &lastAttemptJSON{
				Attempt:    int(row.LastAttempt.Int32),
				StartedAt:  row.LastStartedAt.Time.UTC(),
				DurationMS: int(row.LastDurationMS.Int32),
				Error:      nullable(row.LastError),
			}
			if row.LastStatusCode.Valid {
				code := int(row.LastStatusCode.Int32)
				last.StatusCode = &code
			}
			item.LastAttempt = last
		}
		out.Data = append(out.Data, item)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
