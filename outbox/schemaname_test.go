package outbox_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
)

// longest is a schema name whose channel is exactly 63 bytes, PostgreSQL's limit.
var longest = strings.Repeat("s", outbox.MaxSchemaNameLen)

func TestCheckSchemaName(t *testing.T) {
	t.Parallel()
	require.Equal(t, 56, outbox.MaxSchemaNameLen)
	require.Len(t, outbox.Channel(longest), 63)

	tests := []struct {
		name   string
		schema string
		want   string // a part of the error; empty when accepted
	}{
		{"Default", outbox.DefaultSchema, ""},
		{"LettersDigitsUnderscores", "_hooks_2", ""},
		{"ChannelOf63Bytes", longest, ""},
		{"ChannelOf64Bytes", longest + "s", "is 57 characters, want at most 56 (the NOTIFY channel " + longest + "s_outbox must fit"},
		{"FarTooLong", strings.Repeat("s", 200), "want at most 56"},
		{"Empty", "", "invalid schema name"},
		{"Uppercase", "Relay", `invalid schema name "Relay"`},
		{"DigitFirst", "1relay", "invalid schema name"},
		{"Dash", "re-lay", "invalid schema name"},
		{"NonASCII", "relaé", "invalid schema name"},
		{"Quote", `relay"; drop table x; --`, "invalid schema name"},
		{"Reserved", "pg_relay", "starts with pg_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := outbox.CheckSchemaName(tt.schema)
			require.Equal(t, tt.want == "", outbox.ValidSchemaName(tt.schema))
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestSchemaNameAtTheChannelLimit runs the boundary against PostgreSQL: the longest accepted
// name migrates and its trigger notifies on the channel the relay listens to; one byte more is
// refused by Migrate and Publish before they touch the database.
func TestSchemaNameAtTheChannelLimit(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()

	_, err := outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: longest, NotifyTrigger: true})
	require.NoError(t, err)
	l := pq.NewListener(dsn, 10*time.Millisecond, time.Second, nil)
	t.Cleanup(func() { l.Close() })
	require.NoError(t, l.Listen(outbox.Channel(longest)))
	ev := outbox.Event{Type: "a.b", Payload: json.RawMessage(`{}`)}
	require.NoError(t, outbox.Publisher{Schema: longest}.Publish(ctx, db, ev))
	select {
	case n := <-l.Notify:
		require.NotNil(t, n)
		require.Equal(t, outbox.Channel(longest), n.Channel)
	case <-time.After(5 * time.Second):
		t.Fatal("no notification on the 63-byte channel")
	}

	tooLong := longest + "s"
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{Schema: tooLong, NotifyTrigger: true})
	require.ErrorContains(t, err, "want at most 56")
	err = outbox.Publisher{Schema: tooLong}.Publish(ctx, db, ev)
	require.ErrorContains(t, err, "want at most 56")
	var exists bool
	require.NoError(t, db.Get(&exists, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, tooLong))
	require.False(t, exists, "Migrate created nothing")
}
