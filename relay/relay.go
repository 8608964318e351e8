package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the PostgreSQL driver
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/referralloop/outbox-relay/config"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/dispatch"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/keycheck"
	"github.com/referralloop/outbox-relay/relay/leader"
	"github.com/referralloop/outbox-relay/relay/notify"
	"github.com/referralloop/outbox-relay/relay/retention"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

// Options are what Run needs besides the configuration.
type Options struct {
	// Version goes into the User-Agent header; required.
	Version string
	// Logger is the root logger; each component gets a child.
	Logger zerolog.Logger
	// Listening, if set, is called with the bound API and ops addresses once both listen
	// (tests use ":0" and need to know the ports).
	Listening func(apiAddr, opsAddr net.Addr)
	// AdminListening, if set, is called with the bound operator API address in reverse-proxy
	// mode (RELAY_ADMIN_ADDR), once it listens.
	AdminListening func(adminAddr net.Addr)
}

// Relay is one relay process's service. New opens what it owns (the database handle, the
// listeners, tracing) and builds its components (build.go); Close releases it all; Run runs
// it.
type Relay struct {
	cfg  config.Config
	opts Options
	log  zerolog.Logger

	db        *sqlx.DB
	box       *secrets.Box
	registry  *prometheus.Registry
	listeners listeners
	limits    connLimits
	closers   []func() // what Close releases, last opened first

	leader     *leader.Elector
	listener   *notify.Listener // nil with RELAY_NOTIFY_TRIGGER=false
	dispatcher *dispatch.Dispatcher
	deliverer  *deliver.Deliverer
	keys       *keycheck.Checker
	cleaner    *retention.Cleaner
	// deliveryIDs is shared by the API, the console and the deliverer; prepareSchema
	// loads its key.
	deliveryIDs *ids.Deliveries
	// operator serves the bearer-token API; public, in reverse-proxy mode, the public port,
	// in front of upstream (shown without its password).
	operator, public http.Handler
	upstream         string
	// streams is the base context of proxied requests; endStreams ends the long streams and
	// WebSockets that a graceful Shutdown does not wait for (hijacked connections).
	streams    context.Context
	endStreams context.CancelFunc

	migrated atomic.Bool // the schema is at this binary's version
	started  atomic.Bool // the components run and claims are being made
}

// listeners are the relay's bound ports; admin is nil unless in reverse-proxy mode.
type listeners struct {
	api, ops, admin net.Listener
}

// Run runs the relay until ctx ends. It returns an error only when it cannot start at all
// (an address in use, a schema newer than this binary) or a server fails; it returns nil
// after a clean stop.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	r, err := New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx)
}

// Close releases what New opened. Call it once Run has returned (or instead of Run).
func (r *Relay) Close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

// Run serves the ops port at once (liveness answers while the database is awaited), waits
// for the schema, then runs the components and the API until ctx ends or a server fails,
// and stops in order: no more claims, API servers drained, components finished (requests in
// flight within RELAY_SHUTDOWN_GRACE), the ops port last.
func (r *Relay) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	opsSrv := newOpsServer(r.opsHandler())
	g.Go(func() error { return serve("ops", opsSrv, r.listeners.ops, r.limits.ops) })

	if err := r.prepare(gctx); err != nil {
		shutdownServer(opsSrv, 2*time.Second)
		_ = g.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	var components sync.WaitGroup
	run := func(f func(context.Context)) {
		components.Add(1)
		g.Go(func() error { defer components.Done(); f(gctx); return nil })
	}
	// The elector decides which replica claims: the deliverer asks it before every claim,
	// and the listener, the dispatcher and the cleaner run only while this one is active.
	run(r.leader.Run)
	if r.listener != nil {
		run(r.whileActive(r.listener.Run))
	}
	run(r.whileActive(r.dispatcher.Run))
	run(r.deliverer.Run)
	run(r.keys.Run)
	run(r.whileActive(r.cleaner.Run))
	r.started.Store(true)

	servers := r.startServers(g)
	<-gctx.Done()
	r.log.Info().Dur("grace", r.cfg.ShutdownGrace).Msg("shutting down: no more claims, finishing requests in flight")
	r.started.Store(false)
	for _, srv := range servers {
		shutdownServer(srv, 5*time.Second)
		r.endStreams() // after the public server's graceful part
	}
	components.Wait()
	shutdownServer(opsSrv, 2*time.Second)
	err := g.Wait()
	r.log.Info().Msg("stopped")
	return err
}

// whileActive turns f into a component that runs f for each term during which this replica
// is the active relay, with a context that ends with the term (or with ctx).
func (r *Relay) whileActive(f func(context.Context)) func(context.Context) {
	return func(ctx context.Context) {
		for {
			active, changed := r.leader.Watch()
			if !active {
				select {
				case <-ctx.Done():
					return
				case <-changed:
					continue
				}
			}
			term, end := context.WithCancel(ctx)
			go func() {
				defer end()
				select {
				case <-changed: // the only change from active is to standby
				case <-term.Done():
				}
			}()
			f(term)
			end()
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// prepare waits for the schema, then reseals secrets and checks them (start-up logs one
// line per key problem).
func (r *Relay) prepare(ctx context.Context) error {
	if err := r.prepareSchema(ctx); err != nil {
		return err
	}
	// Those that no configured key opens are left as they are: the key check reports them.
	if n, _, err := resealSecrets(ctx, r.db, r.cfg.Schema, r.box); err != nil {
		// Not fatal: the secrets still open with the keys given; the next start tries again.
		r.log.Warn().Err(err).Msg("resealing subscription secrets and header values with RELAY_ENCRYPTION_KEY")
	} else if n > 0 {
		r.log.Info().Int("subscriptions", n).Msg("resealed subscription secrets and header values with RELAY_ENCRYPTION_KEY")
	}
	if err := r.keys.Scan(ctx); err != nil {
		r.log.Warn().Err(err).Msg("checking subscription secrets")
	}
	return nil
}

// startServers serves the API (the public and admin ports in reverse-proxy mode) and
// answers the servers, in the order they are to be shut down.
func (r *Relay) startServers(g *errgroup.Group) []*http.Server {
	ln := r.listeners
	if r.public == nil {
		api := newOperatorServer(r.operator)
		g.Go(func() error { return serve("api", api, ln.api, r.limits.operator) })
		r.log.Info().Str("api", ln.api.Addr().String()).Str("ops", ln.ops.Addr().String()).
			Int("api_max_conns", r.limits.operator).Int("ops_max_conns", r.limits.ops).Msg("relay running")
		return []*http.Server{api}
	}
	public, admin := newPublicServer(r.public, r.streams), newOperatorServer(r.operator)
	g.Go(func() error { return serve("public", public, ln.api, r.limits.public) })
	g.Go(func() error { return serve("admin", admin, ln.admin, r.limits.operator) })
	r.log.Info().Str("public", ln.api.Addr().String()).Str("upstream", r.upstream).
		Str("prefix", r.cfg.ProxyPrefix).Str("admin", ln.admin.Addr().String()).
		Str("ops", ln.ops.Addr().String()).Int("public_max_conns", r.limits.public).
		Int("admin_max_conns", r.limits.operator).Int("ops_max_conns", r.limits.ops).
		Msg("relay running in reverse-proxy mode")
	return []*http.Server{public, admin}
}

// serve serves srv on ln, at most maxConns connections at once, until it is shut down.
func serve(name string, srv *http.Server, ln net.Listener, maxConns int) error {
	if err := srv.Serve(limitListener(ln, maxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", name, err)
	}
	return nil
}

func shutdownServer(srv *http.Server, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// ownerID names this process in delivery leases: host, pid and a random suffix, so that a
// restarted process with a recycled pid never mistakes an old lease for its own.
func ownerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// newEvents starts the work on outbox rows just written (a notification): the deliverer
// fans them out with its next claim, in one round trip, or, when it makes no claims now,
// the dispatcher.
func (r *Relay) newEvents() {
	if !r.deliverer.NewEvents() {
		r.dispatcher.Kick()
	}
}

// deliveriesQueued starts the active relay on deliveries the API made due: this relay's
// deliverer when it is the active one, otherwise the active one through a notification on
// the outbox channel (its LISTEN connection passes it to its deliverer). Without
// notifications the active relay finds them at its next poll.
func (r *Relay) deliveriesQueued() {
	if r.leader.Leading() {
		r.deliverer.Kick()
		return
	}
	if !r.cfg.NotifyTrigger {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := r.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, outbox.Channel(r.cfg.Schema), notify.QueuedPayload); err != nil {
			r.log.Debug().Err(err).Msg("notifying the active relay of queued deliveries; it finds them at its next poll")
		}
	}()
}
