package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgtest"
	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/targets"
)

const testToken = "test-token-0123456789"

var template = pgtest.Template{
	Name: outbox.MigrationsFingerprint(),
	Setup: func(ctx context.Context, db *sql.DB) error {
		_, err := outbox.Migrate(ctx, db, outbox.MigrateOptions{NotifyTrigger: true})
		return err
	},
}

// fakeResolver makes every *.example.com public and a few names private, without DNS.
type fakeResolver struct{}

func (fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	switch {
	case host == "internal.example.com":
		return []net.IPAddr{{IP: net.ParseIP("10.0.0.5")}}, nil
	case host == "rebind.example.com":
		return []net.IPAddr{{IP: net.ParseIP("::ffff:127.0.0.1")}}, nil
	case strings.HasSuffix(host, ".example.com") || host == "example.com":
		return []net.IPAddr{{IP: net.ParseIP("93.184.216.34")}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// bundle is an API served over HTTP on a database of its own, with helpers to call it and to
// write rows the API only reads.
type bundle struct {
	db  *sqlx.DB
	srv *httptest.Server
	api *api.API
	// ids are the database's delivery IDs, as the API shows them.
	ids *ids.Deliveries
	// queued counts DeliveriesQueued calls.
	queued *atomic.Int64
}

// setup starts an API on a fresh database. opts may change the Config before New.
func setup(t *testing.T, opts ...func(*api.Config)) *bundle {
	t.Helper()
	dsn := pgtest.New(t, template)
	db, err := sqlx.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return serve(t, db, db, opts...)
}

// setupBehindProxy is setup with the API reaching its database through a TCP proxy the test
// can cut; the bundle's own helpers keep a direct connection.
func setupBehindProxy(t *testing.T, opts ...func(*api.Config)) (*bundle, *relaytest.Proxy) {
	t.Helper()
	dsn := pgtest.New(t, template)
	db, err := sqlx.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	proxy := relaytest.NewProxy(t, relaytest.TargetOf(t, dsn))
	apiDB, err := sqlx.Open("postgres", proxy.ProxyURL(t, dsn))
	require.NoError(t, err)
	t.Cleanup(func() { _ = apiDB.Close() })
	return serve(t, db, apiDB, opts...), proxy
}

// serve starts an API on apiDB and answers the bundle, whose helpers use db.
func serve(t *testing.T, db, apiDB *sqlx.DB, opts ...func(*api.Config)) *bundle {
	t.Helper()
	queued := new(atomic.Int64)
	deliveryIDs := relaytest.DeliveryIDs(t, db)
	cfg := api.Config{
		DB:                    apiDB,
		DeliveryIDs:           deliveryIDs,
		Targets:               targets.Policy{Resolver: fakeResolver{}},
		Logger:                zerolog.New(zerolog.NewTestWriter(t)),
		SecretRotationOverlap: time.Hour,
		DeliveriesQueued:      func() { queued.Add(1) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := api.New(cfg)
	require.NoError(t, err)
	return &bundle{db: db, srv: newServer(t, a), api: a, ids: deliveryIDs, queued: queued}
}

// newServer serves a behind the test token and X-Tenant-ID, as the relay does.
func newServer(t *testing.T, a *api.API) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.BearerAuth(testToken, api.TenantFromHeader(a.Handler())))
	t.Cleanup(srv.Close)
	return srv
}

// response is an answer, its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// code answers the error code of an error answer, checking the error shape on the way.
func (r response) code(t *testing.T) string {
	t.Helper()
	return relaytest.ErrorCode(t, r.header, r.body)
}

func (r response) message(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	return m["error"].(map[string]any)["message"].(string)
}

// call sends method path as tenant ("" = the operator) with the test token; a non-empty body
// goes as application/json.
func (b *bundle) call(t *testing.T, method, path, tenant, body string) response {
	t.Helper()
	return b.callWith(t, method, path, tenant, body, nil)
}

// callWith is call with extra request headers (each may repeat).
func (b *bundle) callWith(t *testing.T, method, path, tenant, body string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, vs := range header {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return b.send(t, req)
}

// rawCall sends body with the given Content-Type ("" for none); chunked sends it without a
// length.
func (b *bundle) rawCall(t *testing.T, method, path, contentType, body string, chunked bool) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if chunked {
		req.ContentLength = -1
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	return b.send(t, req)
}

// snapshot answers every row the API could change, as text, to compare before and after
// requests that must change nothing.
func (b *bundle) snapshot(t *testing.T) string {
	t.Helper()
	var out strings.Builder
	for _, table := range []string{"subscriptions", "deliveries", "attempts", "outbox", "idempotency_keys"} {
		var rows string
		require.NoError(t, b.db.Get(&rows, `SELECT coalesce(string_agg(x::text, E'\n' ORDER BY x::text), '') FROM relay.`+table+` x`))
		out.WriteString(table + ":\n" + rows + "\n")
	}
	return out.String()
}

// subscriptionState reads columns the API does not show.
func (b *bundle) subscriptionState(t *testing.T, id string) subscriptionState {
	t.Helper()
	var st subscriptionState
	require.NoError(t, b.db.Get(&st, `SELECT status, disabled_reason, failing_since, secret, previous_secret,
		previous_secret_expires_at, updated_at, deleted_at FROM relay.subscriptions WHERE id = $1`, id))
	return st
}

type subscriptionState struct {
	Status                  string         `db:"status"`
	DisabledReason          sql.NullString `db:"disabled_reason"`
	FailingSince            sql.NullTime   `db:"failing_since"`
	Secret                  string         `db:"secret"`
	PreviousSecret          sql.NullString `db:"previous_secret"`
	PreviousSecretExpiresAt sql.NullTime   `db:"previous_secret_expires_at"`
	UpdatedAt               time.Time      `db:"updated_at"`
	DeletedAt               sql.NullTime   `db:"deleted_at"`
}

// deliveryState reads a delivery's row as the deliverer sees it.
func (b *bundle) deliveryState(t *testing.T, id int64) deliveryState {
	t.Helper()
	var st deliveryState
	require.NoError(t, b.db.Get(&st, `SELECT status, attempt_count, next_attempt_at, lease_owner, lease_until,
		next_attempt_at <= now() AS due FROM relay.deliveries WHERE id = $1`, id))
	return st
}

type deliveryState struct {
	Status        string         `db:"status"`
	AttemptCount  int            `db:"attempt_count"`
	NextAttemptAt sql.NullTime   `db:"next_attempt_at"`
	LeaseOwner    sql.NullString `db:"lease_owner"`
	LeaseUntil    sql.NullTime   `db:"lease_until"`
	Due           sql.NullBool   `db:"due"`
}

func (b *bundle) send(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// create makes a subscription and answers its JSON, failing the test on anything but 201.
func (b *bundle) create(t *testing.T, tenant, body string) map[string]any {
	t.Helper()
	res := b.call(t, http.MethodPost, "/v1/subscriptions", tenant, body)
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	return res.json(t)
}

// createURL makes a subscription to target for "*" and answers its id.
func (b *bundle) createURL(t *testing.T, tenant, target string) string {
	t.Helper()
	return b.create(t, tenant, `{"target_url": "`+target+`", "event_types": ["*"]}`)["id"].(string)
}

// insertEvent writes an outbox row the way an application does and answers its id and
// event_id.
func (b *bundle) insertEvent(t *testing.T, eventType, tenant, payload string) (int64, string) {
	t.Helper()
	var id int64
	var eventID string
	err := b.db.QueryRow(`INSERT INTO relay.outbox (event_type, tenant_id, payload, ordering_key)
		VALUES ($1, nullif($2, ''), $3::jsonb, 'key-1') RETURNING id, event_id`, eventType, tenant, payload).Scan(&id, &eventID)
	require.NoError(t, err)
	return id, eventID
}

// insertDelivery writes a delivery the way the dispatcher and deliverer would leave it.
func (b *bundle) insertDelivery(t *testing.T, outboxID int64, eventID, subID, status string, attempts int) int64 {
	t.Helper()
	var id int64
	err := b.db.QueryRow(`INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, tenant_key, status, attempt_count, next_attempt_at)
		VALUES ($1, $2, $3, (SELECT coalesce(tenant_id, '') FROM relay.subscriptions WHERE id = $3),
		        $4, $5, CASE WHEN $4 = 'pending' THEN now() + interval '1 minute' END) RETURNING id`,
		eventID, outboxID, subID, status, attempts).Scan(&id)
	require.NoError(t, err)
	return id
}

// insertAttempt records an attempt; statusCode 0 means no HTTP answer, errText "" success.
func (b *bundle) insertAttempt(t *testing.T, deliveryID int64, attempt, statusCode int, errText, respBody string) {
	t.Helper()
	_, err := b.db.Exec(`INSERT INTO relay.attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_body)
		VALUES ($1, $2, now() - interval '1 minute', 123, nullif($3, 0), nullif($4, ''), nullif($5, ''))`,
		deliveryID, attempt, statusCode, errText, respBody)
	require.NoError(t, err)
}

// jsonBody marshals v for a request body.
func jsonBody(t *testing.T, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(v))
	return buf.String()
}
