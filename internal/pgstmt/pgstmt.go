// Package pgstmt holds lazily prepared statements for the relay's hot paths.
//
// lib/pq sends an unprepared query with parameters in two round trips (parse and describe,
// then bind and execute); a prepared statement runs in one. database/sql prepares a *sql.Stmt
// again on each connection it runs on, including connections opened after an outage, so the
// statement only has to be prepared once, when the database first answers.
package pgstmt

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// Stmt is a statement prepared on first use.
type Stmt struct {
	db    *sql.DB
	query string
	mu    sync.Mutex
	stmt  *sql.Stmt
}

// New returns a Stmt for query on db; nothing reaches the database until the first call.
func New(db *sql.DB, query string) *Stmt { return &Stmt{db: db, query: query} }

func (s *Stmt) prepared(ctx context.Context) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stmt == nil {
		st, err := s.db.PrepareContext(ctx, s.query)
		if err != nil {
			return nil, fmt.Errorf("preparing statement: %w", err)
		}
		s.stmt = st
	}
	return s.stmt, nil
}

// QueryContext runs the statement and returns its rows.
func (s *Stmt) QueryContext(ctx context.Context, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRow runs the statement and scans its single row into dest.
func (s *Stmt) QueryRow(ctx context.Context, args []any, dest ...any) error {
	st, err := s.prepared(ctx)
	if err != nil {
		return err
	}
	return st.QueryRowContext(ctx, args...).Scan(dest...)
}

// Close releases the statement.
func (s *Stmt) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stmt == nil {
		return nil
	}
	err := s.stmt.Close()
	s.stmt = nil
	return err
}
