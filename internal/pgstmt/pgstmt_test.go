package pgstmt_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/internal/relaytest"
)

func TestPreparedOnceAndReusable(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	ctx := context.Background()
	st := pgstmt.New(db.DB, `SELECT $1::int + 1`)
	defer st.Close()
	for i := range 3 {
		var got int
		require.NoError(t, st.QueryRow(ctx, []any{i}, &got))
		require.Equal(t, i+1, got)
	}

	bad := pgstmt.New(db.DB, `SELECT FROM nowhere`)
	var x int
	require.ErrorContains(t, bad.QueryRow(ctx, nil, &x), "preparing statement")
	_, err := bad.QueryContext(ctx)
	require.Error(t, err)
}
