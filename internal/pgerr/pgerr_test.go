package pgerr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgerr"
	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// The errors come from a real server: what lib/pq really returns is what must be sorted.
func TestSortsRealErrors(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	ctx := context.Background()
	_, err := db.ExecContext(ctx, `CREATE TABLE t (id int PRIMARY KEY, s text)`)
	require.NoError(t, err)

	_, invalidUTF8 := db.ExecContext(ctx, `INSERT INTO t VALUES (1, $1)`, "Location: \xff\xfe")
	_, nul := db.ExecContext(ctx, `INSERT INTO t VALUES (2, $1)`, "cn=a\x00b")
	_, err = db.ExecContext(ctx, `INSERT INTO t VALUES (3, 'x')`)
	require.NoError(t, err)
	_, duplicate := db.ExecContext(ctx, `INSERT INTO t VALUES (3, 'x')`)
	_, cancelled := db.ExecContext(ctx, `SET statement_timeout = '10ms'; SELECT pg_sleep(1)`)
	_, missing := db.ExecContext(ctx, `SELECT no_such_function()`)

	down, err := sqlx.Open("postgres", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1")
	require.NoError(t, err)
	defer down.Close()
	_, refused := down.ExecContext(ctx, `SELECT 1`)
	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-short.Done()
	_, deadline := db.ExecContext(short, `SELECT 1`)

	for _, tc := range []struct {
		name              string
		err               error
		unavailable, data bool
	}{
		{"InvalidUTF8", invalidUTF8, false, true},
		{"NUL", nul, false, true},
		{"UniqueViolation", duplicate, false, true},
		{"StatementTimeout", cancelled, true, false},
		{"UndefinedFunction", missing, false, false},
		{"ConnectionRefused", refused, true, false},
		{"Deadline", deadline, true, false},
		{"Wrapped", fmt.Errorf("recording 3 attempts: %w", invalidUTF8), false, true},
		{"Nil", nil, false, false},
		{"Other", errors.New("reading claimed delivery: boom"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "Nil" && tc.name != "Other" {
				require.Error(t, tc.err)
			}
			require.Equal(t, tc.unavailable, pgerr.Unavailable(tc.err), "Unavailable(%v)", tc.err)
			require.Equal(t, tc.data, pgerr.RefusedData(tc.err), "RefusedData(%v)", tc.err)
		})
	}
}
