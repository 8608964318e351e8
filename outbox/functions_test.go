package outbox_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
)

// Function files are applied after the migrations, once per version, and never replaced by
// an older version (a relay of an earlier release starting during a rolling update).
func TestFunctionFilesAppliedByVersion(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()
	_, err := outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{})
	require.NoError(t, err)

	files, err := filepath.Glob("functions/*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	type row struct {
		Name      string    `db:"name"`
		Version   int       `db:"version"`
		AppliedAt time.Time `db:"applied_at"`
	}
	var rows []row
	require.NoError(t, db.Select(&rows, `SELECT name, version, applied_at FROM relay.schema_functions ORDER BY name`))
	require.Len(t, rows, len(files), "one row per function file")
	for _, r := range rows {
		var exists bool
		require.NoError(t, db.Get(&exists, `SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = 'relay' AND p.proname = $1)`, r.Name))
		require.True(t, exists, "function %s exists", r.Name)
		body, err := os.ReadFile(filepath.Join("functions", r.Name+".sql"))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(string(body), "-- version: "), "%s starts with its version line", r.Name)
	}

	// Again: nothing newer, nothing applied.
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{})
	require.NoError(t, err)
	var again []row
	require.NoError(t, db.Select(&again, `SELECT name, version, applied_at FROM relay.schema_functions ORDER BY name`))
	require.Equal(t, rows, again)

	// A newer relay wrote lease_due (its version is higher): this one leaves it.
	// (A setting stands for its different text: CREATE OR REPLACE would reset it.)
	_, err = db.Exec(`UPDATE relay.schema_functions SET version = 99 WHERE name = 'lease_due';
		ALTER FUNCTION relay.lease_due SET work_mem = '1234kB'`)
	require.NoError(t, err)
	settings := func() string {
		var s string
		require.NoError(t, db.Get(&s, `SELECT array_to_string(proconfig, ',') FROM pg_proc WHERE oid = 'relay.lease_due'::regproc`))
		return s
	}
	require.Contains(t, settings(), "work_mem=1234kB")
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{})
	require.NoError(t, err)
	require.Contains(t, settings(), "work_mem=1234kB", "the newer function was not replaced")

	// An older database (version 0 recorded): this relay's file replaces it.
	_, err = db.Exec(`UPDATE relay.schema_functions SET version = 0 WHERE name = 'lease_due'`)
	require.NoError(t, err)
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{})
	require.NoError(t, err)
	require.NotContains(t, settings(), "work_mem", "the older function was replaced by the file")
}

// StaleFunctions names the functions a database lacks or has older than this build's: what
// a relay that does not migrate checks before it starts.
func TestStaleFunctions(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()
	stale, err := outbox.StaleFunctions(ctx, db.DB, "relay")
	require.NoError(t, err)
	require.Contains(t, stale, "claim_and_fan_out", "never migrated: every function is missing")

	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{})
	require.NoError(t, err)
	stale, err = outbox.StaleFunctions(ctx, db.DB, "relay")
	require.NoError(t, err)
	require.Empty(t, stale)

	_, err = db.Exec(`UPDATE relay.schema_functions SET version = 0 WHERE name = 'claim_and_fan_out'`)
	require.NoError(t, err)
	stale, err = outbox.StaleFunctions(ctx, db.DB, "relay")
	require.NoError(t, err)
	require.Equal(t, []string{"claim_and_fan_out"}, stale)
}
