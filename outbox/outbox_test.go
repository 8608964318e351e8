package outbox_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
)

func TestMigrateConcurrentCallers(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()

	var wg sync.WaitGroup
	results := make([]outbox.MigrateResult, 6)
	errs := make([]error, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{NotifyTrigger: true})
		}()
	}
	wg.Wait()
	var applied []string
	for i := range results {
		require.NoError(t, errs[i])
		require.Equal(t, outbox.LatestVersion(), results[i].Version)
		applied = append(applied, results[i].Applied...)
	}
	// Counted from the files: version numbers may have gaps (branches merged with their
	// own numbers), so the latest version is not the number of migrations.
	files, err := filepath.Glob("migrations/*.sql")
	require.NoError(t, err)
	slices.Sort(applied)
	require.Len(t, applied, len(files), "each migration ran exactly once: %v", applied)
	require.Len(t, slices.Compact(applied), len(files), "each migration ran exactly once: %v", applied)

	v, err := outbox.SchemaVersion(ctx, db.DB, outbox.DefaultSchema)
	require.NoError(t, err)
	require.Equal(t, outbox.LatestVersion(), v)
}

func TestMigrateOtherSchemaAndTriggerSwitch(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()
	trigger := func() bool {
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'hooks' AND t.tgname = 'outbox_notify'`))
		return n == 1
	}

	_, err := outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: "hooks", NotifyTrigger: true})
	require.NoError(t, err)
	require.True(t, trigger())
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: "hooks", NotifyTrigger: false})
	require.NoError(t, err)
	require.False(t, trigger(), "RELAY_NOTIFY_TRIGGER=false drops the trigger")
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: "hooks", NotifyTrigger: true})
	require.NoError(t, err)
	require.True(t, trigger())

	require.NoError(t, outbox.Publisher{Schema: "hooks"}.Publish(ctx, db, outbox.Event{Type: "a.b", Payload: json.RawMessage(`{}`)}))
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM hooks.outbox`))
	require.Equal(t, 1, n)

	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: `bad"name`})
	require.ErrorContains(t, err, "invalid schema name")
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	_, err := db.Exec(`INSERT INTO relay.schema_migrations (version, name) VALUES (9999, '9999_future.sql')`)
	require.NoError(t, err)
	_, err = outbox.Migrate(context.Background(), db.DB, outbox.MigrateOptions{NotifyTrigger: true})
	require.ErrorIs(t, err, outbox.ErrSchemaTooNew)
}

type storedEvent struct {
	EventID     string     `db:"event_id"`
	EventType   string     `db:"event_type"`
	TenantID    *string    `db:"tenant_id"`
	Payload     string     `db:"payload"`
	OrderingKey *string    `db:"ordering_key"`
	CreatedAt   time.Time  `db:"created_at"`
	Dispatched  *time.Time `db:"dispatched_at"`
}

func events(t *testing.T, db *sqlx.DB) []storedEvent {
	t.Helper()
	var out []storedEvent
	require.NoError(t, db.Select(&out, `SELECT event_id, event_type, tenant_id, payload::text AS payload, ordering_key, created_at, dispatched_at FROM relay.outbox ORDER BY id`))
	return out
}

func TestPublishThroughEveryHandle(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	ctx := context.Background()
	ev := func(typ string) outbox.Event {
		return outbox.Event{Type: typ, TenantID: "wl_42", OrderingKey: "su_1", Payload: map[string]any{"signup": map[string]any{"id": "su_1"}}}
	}

	t.Run("SQLTx", func(t *testing.T) {
		tx, err := db.DB.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, outbox.Publish(ctx, tx, ev("signup.created")))
		require.NoError(t, tx.Commit())
	})
	t.Run("SQLXTx", func(t *testing.T) {
		tx, err := db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, outbox.Publish(ctx, tx, ev("signup.position_changed")))
		require.NoError(t, tx.Commit())
	})
	t.Run("SQLDB", func(t *testing.T) {
		require.NoError(t, outbox.Publish(ctx, db.DB, ev("signup.deleted")))
	})
	t.Run("RolledBackTxLeavesNothing", func(t *testing.T) {
		tx, err := db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, outbox.Publish(ctx, tx, ev("signup.rolled_back")))
		require.NoError(t, tx.Rollback())
	})

	got := events(t, db)
	require.Len(t, got, 3)
	for i, typ := range []string{"signup.created", "signup.position_changed", "signup.deleted"} {
		require.Equal(t, typ, got[i].EventType)
		require.Equal(t, "wl_42", *got[i].TenantID)
		require.Equal(t, "su_1", *got[i].OrderingKey)
		require.JSONEq(t, `{"signup": {"id": "su_1"}}`, got[i].Payload)
		require.Nil(t, got[i].Dispatched)
	}
}

func TestPublishSameIDTwiceStoresOne(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	ctx := context.Background()
	id := outbox.NewEventID()
	require.NoError(t, outbox.Publish(ctx, db, outbox.Event{ID: id, Type: "signup.created", Payload: json.RawMessage(`{"n": 1}`)}))
	require.NoError(t, outbox.Publish(ctx, db, outbox.Event{ID: id, Type: "signup.created", Payload: json.RawMessage(`{"n": 2}`)}))
	got := events(t, db)
	require.Len(t, got, 1)
	require.Equal(t, id, got[0].EventID)
	require.JSONEq(t, `{"n": 1}`, got[0].Payload, "the first event with an ID stands")
	require.Nil(t, got[0].TenantID, "no tenant is stored as NULL")
}

func TestPublishRefusesBadEventsWithoutBreakingTheTransaction(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	ctx := context.Background()
	bad := []outbox.Event{
		{Type: "", Payload: 1},
		{Type: "signup..created", Payload: 1},
		{Type: "signup.created.", Payload: 1},
		{Type: "signup created", Payload: 1},
		{Type: strings.Repeat("a", 256), Payload: 1},
		{Type: "signup.created"},
		{Type: "signup.created", Payload: json.RawMessage(`{"unterminated": `)},
		{Type: "signup.created", Payload: func() {}},
		{Type: "signup.created", ID: "not-a-uuid", Payload: 1},
	}
	tx, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	for _, ev := range bad {
		require.ErrorIs(t, outbox.Publish(ctx, tx, ev), outbox.ErrInvalidEvent, "%+v", ev.Type)
	}
	require.NoError(t, outbox.Publish(ctx, tx, outbox.Event{Type: "signup.created", Payload: 1}), "the transaction is still usable")
	require.NoError(t, tx.Commit())
	require.Len(t, events(t, db), 1)
}

func TestDatabaseRefusesBadRows(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	for _, typ := range []string{"", "a..b", ".a", "a.", "a b", "a/b", strings.Repeat("a", 256)} {
		_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ($1, '{}')`, typ)
		var pqErr *pq.Error
		require.ErrorAs(t, err, &pqErr, "%q", typ)
		require.Equal(t, "check_violation", pqErr.Code.Name(), "%q", typ)
	}
	_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ('signup.created', NULL)`)
	require.Error(t, err)
	_, err = db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ('Signup_A-1.b-2.C_3', '{}')`)
	require.NoError(t, err, "letters, digits, _ and - in dot-separated parts are fine")
}

func TestInsertNotifiesOncePerStatement(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.NewDB(t)
	l := pq.NewListener(dsn, 10*time.Millisecond, time.Second, nil)
	t.Cleanup(func() { l.Close() })
	require.NoError(t, l.Listen(outbox.Channel(outbox.DefaultSchema)))

	_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload) SELECT 'bulk.insert', '{}' FROM generate_series(1, 50)`)
	require.NoError(t, err)
	select {
	case n := <-l.Notify:
		require.NotNil(t, n)
		require.Equal(t, "relay_outbox", n.Channel)
		require.Empty(t, n.Extra, "the notification carries no payload")
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after insert")
	}
	select {
	case n := <-l.Notify:
		t.Fatalf("a 50-row insert sent a second notification: %+v", n)
	case <-time.After(200 * time.Millisecond):
	}
}

// Statement is what every front end executes: strings a driver sends as text, and untyped
// nils for the optional columns.
func TestStatement(t *testing.T) {
	t.Parallel()
	query, args, err := outbox.Publisher{Schema: "hooks"}.Statement(outbox.Event{Type: "a.b", Payload: []byte(`{"n": 1}`)})
	require.NoError(t, err)
	require.Contains(t, query, `INSERT INTO "hooks".outbox`)
	require.Len(t, args, 5)
	require.IsType(t, "", args[0], "a new event ID")
	require.Equal(t, []any{"a.b", nil, `{"n": 1}`, nil}, args[1:])

	_, args2, err := outbox.Publisher{}.Statement(outbox.Event{Type: "a.b", Payload: 1})
	require.NoError(t, err)
	require.NotEqual(t, args[0], args2[0], "each call gets its own ID")

	_, _, err = outbox.Publisher{}.Statement(outbox.Event{Type: "a..b", Payload: 1})
	require.ErrorIs(t, err, outbox.ErrInvalidEvent)
	_, _, err = outbox.Publisher{Schema: "Hooks"}.Statement(outbox.Event{Type: "a.b", Payload: 1})
	require.ErrorContains(t, err, "invalid schema name")
}
