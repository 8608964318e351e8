// Package pgstmt is how the relay sends statements to PostgreSQL: each in one round trip,
// and none depending on the session it ran in, so they work through PgBouncer in
// transaction pooling as well as on a direct connection.
//
// lib/pq sends a query with parameters in two round trips by default (parse and describe,
// then bind and execute). Between the two, a pooler in transaction mode may hand the
// session to another client, and the bind then fails with `unnamed prepared statement does
// not exist`. A named prepared statement (database/sql's Prepare) lives in one server
// session and fails the same way, as `prepared statement "1" does not exist` or `already
// exists`. With lib/pq's binary_parameters, parse, bind, describe and execute of the unnamed
// statement go out in one message, which a pooler cannot split, and cost one round trip.
//
// The price is that PostgreSQL plans each statement again on every call rather than reusing
// a prepared plan. So the hot statements are calls of PL/pgSQL functions (lease_due,
// record_attempts, claim_and_fan_out in outbox/functions), which keep their inner plans for
// the server session whoever the client is; the call itself plans in microseconds. Planning
// the fan-out inline on every call had added about a millisecond to each event's way to its
// receiver (bench steady, minimum latency 2.5 ms against 1.6 ms); with the function, A B A B
// against named statements: drain 6,413 and 6,741/s against 6,265 and 6,732/s, steady p50
// 4.3 and 4.1 ms against 4.5 and 3.6 ms.
//
// The other effect of binary_parameters is that a []byte argument is sent as binary data:
// right for bytea, wrong for text or jsonb, so those are passed as strings.
package pgstmt

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lib/pq"
)

// Open returns a pool for dsn whose statements go out in one round trip, as the package
// comment describes. Nothing reaches the database until the pool is first used.
func Open(dsn string) (*sql.DB, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the database URL: %w", err)
	}
	cfg.BinaryParameters = true
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("parsing the database URL: %w", err)
	}
	return sql.OpenDB(connector), nil
}

// Stmt is one of the relay's hot-path statements, bound to its pool.
type Stmt struct {
	db    *sql.DB
	query string
}

// New returns a Stmt for query on db.
func New(db *sql.DB, query string) *Stmt { return &Stmt{db: db, query: query} }

// QueryContext runs the statement and returns its rows.
func (s *Stmt) QueryContext(ctx context.Context, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.query, args...)
}

// QueryRow runs the statement and scans its single row into dest.
func (s *Stmt) QueryRow(ctx context.Context, args []any, dest ...any) error {
	return s.db.QueryRowContext(ctx, s.query, args...).Scan(dest...)
}
