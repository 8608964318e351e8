package notify_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/notify"
)

func TestWakesOnInsertAndOnReconnect(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.NewDB(t)
	var wakes atomic.Int32
	l, err := notify.New(notify.Config{
		DSN: dsn, Channel: outbox.Channel(outbox.DefaultSchema), Wake: func() { wakes.Add(1) },
		Logger: zerolog.Nop(), MinReconnect: 10 * time.Millisecond, MaxReconnect: 100 * time.Millisecond,
		PingInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	relaytest.Eventually(t, 10*time.Second, l.Connected, "listener never connected")

	before := wakes.Load()
	_, err = db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ('a.b', '{}')`)
	require.NoError(t, err)
	relaytest.Eventually(t, 5*time.Second, func() bool { return wakes.Load() > before }, "an insert did not wake")

	// The server drops the LISTEN connection: the listener reports it, reconnects by itself
	// and wakes, since notifications may have been lost meanwhile.
	before = wakes.Load()
	// Every other backend of this database: the listener's last query may be its ping
	// rather than its LISTEN, so matching on the query text missed it now and then.
	_, err = db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	require.NoError(t, err)
	relaytest.Eventually(t, 10*time.Second, func() bool { return l.Connected() && wakes.Load() > before }, "no wake after reconnecting")

	cancel()
	<-done
	require.False(t, l.Connected())
}

func TestNewRefusesMissingFields(t *testing.T) {
	_, err := notify.New(notify.Config{Channel: "x", Wake: func() {}})
	require.Error(t, err)
}
