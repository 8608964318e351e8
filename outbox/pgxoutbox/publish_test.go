package pgxoutbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/outbox/pgxoutbox"
)

// The three handles a pgx application publishes through.
var (
	_ pgxoutbox.Execer = pgx.Tx(nil)
	_ pgxoutbox.Execer = (*pgx.Conn)(nil)
	_ pgxoutbox.Execer = (*pgxpool.Pool)(nil)
)

// testBundle is a migrated database reached through pgx only.
type testBundle struct {
	dsn  string
	pool *pgxpool.Pool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	_, dsn := relaytest.NewDB(t)
	return &testBundle{dsn: dsn, pool: newPool(t, dsn)}
}

func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// connect opens a *pgx.Conn that sends statements in mode.
func (b *testBundle) connect(t *testing.T, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(b.dsn)
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

type storedEvent struct {
	EventID     string  `db:"event_id"`
	EventType   string  `db:"event_type"`
	TenantID    *string `db:"tenant_id"`
	Payload     string  `db:"payload"`
	OrderingKey *string `db:"ordering_key"`
}

// events reads schema's outbox in insertion order.
func events(t *testing.T, pool *pgxpool.Pool, schema string) []storedEvent {
	t.Helper()
	rows, err := pool.Query(context.Background(), outbox.Qualify(schema,
		`SELECT event_id::text AS event_id, event_type, tenant_id, payload::text AS payload, ordering_key FROM {{schema}}.outbox ORDER BY id`))
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[storedEvent])
	require.NoError(t, err)
	return got
}

func signupCreated() outbox.Event {
	return outbox.Event{
		ID:          outbox.NewEventID(),
		Type:        "signup.created",
		TenantID:    "wl_42",
		OrderingKey: "su_1",
		Payload:     map[string]any{"signup": map[string]any{"id": "su_1", "position": 17}},
	}
}

func TestPublishRollsBackWithTheTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, pgxoutbox.Publish(ctx, tx, signupCreated()))
	require.Len(t, events(t, b.pool, outbox.DefaultSchema), 0, "not visible before commit")
	require.NoError(t, tx.Rollback(ctx))
	require.Empty(t, events(t, b.pool, outbox.DefaultSchema))
}

func TestPublishCommitsWithTheTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ev := signupCreated()

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, pgxoutbox.Publish(ctx, tx, ev))
	require.NoError(t, tx.Commit(ctx))

	got := events(t, b.pool, outbox.DefaultSchema)
	require.Len(t, got, 1)
	require.Equal(t, ev.ID, got[0].EventID)
	require.Equal(t, "signup.created", got[0].EventType)
	require.Equal(t, "wl_42", *got[0].TenantID)
	require.Equal(t, "su_1", *got[0].OrderingKey)
	require.JSONEq(t, `{"signup": {"id": "su_1", "position": 17}}`, got[0].Payload)
}

// Outside a transaction each Publish commits on its own.
func TestPublishThroughConnAndPool(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	conn := b.connect(t, pgx.QueryExecModeCacheStatement)

	require.NoError(t, pgxoutbox.Publish(ctx, conn, outbox.Event{Type: "through.conn", Payload: 1}))
	require.NoError(t, pgxoutbox.Publish(ctx, b.pool, outbox.Event{Type: "through.pool", Payload: 2}))

	got := events(t, b.pool, outbox.DefaultSchema)
	require.Len(t, got, 2)
	require.Equal(t, "through.conn", got[0].EventType)
	require.Equal(t, "through.pool", got[1].EventType)
	for _, e := range got {
		require.Nil(t, e.TenantID, "no tenant is stored as NULL")
		require.Nil(t, e.OrderingKey, "no ordering key is stored as NULL")
		require.Len(t, e.EventID, 36, "a generated event ID")
	}
}

// Every payload form reaches the jsonb column in every way pgx can send a statement,
// including the two used behind PgBouncer in transaction pooling (Exec, SimpleProtocol).
func TestPublishPayloadFormsInEveryExecMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	payloads := []struct {
		payload any
		want    string
	}{
		{json.RawMessage(`{"form": "raw"}`), `{"form": "raw"}`},
		{[]byte(`{"form": "bytes", "list": [1, 2]}`), `{"form": "bytes", "list": [1, 2]}`},
		{map[string]any{"form": "map"}, `{"form": "map"}`},
		{"text", `"text"`},
		{[]int{1, 2}, `[1, 2]`},
		{json.RawMessage(`null`), `null`},
	}
	modes := []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"CacheStatement", pgx.QueryExecModeCacheStatement},
		{"CacheDescribe", pgx.QueryExecModeCacheDescribe},
		{"DescribeExec", pgx.QueryExecModeDescribeExec},
		{"Exec", pgx.QueryExecModeExec},
		{"SimpleProtocol", pgx.QueryExecModeSimpleProtocol},
	}
	var want []string
	for _, m := range modes {
		conn := b.connect(t, m.mode)
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		for _, p := range payloads {
			ev := outbox.Event{Type: "payload.form", TenantID: m.name, Payload: p.payload}
			require.NoError(t, pgxoutbox.Publish(ctx, tx, ev), "%s: %T", m.name, p.payload)
			want = append(want, p.want)
		}
		require.NoError(t, tx.Commit(ctx))
	}

	got := events(t, b.pool, outbox.DefaultSchema)
	require.Len(t, got, len(want))
	for i, e := range got {
		require.JSONEq(t, want[i], e.Payload, "%s: event %d", *e.TenantID, i)
		require.Nil(t, e.OrderingKey)
	}
}

func TestPublishRefusesBadEventsWithoutBreakingTheTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bad := []outbox.Event{
		{Type: "", Payload: 1},
		{Type: "signup..created", Payload: 1},
		{Type: "signup created", Payload: 1},
		{Type: strings.Repeat("a", 256), Payload: 1},
		{Type: "signup.created"},
		{Type: "signup.created", Payload: json.RawMessage(`{"unterminated": `)},
		{Type: "signup.created", Payload: []byte(`not json`)},
		{Type: "signup.created", Payload: func() {}},
		{Type: "signup.created", ID: "not-a-uuid", Payload: 1},
	}

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	for _, ev := range bad {
		require.ErrorIs(t, pgxoutbox.Publish(ctx, tx, ev), outbox.ErrInvalidEvent, "%q", ev.Type)
	}
	var one int
	require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one), "the transaction is still usable")
	require.NoError(t, pgxoutbox.Publish(ctx, tx, outbox.Event{Type: "signup.created", Payload: 1}))
	require.NoError(t, tx.Commit(ctx))
	require.Len(t, events(t, b.pool, outbox.DefaultSchema), 1)
}

// The first event with an ID stands, whichever front end published it.
func TestPublishSameIDTwiceStoresOne(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.NewDB(t)
	pool := newPool(t, dsn)
	ctx := context.Background()
	id := outbox.NewEventID()

	require.NoError(t, pgxoutbox.Publish(ctx, pool, outbox.Event{ID: id, Type: "signup.created", Payload: json.RawMessage(`{"n": 1}`)}))
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, pgxoutbox.Publish(ctx, tx, outbox.Event{ID: id, Type: "signup.created", Payload: json.RawMessage(`{"n": 2}`)}))
	var one int
	require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one), "a duplicate does not abort the transaction")
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, outbox.Publish(ctx, db, outbox.Event{ID: id, Type: "signup.created", Payload: json.RawMessage(`{"n": 3}`)}))

	got := events(t, pool, outbox.DefaultSchema)
	require.Len(t, got, 1)
	require.Equal(t, id, got[0].EventID)
	require.JSONEq(t, `{"n": 1}`, got[0].Payload)
}

func TestPublisherOtherSchema(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()
	_, err := outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: "hooks", NotifyTrigger: true})
	require.NoError(t, err)
	pool := newPool(t, dsn)

	ev := outbox.Event{Type: "a.b", TenantID: "wl_1", Payload: json.RawMessage(`{}`)}
	require.NoError(t, pgxoutbox.Publisher{Schema: "hooks"}.Publish(ctx, pool, ev))
	got := events(t, pool, "hooks")
	require.Len(t, got, 1)
	require.Equal(t, "wl_1", *got[0].TenantID)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	err = pgxoutbox.Publisher{Schema: `bad"name`}.Publish(ctx, tx, ev)
	require.ErrorContains(t, err, "invalid schema name")
	require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(new(int)), "refused before reaching the database")

	// A valid name that was never migrated reaches the database, which refuses it.
	err = pgxoutbox.Publisher{Schema: "nowhere"}.Publish(ctx, tx, ev)
	require.ErrorContains(t, err, "publishing a.b event")
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "42P01", pgErr.Code, "undefined_table")
}
