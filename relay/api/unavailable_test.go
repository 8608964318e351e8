package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
)

// requireUnavailable checks a 503 database_unavailable answer: the JSON error shape, the
// message and a Retry-After.
func requireUnavailable(t *testing.T, res response, what string) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, res.status, "%s: %s", what, res.body)
	require.Equal(t, "database_unavailable", res.code(t), what)
	require.Equal(t, "database unavailable, retry later", res.message(t), what)
	require.Equal(t, "5", res.header.Get("Retry-After"), what)
	require.Equal(t, "no-store", res.header.Get("Cache-Control"), what)
}

// TestDatabaseUnavailable cuts the network between the API and PostgreSQL: reads and writes
// answer 503 with Retry-After while it is cut, and work again once it is back. A request
// with an Idempotency-Key that met the outage is not remembered: the same key works after.
func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	b, proxy := setupBehindProxy(t)
	sub := b.createURL(t, "", "https://hooks.example.com/a")
	get := "/v1/subscriptions/" + sub
	create := `{"target_url": "https://hooks.example.com/b", "event_types": ["signup.created"]}`
	key := http.Header{"Idempotency-Key": {"outage-1"}}

	proxy.Cut()
	requireUnavailable(t, b.call(t, http.MethodGet, get, "", ""), "GET one")
	requireUnavailable(t, b.call(t, http.MethodGet, "/v1/subscriptions", "tenant-a", ""), "GET list")
	requireUnavailable(t, b.call(t, http.MethodPatch, get, "", `{"description": "changed"}`), "PATCH")
	requireUnavailable(t, b.callWith(t, http.MethodPost, "/v1/subscriptions", "", create, key), "POST with Idempotency-Key")
	requireUnavailable(t, b.call(t, http.MethodDelete, get, "", ""), "DELETE")

	var stored int
	require.NoError(t, b.db.Get(&stored, `SELECT count(*) FROM relay.subscriptions`))
	require.Equal(t, 1, stored, "nothing was written while cut")

	proxy.Restore()
	res := b.call(t, http.MethodGet, get, "", "")
	require.Equal(t, http.StatusOK, res.status, "GET after restore: %s", res.body)
	require.Empty(t, res.header.Get("Retry-After"))
	res = b.call(t, http.MethodPatch, get, "", `{"description": "changed"}`)
	require.Equal(t, http.StatusOK, res.status, "PATCH after restore: %s", res.body)
	require.Equal(t, "changed", res.json(t)["description"])

	// The key that met the outage is free: the request runs now, and its answer is the one
	// remembered.
	res = b.callWith(t, http.MethodPost, "/v1/subscriptions", "", create, key)
	require.Equal(t, http.StatusCreated, res.status, "POST after restore: %s", res.body)
	require.Empty(t, res.header.Get("Idempotent-Replayed"))
	again := b.callWith(t, http.MethodPost, "/v1/subscriptions", "", create, key)
	require.Equal(t, http.StatusCreated, again.status, "%s", again.body)
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.Equal(t, res.json(t)["id"], again.json(t)["id"])
	var statuses []int
	require.NoError(t, b.db.Select(&statuses, `SELECT status FROM relay.idempotency_keys WHERE key = 'outage-1'`))
	require.Equal(t, []int{http.StatusCreated}, statuses)
}

// TestDatabaseDeadline holds a lock the request needs for longer than the API's request
// timeout: the database does not answer in time, which is 503 too, not 500.
func TestDatabaseDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *api.Config) { c.RequestTimeout = 300 * time.Millisecond })
	// Made and checked through an API without the short timeout: on a loaded machine the
	// first statements on a new database can themselves take longer than 300ms.
	roomy := serve(t, b.db, b.db)
	sub := roomy.createURL(t, "", "https://hooks.example.com/")

	tx, err := b.db.BeginTxx(context.Background(), nil)
	require.NoError(t, err)
	_, err = tx.Exec(`SELECT 1 FROM relay.subscriptions WHERE id = $1 FOR UPDATE`, sub)
	require.NoError(t, err)

	start := time.Now()
	requireUnavailable(t, b.call(t, http.MethodPatch, "/v1/subscriptions/"+sub, "", `{"description": "x"}`), "PATCH on a locked row")
	requireUnavailable(t, b.call(t, http.MethodDelete, "/v1/subscriptions/"+sub, "", ""), "DELETE on a locked row")
	require.Less(t, time.Since(start), 5*time.Second, "cut at the request timeout")

	require.NoError(t, tx.Rollback())
	res := roomy.call(t, http.MethodPatch, "/v1/subscriptions/"+sub, "", `{"description": "x"}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
}

func TestNegativeRequestTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := api.New(api.Config{DB: b.db, DeliveryIDs: b.ids, RequestTimeout: -time.Second})
	require.ErrorContains(t, err, "RequestTimeout must not be negative")
}
