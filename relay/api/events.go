package api

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"
)

// eventIDRE is the UUID forms the outbox accepts for an event ID.
var eventIDRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

type eventRow struct {
	EventID     string         `db:"event_id"`
	EventType   string         `db:"event_type"`
	TenantID    sql.NullString `db:"tenant_id"`
	OrderingKey sql.NullString `db:"ordering_key"`
	Payload     []byte         `db:"payload"`
	CreatedAt   time.Time      `db:"created_at"`
}

// eventJSON is an outbox event as the API shows it.
type eventJSON struct {
	EventID     string          `json:"event_id"`
	EventType   string          `json:"event_type"`
	TenantID    *string         `json:"tenant_id"`
	OrderingKey *string         `json:"ordering_key"`
	Payload     json.RawMessage `json:"payload"`
	CreatedAt   time.Time       `json:"created_at"`
	Deliveries  []deliveryJSON  `json:"deliveries"`
}

// getEvent is GET /v1/events/{event_id}: the outbox event and its deliveries. A tenant sees
// only its own events (tenant_id equal to its own) and, of their deliveries, those of its own
// subscriptions.
func (a *API) getEvent(w http.ResponseWriter, r *http.Request, s scope) error {
	id := r.PathValue("event_id")
	if !eventIDRE.MatchString(id) {
		return notFound("event")
	}
	var ev eventRow
	err := a.db.GetContext(r.Context(), &ev, a.q.getEvent, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("event")
	}
	if err != nil {
		return fmt.Errorf("reading event: %w", err)
	}
	var rows []deliveryRow
	if err := a.db.SelectContext(r.Context(), &rows, a.q.listEventDeliveries, ev.EventID, s.sqlTenant()); err != nil {
		return fmt.Errorf("listing event deliveries: %w", err)
	}
	deliveries, err := a.withAttempts(r.Context(), rows)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eventJSON{
		EventID:     ev.EventID,
		EventType:   ev.EventType,
		TenantID:    nullable(ev.TenantID),
		OrderingKey: nullable(ev.OrderingKey),
		Payload:     json.RawMessage(ev.Payload),
		CreatedAt:   ev.CreatedAt.UTC(),
		Deliveries:  deliveries,
	})
	return nil
}
