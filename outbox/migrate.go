package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// MigrateOptions says where and how to migrate.
type MigrateOptions struct {
	// Schema holds every object; DefaultSchema when empty. Must satisfy CheckSchemaName.
	Schema string
	// NotifyTrigger keeps the statement-level NOTIFY trigger on the outbox when true and drops
	// it when false (the relay then runs on polling alone).
	NotifyTrigger bool
}

// MigrateResult reports what Migrate did.
type MigrateResult struct {
	// Applied lists the migrations run by this call, in order; empty when up to date.
	Applied []string
	// Version is the schema version after the call.
	Version int
}

// ErrSchemaTooNew means the database was migrated by a newer relay than this one: running
// against it could misread columns, so start-up stops.
var ErrSchemaTooNew = errors.New("database schema is newer than this relay")

const migrationsTable = `CREATE TABLE IF NOT EXISTS {{schema}}.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate creates or upgrades the schema. It is idempotent and safe when several processes
// call it at once: everything runs in one transaction holding an advisory lock derived from
// the schema name, and a failure rolls back whole.
func Migrate(ctx context.Context, db *sql.DB, opts MigrateOptions) (MigrateResult, error) {
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if err := CheckSchemaName(schema); err != nil {
		return MigrateResult{}, err
	}
	all, err := migrations()
	if err != nil {
		return MigrateResult{}, err
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("beginning migration: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('outbox-relay migrate ' || $1))`, schema); err != nil {
		return MigrateResult{}, fmt.Errorf("taking migration lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+pq.QuoteIdentifier(schema)); err != nil {
		return MigrateResult{}, fmt.Errorf("creating schema %s: %w", schema, err)
	}
	if _, err := tx.ExecContext(ctx, Qualify(schema, migrationsTable)); err != nil {
		return MigrateResult{}, fmt.Errorf("creating migrations table: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, Qualify(schema, `SELECT coalesce(max(version), 0) FROM {{schema}}.schema_migrations`)).Scan(&current); err != nil {
		return MigrateResult{}, fmt.Errorf("reading schema version: %w", err)
	}
	latest := all[len(all)-1].version
	if current > latest {
		return MigrateResult{}, fmt.Errorf("%w: database at version %d, this relay knows up to %d", ErrSchemaTooNew, current, latest)
	}

	res := MigrateResult{Version: current}
	for _, m := range all {
		if m.version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, Qualify(schema, m.sql)); err != nil {
			return MigrateResult{}, fmt.Errorf("applying migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, Qualify(schema, `INSERT INTO {{schema}}.schema_migrations (version, name) VALUES ($1, $2)`), m.version, m.name); err != nil {
			return MigrateResult{}, fmt.Errorf("recording migration %s: %w", m.name, err)
		}
		res.Applied = append(res.Applied, m.name)
		res.Version = m.version
	}

	if err := syncFunctions(ctx, tx, schema); err != nil {
		return MigrateResult{}, err
	}
	if err := syncNotifyTrigger(ctx, tx, schema, opts.NotifyTrigger); err != nil {
		return MigrateResult{}, err
	}
	if err := tx.Commit(); err != nil {
		return MigrateResult{}, fmt.Errorf("committing migration: %w", err)
	}
	return res, nil
}

// functionsTable records which version of each function file the database has.
const functionsTable = `CREATE TABLE IF NOT EXISTS {{schema}}.schema_functions (
    name       text PRIMARY KEY,
    version    integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// syncFunctions applies every function file (outbox/functions) whose version is newer than
// the one the database has, after the migrations and in their transaction, under their lock.
// A migration holds a function's history; its file holds its current text, so a change to a
// function is a change to one file. A file older than the database's (a relay of an earlier
// release starting during a rolling update) is left alone: it must not undo a newer one.
func syncFunctions(ctx context.Context, tx *sql.Tx, schema string) error {
	fns, err := functions()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, Qualify(schema, functionsTable)); err != nil {
		return fmt.Errorf("creating functions table: %w", err)
	}
	for _, f := range fns {
		var have int
		err := tx.QueryRowContext(ctx, Qualify(schema, `SELECT version FROM {{schema}}.schema_functions WHERE name = $1`), f.name).Scan(&have)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading the version of function %s: %w", f.name, err)
		}
		if have >= f.version {
			continue
		}
		if _, err := tx.ExecContext(ctx, Qualify(schema, f.sql)); err != nil {
			return fmt.Errorf("applying function %s: %w", f.name, err)
		}
		if _, err := tx.ExecContext(ctx, Qualify(schema, `INSERT INTO {{schema}}.schema_functions (name, version) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET version = excluded.version, applied_at = now()`), f.name, f.version); err != nil {
			return fmt.Errorf("recording function %s: %w", f.name, err)
		}
	}
	return nil
}

// syncNotifyTrigger creates or drops the outbox NOTIFY trigger. It touches the trigger only
// when its presence must change: creating or dropping a trigger locks the outbox against
// the application's inserts, which every replica's start-up should not do.
func syncNotifyTrigger(ctx context.Context, tx *sql.Tx, schema string, want bool) error {
	var exists bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = 'outbox' AND t.tgname = 'outbox_notify')`, schema).Scan(&exists)
	if err != nil {
		return fmt.Errorf("checking notify trigger: %w", err)
	}
	switch {
	case want && !exists:
		fn := Qualify(schema, `CREATE OR REPLACE FUNCTION {{schema}}.outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Empty payload: folded per transaction and never too large to fail the insert.
    PERFORM pg_notify(`+pq.QuoteLiteral(Channel(schema))+`, '');
    RETURN NULL;
END
$$`)
		if _, err := tx.ExecContext(ctx, fn); err != nil {
			return fmt.Errorf("creating notify function: %w", err)
		}
		trg := Qualify(schema, `CREATE TRIGGER outbox_notify AFTER INSERT ON {{schema}}.outbox
FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.outbox_notify()`)
		if _, err := tx.ExecContext(ctx, trg); err != nil {
			return fmt.Errorf("creating notify trigger: %w", err)
		}
	case !want && exists:
		if _, err := tx.ExecContext(ctx, Qualify(schema, `DROP TRIGGER outbox_notify ON {{schema}}.outbox`)); err != nil {
			return fmt.Errorf("dropping notify trigger: %w", err)
		}
	}
	return nil
}

// LatestVersion is the schema version this build migrates to.
func LatestVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// SchemaVersion reads the version the database's schema is at; 0 when it was never migrated.
func SchemaVersion(ctx context.Context, db *sql.DB, schema string) (int, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, pq.QuoteIdentifier(schema)+".schema_migrations").Scan(&exists); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := db.QueryRowContext(ctx, Qualify(schema, `SELECT coalesce(max(version), 0) FROM {{schema}}.schema_migrations`)).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

// StaleFunctions answers the functions (outbox/functions) the database lacks or has in an
// older version than this build's, by name; empty when the schema's functions are current.
// A relay that does not migrate checks it beside SchemaVersion: a new function version
// comes without a new migration.
func StaleFunctions(ctx context.Context, db *sql.DB, schema string) ([]string, error) {
	fns, err := functions()
	if err != nil {
		return nil, err
	}
	have := map[string]int{}
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, pq.QuoteIdentifier(schema)+".schema_functions").Scan(&exists); err != nil {
		return nil, fmt.Errorf("reading function versions: %w", err)
	}
	if exists {
		rows, err := db.QueryContext(ctx, Qualify(schema, `SELECT name, version FROM {{schema}}.schema_functions`))
		if err != nil {
			return nil, fmt.Errorf("reading function versions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var v int
			if err := rows.Scan(&name, &v); err != nil {
				return nil, fmt.Errorf("reading function versions: %w", err)
			}
			have[name] = v
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading function versions: %w", err)
		}
	}
	var stale []string
	for _, f := range fns {
		if have[f.name] < f.version {
			stale = append(stale, f.name)
		}
	}
	return stale, nil
}
