package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lib/pq"
)

// deliveryStatuses are the values of deliveries.status.
var deliveryStatuses = []string{"pending", "succeeded", "failed", "cancelled"}

type deliveryRow struct {
	ID             int64        `db:"id"`
	EventID        string       `db:"event_id"`
	SubscriptionID string       `db:"subscription_id"`
	Status         string       `db:"status"`
	AttemptCount   int          `db:"attempt_count"`
	NextAttemptAt  sql.NullTime `db:"next_attempt_at"`
	CreatedAt      time.Time    `db:"created_at"`
	UpdatedAt      time.Time    `db:"updated_at"`
}

type attemptRow struct {
	DeliveryID   int64          `db:"delivery_id"`
	Attempt      int            `db:"attempt"`
	StartedAt    time.Time      `db:"started_at"`
	DurationMS   int            `db:"duration_ms"`
	StatusCode   sql.NullInt32  `db:"status_code"`
	Error        sql.NullString `db:"error"`
	ResponseBody sql.NullString `db:"response_body"`
}

// deliveryJSON is a delivery as the API shows it.
type deliveryJSON struct {
	ID             string        `json:"id"`
	EventID        string        `json:"event_id"`
	SubscriptionID string        `json:"subscription_id"`
	Status         string        `json:"status"`
	AttemptCount   int           `json:"attempt_count"`
	NextAttemptAt  *time.Time    `json:"next_attempt_at"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
	Attempts       []attemptJSON `json:"attempts"`
}

type attemptJSON struct {
	Attempt      int       `json:"attempt"`
	StartedAt    time.Time `json:"started_at"`
	DurationMS   int       `json:"duration_ms"`
	StatusCode   *int      `json:"status_code"` // null when no HTTP answer came
	Error        *string   `json:"error"`       // null on success
	ResponseBody *string   `json:"response_body"`
}

// toJSON shows r with its public id.
func (r deliveryRow) toJSON(id string, attempts []attemptRow) deliveryJSON {
	d := deliveryJSON{
		ID:             id,
		EventID:        r.EventID,
		SubscriptionID: r.SubscriptionID,
		Status:         r.Status,
		AttemptCount:   r.AttemptCount,
		CreatedAt:      r.CreatedAt.UTC(),
		UpdatedAt:      r.UpdatedAt.UTC(),
		Attempts:       make([]attemptJSON, 0, len(attempts)),
	}
	if r.NextAttemptAt.Valid {
		t := r.NextAttemptAt.Time.UTC()
		d.NextAttemptAt = &t
	}
	for _, at := range attempts {
		j := attemptJSON{
			Attempt:      at.Attempt,
			StartedAt:    at.StartedAt.UTC(),
			DurationMS:   at.DurationMS,
			Error:        nullable(at.Error),
			ResponseBody: nullable(at.ResponseBody),
		}
		if at.StatusCode.Valid {
			code := int(at.StatusCode.Int32)
			j.StatusCode = &code
		}
		d.Attempts = append(d.Attempts, j)
	}
	return d
}

// withAttempts turns delivery rows into their JSON with every attempt, in one query.
func (a *API) withAttempts(ctx context.Context, rows []deliveryRow) ([]deliveryJSON, error) {
	out := make([]deliveryJSON, 0, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	idList := make([]int64, len(rows))
	for i, r := range rows {
		idList[i] = r.ID
	}
	var attempts []attemptRow
	if err := a.db.SelectContext(ctx, &attempts, a.q.listAttempts, pq.Array(idList)); err != nil {
		return nil, fmt.Errorf("reading attempts: %w", err)
	}
	byDelivery := make(map[int64][]attemptRow, len(rows))
	for _, at := range attempts {
		byDelivery[at.DeliveryID] = append(byDelivery[at.DeliveryID], at)
	}
	for _, r := range rows {
		out = append(out, r.toJSON(a.ids.Format(r.ID), byDelivery[r.ID]))
	}
	return out, nil
}

// getDelivery is GET /v1/deliveries/{id}, with all its attempts. A tenant sees only
// deliveries of its own subscriptions, deleted ones included.
func (a *API) getDelivery(w http.ResponseWriter, r *http.Request, s scope) error {
	id, ok := a.ids.Parse(r.PathValue("id"))
	if !ok {
		return notFound("delivery")
	}
	var row deliveryRow
	err := a.db.GetContext(r.Context(), &row, a.q.getDelivery, id, s.sqlTenant())
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("delivery")
	}
	if err != nil {
		return fmt.Errorf("reading delivery: %w", err)
	}
	out, err := a.withAttempts(r.Context(), []deliveryRow{row})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

// listSubscriptionDeliveries is GET /v1/subscriptions/{id}/deliveries: newest first,
// filtered by ?status=.
func (a *API) listSubscriptionDeliveries(w http.ResponseWriter, r *http.Request, s scope) error {
	q := r.URL.Query()
	p, err := a.parsePage(q, cursorDeliveries)
	if err != nil {
		return err
	}
	var status any
	if v := q.Get("status"); v != "" {
		if !slices.Contains(deliveryStatuses, v) {
			return invalid(codeInvalidStatus, "status must be one of %s", strings.Join(deliveryStatuses, ", "))
		}
		status = v
	}
	sub, err := a.loadSubscription(r, s)
	if err != nil {
		return err
	}
	var rows []deliveryRow
	if err := a.db.SelectContext(r.Context(), &rows, a.q.listSubscriptionDeliveries,
		sub.ID, status, p.beforeParam(), p.limit+1); err != nil {
		return fmt.Errorf("listing deliveries: %w", err)
	}
	rows, next := paginate(a, rows, p.limit, cursorDeliveries, func(r deliveryRow) int64 { return r.ID })
	data, err := a.withAttempts(r.Context(), rows)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list[deliveryJSON]{Data: data, NextCursor: next})
	return nil
}
