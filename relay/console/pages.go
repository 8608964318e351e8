package console

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// The pages that read: overview, subscriptions, a subscription, the delivery log, a
// delivery, an event.

// pageSize is how many rows a list shows at once.
const pageSize = 50

type subscriptionRow struct {
	Seq            int64          `db:"seq"`
	ID             string         `db:"id"`
	TenantID       sql.NullString `db:"tenant_id"`
	TargetURL      string         `db:"target_url"`
	EventTypes     pq.StringArray `db:"event_types"`
	Description    string         `db:"description"`
	Status         string         `db:"status"`
	DisabledReason sql.NullString `db:"disabled_reason"`
	FailingSince   sql.NullTime   `db:"failing_since"`
	Ordered        bool           `db:"ordered"`
	Scheme         string         `db:"signature_scheme"`
	CreatedAt      time.Time      `db:"created_at"`
	Ended24h       int64          `db:"ended_24h"`
	OK24h          int64          `db:"ok_24h"`
	LastAttemptAt  sql.NullTime   `db:"last_attempt_at"`
	LastStatus     sql.NullInt32  `db:"last_status"`
	LastError      sql.NullString `db:"last_error"`
	InFlight       int64          `db:"in_flight"`
}

// SuccessRate is the share of the deliveries that ended in the last day that succeeded, ""
// without any.
func (s subscriptionRow) SuccessRate() string {
	return percent(s.OK24h, s.Ended24h)
}

type deliveryRow struct {
	ID             int64          `db:"id"`
	EventID        string         `db:"event_id"`
	SubscriptionID string         `db:"subscription_id"`
	Status         string         `db:"status"`
	AttemptCount   int            `db:"attempt_count"`
	NextAttemptAt  sql.NullTime   `db:"next_attempt_at"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
	EventType      string         `db:"event_type"`
	TargetURL      string         `db:"target_url"`
	LastStatus     sql.NullInt32  `db:"last_status"`
	LastError      sql.NullString `db:"last_error"`
}

type attemptRow struct {
	Attempt      int            `db:"attempt"`
	StartedAt    time.Time      `db:"started_at"`
	DurationMS   int            `db:"duration_ms"`
	StatusCode   sql.NullInt32  `db:"status_code"`
	Error        sql.NullString `db:"error"`
	ResponseBody sql.NullString `db:"response_body"`
}

type eventRow struct {
	EventID      string         `db:"event_id"`
	EventType    string         `db:"event_type"`
	TenantID     sql.NullString `db:"tenant_id"`
	CreatedAt    time.Time      `db:"created_at"`
	DispatchedAt sql.NullTime   `db:"dispatched_at"`
	Payload      string         `db:"payload"`
}

// tenantArg is the scope as a query parameter: NULL for the operator.
func tenantArg(ctx context.Context) sql.NullString {
	t := scope(ctx)
	return sql.NullString{String: t, Valid: t != ""}
}

func (c *Console) q(query string) string { return outbox.Qualify(c.schema, query) }

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var ov struct {
		OutboxBacklog sql.NullInt64 `db:"outbox_backlog"`
		OutboxOldest  sql.NullTime  `db:"outbox_oldest"`
		Pending       int64         `db:"pending"`
		PendingOldest sql.NullTime  `db:"pending_oldest"`
	}
	var hour struct {
		Succeeded  int64 `db:"succeeded"`
		HTTPErrors int64 `db:"http_errors"`
		NoAnswer   int64 `db:"no_answer"`
	}
	var failing []subscriptionRow
	tenant := tenantArg(r.Context())
	err := errors.Join(
		c.db.GetContext(ctx, &ov, c.q(sqlOverview), tenant),
		c.db.GetContext(ctx, &hour, c.q(sqlLastHour), tenant),
		c.db.SelectContext(ctx, &failing, c.q(sqlFailingNow), tenant, pageSize),
	)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "overview", pageData{Title: "Overview", Data: map[string]any{
		"Overview": ov, "Hour": hour, "Failing": failing,
	}})
}

func (c *Console) subscriptions(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	// Pages of pageSize, newest first; ?before= is the last seq of the page before.
	var before any
	if b := r.URL.Query().Get("before"); b != "" {
		seq, err := strconv.ParseInt(b, 10, 64)
		if err != nil || seq <= 0 {
			c.render(w, r, http.StatusBadRequest, "message", pageData{Title: "Subscriptions", Message: "the page cursor is not a number"})
			return
		}
		before = seq
	}
	var subs []subscriptionRow
	if err := c.db.SelectContext(ctx, &subs, c.q(sqlSubscriptions), tenantArg(r.Context()), pageSize+1, before); err != nil {
		c.fail(w, r, err)
		return
	}
	next := ""
	if len(subs) > pageSize {
		subs = subs[:pageSize]
		next = "?before=" + strconv.FormatInt(subs[pageSize-1].Seq, 10)
	}
	c.render(w, r, http.StatusOK, "subscriptions", pageData{Title: "Subscriptions", Data: map[string]any{
		"Subs": subs, "Next": next, "First": before == nil}})
}

// loadSubscription reads the subscription of the path's {id} within the caller's scope; nil
// when there is none (another tenant's is none).
func (c *Console) loadSubscription(ctx context.Context, id string) (*subscriptionRow, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if !ids.ValidSubscriptionID(id) {
		return nil, nil
	}
	var s subscriptionRow
	err := c.db.GetContext(ctx, &s, c.q(sqlSubscription), id, tenantArg(ctx))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &s, err
}

func (c *Console) subscription(w http.ResponseWriter, r *http.Request) {
	c.showSubscription(w, r, http.StatusOK, pageData{})
}

// showSubscription renders a subscription's page with its recent deliveries; pd may carry a
// form's error or a secret to show.
func (c *Console) showSubscription(w http.ResponseWriter, r *http.Request, status int, pd pageData) {
	id := r.PathValue("id")
	s, err := c.loadSubscription(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if s == nil {
		c.notFound(w, r, "subscription")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var recent []deliveryRow
	if err := c.db.SelectContext(ctx, &recent, c.q(sqlDeliveries), tenantArg(r.Context()),
		nil, nil, s.ID, nil, nil, nil, 20); err != nil {
		c.fail(w, r, err)
		return
	}
	pd.Title = "Subscription " + s.ID
	pd.Data = map[string]any{"Sub": s, "Recent": recent, "Form": pd.Form, "Secret": pd.Secret, "PublicKey": pd.PublicKey}
	c.render(w, r, status, "subscription", pd)
}

// logFilter is the delivery log's query string.
type logFilter struct {
	Status, EventType, Subscription string
	From, To                        string // datetime-local values, UTC
	Before                          string // cursor: a delivery ID
}

var deliveryStatuses = []string{"pending", "succeeded", "failed", "cancelled"}

// timeInput is the layout of <input type="datetime-local">, read as UTC.
const timeInput = "2006-01-02T15:04"

func parseLogFilter(q url.Values, deliveryIDs *ids.Deliveries) (f logFilter, args []any, problem string) {
	f = logFilter{Status: q.Get("status"), EventType: q.Get("event_type"), Subscription: q.Get("subscription"),
		From: q.Get("from"), To: q.Get("to"), Before: q.Get("before")}
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	when := func(name, s string) any {
		if s == "" {
			return nil
		}
		t, err := time.Parse(timeInput, s)
		if err != nil {
			problem = name + " is not a date and time (YYYY-MM-DDTHH:MM, UTC)"
			return nil
		}
		return t
	}
	if f.Status != "" && !slices.Contains(deliveryStatuses, f.Status) {
		problem = "status must be one of pending, succeeded, failed, cancelled"
	}
	var before any
	if f.Before != "" {
		id, ok := deliveryIDs.Parse(f.Before)
		if !ok {
			problem = "the page cursor is not a delivery ID"
		}
		before = id
	}
	args = []any{null(f.Status), null(f.EventType), null(f.Subscription), when("from", f.From), when("to", f.To), before}
	return f, args, problem
}

// query is the filter as a query string, with the cursor set to before ("" for none).
func (f logFilter) query(before string) string {
	v := url.Values{}
	for k, s := range map[string]string{"status": f.Status, "event_type": f.EventType, "subscription": f.Subscription,
		"from": f.From, "to": f.To, "before": before} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func (c *Console) deliveries(w http.ResponseWriter, r *http.Request) {
	f, args, problem := parseLogFilter(r.URL.Query(), c.ids)
	if problem != "" {
		c.render(w, r, http.StatusBadRequest, "message", pageData{Title: "Delivery log", Message: problem})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var rows []deliveryRow
	all := append([]any{tenantArg(r.Context())}, append(args, pageSize+1)...)
	if err := c.db.SelectContext(ctx, &rows, c.q(sqlDeliveries), all...); err != nil {
		c.fail(w, r, err)
		return
	}
	next := ""
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		next = f.query(c.ids.Format(rows[pageSize-1].ID))
	}
	var types []string
	if err := c.db.SelectContext(ctx, &types, c.q(sqlEventTypes), tenantArg(r.Context())); err != nil {
		c.fail(w, r, err)
		return
	}
	data := map[string]any{"Rows": rows, "Filter": f, "Next": next, "Statuses": deliveryStatuses, "EventTypes": types,
		"Newest": f.query(""), "Live": f.Before == "", "Self": f.query(f.Before)}
	// The log's script asks for the rows alone, to refresh them in place.
	if r.Header.Get("X-Console-Fragment") == "rows" {
		c.render(w, r, http.StatusOK, "delivery-rows", pageData{Data: data})
		return
	}
	c.render(w, r, http.StatusOK, "deliveries", pageData{Title: "Delivery log", Data: data})
}

func (c *Console) delivery(w http.ResponseWriter, r *http.Request) {
	id, ok := c.ids.Parse(r.PathValue("id"))
	if !ok {
		c.notFound(w, r, "delivery")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var d struct {
		deliveryRow
		Payload        string         `db:"payload"`
		EventTenantID  sql.NullString `db:"event_tenant_id"`
		EventCreatedAt time.Time      `db:"event_created_at"`
		HeaderNames    pq.StringArray `db:"header_names"`
		Scheme         string         `db:"signature_scheme"`
	}
	err := c.db.GetContext(ctx, &d, c.q(sqlDelivery), id, tenantArg(r.Context()))
	if errors.Is(err, sql.ErrNoRows) {
		c.notFound(w, r, "delivery")
		return
	}
	var attempts []attemptRow
	if err == nil {
		err = c.db.SelectContext(ctx, &attempts, c.q(sqlAttempts), id)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	req := requestAsSent(d.deliveryRow, d.EventCreatedAt, d.EventTenantID.String, d.Payload, d.HeaderNames, d.Scheme, attempts)
	c.render(w, r, http.StatusOK, "delivery", pageData{Title: "Delivery " + c.ids.Format(d.ID), Data: map[string]any{
		"D": d.deliveryRow, "Attempts": attempts, "Request": req,
	}})
}

func (c *Console) event(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validUUID(id) {
		c.notFound(w, r, "event")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var ev eventRow
	err := c.db.GetContext(ctx, &ev, c.q(sqlEvent), id, tenantArg(r.Context()))
	if errors.Is(err, sql.ErrNoRows) {
		c.notFound(w, r, "event")
		return
	}
	var ds []deliveryRow
	if err == nil {
		err = c.db.SelectContext(ctx, &ds, c.q(sqlEventDeliveries), id, tenantArg(r.Context()))
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "event", pageData{Title: "Event " + ev.EventID, Data: map[string]any{
		"E": ev, "Payload": indentJSON(ev.Payload), "Deliveries": ds,
	}})
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request, what string) {
	c.render(w, r, http.StatusNotFound, "message", pageData{Title: "Not found", Message: "There is no such " + what + " here."})
}

// validUUID reports whether s is a UUID in its usual text form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, ch := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if ch != '-' {
				return false
			}
		case !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F'):
			return false
		}
	}
	return true
}
