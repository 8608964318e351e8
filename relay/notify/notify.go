// Package notify turns PostgreSQL notifications on the outbox channel into wake-ups.
//
// A notification is a hint, never the source of truth: the dispatcher polls on its own
// schedule whatever happens here. The listener runs on its own connection (pq.Listener),
// which reconnects by itself with a growing delay. Notifications sent while it was away are
// lost, so every (re)connection wakes the dispatcher as if a notification had arrived: the
// next claim then finds whatever was inserted meanwhile. A periodic Ping catches a half-open
// connection that would otherwise go silent.
//
// Wake-ups coalesce: the receiver sees at most one pending wake-up however many
// notifications arrived, which is the debounce the dispatcher needs (it claims in batches
// and loops while batches come back full).
package notify

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/internal/health"
	"github.com/referralloop/outbox-relay/internal/retry"
)

// Config configures a Listener.
type Config struct {
	// DSN is the connection string for LISTEN; required. It must reach PostgreSQL directly:
	// LISTEN does not work through PgBouncer in transaction pooling.
	DSN string
	// Channel is the channel to LISTEN on; required.
	Channel string
	// Wake is called, without blocking, after every notification of new outbox rows and
	// every (re)connection; required.
	Wake func()
	// Queued, optional, is called, without blocking, for a notification whose payload is
	// QueuedPayload: another relay's API made deliveries due (a retry, a test), and only
	// this relay claims them.
	Queued func()
	// Logger receives connection state changes.
	Logger zerolog.Logger
	// PingInterval is how often the connection is checked; 30s when zero.
	PingInterval time.Duration
	// MinReconnect and MaxReconnect bound the reconnection delay; retry.InitialInterval and
	// retry.MaxInterval when zero, the bounds every other database retry of the relay has.
	MinReconnect, MaxReconnect time.Duration
}

// QueuedPayload is the payload of a notification that deliveries were made due, sent on the
// outbox channel by a relay whose API queued them while another relay is active. The
// trigger's notifications carry no payload.
const QueuedPayload = "deliveries"

// Listener keeps a LISTEN connection open and reports whether it is up.
type Listener struct {
	cfg       Config
	connected atomic.Bool
	// conn tracks connection attempts for Trouble; a new one per Run, so that a run that
	// ended long ago reports nothing about the next.
	conn atomic.Pointer[health.Tracker]
}

// New returns a Listener for cfg; Run starts it.
func New(cfg Config) (*Listener, error) {
	if cfg.DSN == "" || cfg.Channel == "" || cfg.Wake == nil {
		return nil, errors.New("notify: DSN, Channel and Wake are required")
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.MinReconnect <= 0 {
		cfg.MinReconnect = retry.InitialInterval
	}
	if cfg.MaxReconnect <= 0 {
		cfg.MaxReconnect = retry.MaxInterval
	}
	l := &Listener{cfg: cfg}
	l.conn.Store(&health.Tracker{})
	return l, nil
}

// Connected reports whether the LISTEN connection is up right now.
func (l *Listener) Connected() bool { return l.connected.Load() }

// Trouble says why notifications cannot arrive (the connection has been down, or could not
// be made, for longer than health.FailingLimit), or "" when they can.
func (l *Listener) Trouble() string {
	return l.conn.Load().Trouble("the LISTEN connection", health.FailingLimit)
}

// Run listens until ctx ends. Connection trouble is never an error here, only a state
// (Connected) and a log line, since polling covers for it.
func (l *Listener) Run(ctx context.Context) {
	log := l.cfg.Logger
	conn := &health.Tracker{}
	l.conn.Store(conn)
	// Until the first connection, the run counts as failing: one that never connects is
	// reported once the limit has passed.
	conn.Fail(errors.New("not connected yet"))
	pl := pq.NewListener(l.cfg.DSN, l.cfg.MinReconnect, l.cfg.MaxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnected:
			l.connected.Store(true)
			conn.OK()
			log.Info().Str("channel", l.cfg.Channel).Msg("listening for outbox notifications")
		case pq.ListenerEventReconnected:
			l.connected.Store(true)
			conn.OK()
			log.Info().Str("channel", l.cfg.Channel).Msg("listen connection restored")
		case pq.ListenerEventDisconnected:
			l.connected.Store(false)
			conn.Fail(err)
			log.Warn().Err(err).Msg("listen connection lost; polling until it is back")
		case pq.ListenerEventConnectionAttemptFailed:
			l.connected.Store(false)
			conn.Fail(err)
			log.Warn().Err(err).Msg("listen connection attempt failed")
		}
	})
	defer func() {
		l.connected.Store(false)
		_ = pl.Close()
	}()

	// Listen blocks until the first connection succeeds; Close (deferred) releases it.
	listenErr := make(chan error, 1)
	go func() { listenErr <- pl.Listen(l.cfg.Channel) }()

	ping := time.NewTicker(l.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = pl.Close()
			if listenErr != nil {
				<-listenErr
			}
			return
		case err := <-listenErr:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				// The server refused LISTEN itself (permissions, bad channel): the connection
				// is fine but no notification will come. Polling still delivers everything.
				log.Error().Err(err).Str("channel", l.cfg.Channel).Msg("LISTEN refused; running on polling alone")
			}
			listenErr = nil
		case n := <-pl.Notify:
			// nil means "reconnected, notifications may have been lost": wake just the same.
			if n != nil && n.Extra == QueuedPayload {
				if l.cfg.Queued != nil {
					l.cfg.Queued()
				}
				continue
			}
			l.cfg.Wake()
		case <-ping.C:
			if err := pl.Ping(); err != nil {
				log.Debug().Err(err).Msg("listen connection ping failed")
			}
		}
	}
}
