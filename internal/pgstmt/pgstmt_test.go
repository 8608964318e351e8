package pgstmt_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// A pooler in transaction mode gives each statement whichever server session is free, which
// looks to the client like its session being reset between statements: DISCARD ALL does the
// same to a direct connection. Named prepared statements would be gone after it.
func TestStatementsOutliveTheirSession(t *testing.T) {
	_, dsn := relaytest.NewDB(t)
	db, err := pgstmt.Open(dsn)
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1) // one session, so DISCARD ALL hits the one the statements use
	ctx := context.Background()

	st := pgstmt.New(db, `SELECT $1::int + 1`)
	for i := range 3 {
		var got int
		require.NoError(t, st.QueryRow(ctx, []any{i}, &got))
		require.Equal(t, i+1, got)
		_, err := db.ExecContext(ctx, `DISCARD ALL`)
		require.NoError(t, err)
	}
	var named int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE $1::int = 1`, 1).Scan(&named))
	require.Zero(t, named, "a statement was prepared by name in the session")

	rows, err := st.QueryContext(ctx, 41)
	require.NoError(t, err)
	require.True(t, rows.Next())
	var got int
	require.NoError(t, rows.Scan(&got))
	require.Equal(t, 42, got)
	require.NoError(t, rows.Close())

	bad := pgstmt.New(db, `SELECT FROM nowhere WHERE $1::int = 1`)
	require.ErrorContains(t, bad.QueryRow(ctx, []any{1}), `relation "nowhere" does not exist`)
}

// With binary parameters a []byte goes to the server as binary data: bytea receives the
// bytes as they are, including ones that are not text.
func TestBytesAreBinary(t *testing.T) {
	_, dsn := relaytest.NewDB(t)
	db, err := pgstmt.Open(dsn)
	require.NoError(t, err)
	defer db.Close()
	var n int
	var back []byte
	require.NoError(t, db.QueryRowContext(context.Background(), `SELECT length($1::bytea), $1::bytea`, []byte{0, 0xff, '\\'}).Scan(&n, &back))
	require.Equal(t, 3, n)
	require.Equal(t, []byte{0, 0xff, '\\'}, back)
}

func TestOpenRefusesABadURL(t *testing.T) {
	_, err := pgstmt.Open("postgres://%zz")
	require.ErrorContains(t, err, "parsing the database URL")
}
