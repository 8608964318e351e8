package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the PostgreSQL driver
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/referralloop/outbox-relay/config"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/dispatch"
	"github.com/referralloop/outbox-relay/relay/keycheck"
	"github.com/referralloop/outbox-relay/relay/metrics"
	"github.com/referralloop/outbox-relay/relay/notify"
	"github.com/referralloop/outbox-relay/relay/proxy"
	"github.com/referralloop/outbox-relay/relay/retention"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/targets"
	"github.com/referralloop/outbox-relay/relay/tracing"
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

// Run runs the relay until ctx ends. It returns an error only when it cannot start at all
// (an address in use, a schema newer than this binary); it returns nil after a clean stop.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	log := opts.Logger
	box, err := secrets.New(cfg.EncryptionKey, cfg.EncryptionKeyPrevious)
	if err != nil {
		return fmt.Errorf("RELAY_ENCRYPTION_KEY: %w", err)
	}
	db, err := sqlx.Open("postgres", cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("opening database: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	r := &runner{cfg: cfg, db: db, log: log, registry: reg}

	apiLn, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listening on RELAY_LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	opsLn, err := net.Listen("tcp", cfg.OpsAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listening on RELAY_OPS_ADDR %s: %w", cfg.OpsAddr, err)
	}
	// In reverse-proxy mode the public port serves the proxy, and the operator API (bearer
	// token, X-Tenant-ID trusted) moves to RELAY_ADMIN_ADDR, reachable only inside the pod.
	var adminLn net.Listener
	if cfg.UpstreamURL != "" {
		adminLn, err = net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			apiLn.Close()
			opsLn.Close()
			return fmt.Errorf("listening on RELAY_ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
		}
	}
	// closeListeners closes the listeners no server owns yet, on an early return.
	closeListeners := func() {
		apiLn.Close()
		if adminLn != nil {
			adminLn.Close()
		}
	}
	if opts.Listening != nil {
		opts.Listening(apiLn.Addr(), opsLn.Addr())
	}
	if opts.AdminListening != nil && adminLn != nil {
		opts.AdminListening(adminLn.Addr())
	}

	nofile := openFileLimit()
	limits := newConnLimits(nofile, cfg.Workers, cfg.UpstreamURL != "")
	if limits.short {
		log.Warn().Uint64("open_file_limit", nofile).Int("workers", cfg.Workers).
			Msg("open-file limit is low for RELAY_WORKERS: the listeners accept fewer connections at once; raise it (ulimit -n)")
	}

	// The ops server comes up first so that liveness answers while the database is awaited.
	opsSrv := newOpsServer(r.opsHandler())
	var servers sync.WaitGroup
	servers.Add(1)
	go func() {
		defer servers.Done()
		if err := opsSrv.Serve(limitListener(opsLn, limits.ops)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("ops server stopped")
		}
	}()
	defer func() {
		shutdownServer(opsSrv, 2*time.Second)
		servers.Wait()
	}()

	if err := r.prepareSchema(ctx); err != nil {
		closeListeners()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	// Those that no configured key opens are left as they are: the key check below reports
	// them, one line per key.
	if n, _, err := resealSecrets(ctx, db, cfg.Schema, box); err != nil {
		// Not fatal: the secrets still open with the keys given; the next start tries again.
		log.Warn().Err(err).Msg("resealing subscription secrets and header values with RELAY_ENCRYPTION_KEY")
	} else if n > 0 {
		log.Info().Int("subscriptions", n).Msg("resealed subscription secrets and header values with RELAY_ENCRYPTION_KEY")
	}

	tp, stopTracing, err := tracing.Setup(ctx, opts.Version)
	if err != nil {
		closeListeners()
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn().Err(err).Msg("flushing traces")
		}
	}()
	var tracer trace.Tracer
	if tracing.Enabled() {
		tracer = tp.Tracer("github.com/referralloop/outbox-relay/relay/deliver")
		log.Info().Msg("tracing on: one span per attempt, traceparent sent to receivers")
	}

	// Start-up logs one line per key problem: subscriptions whose secrets no configured key
	// opens. Their deliveries wait, and readiness says so, until the key is configured.
	r.keys, err = keycheck.New(keycheck.Config{
		DB:     db,
		Schema: cfg.Schema,
		Open:   box.Open,
		Logger: log.With().Str("component", "keycheck").Logger(),
	})
	if err != nil {
		closeListeners()
		return err
	}
	if err := r.keys.Scan(ctx); err != nil {
		log.Warn().Err(err).Msg("checking subscription secrets")
	}

	policy := targets.Policy{AllowHTTP: cfg.AllowHTTP, AllowPrivate: cfg.AllowPrivateTargets}
	owner := ownerID()
	log.Info().Str("owner", owner).Str("schema", cfg.Schema).Msg("starting")

	r.deliverer, err = deliver.New(deliver.Config{
		DB:                         db,
		Schema:                     cfg.Schema,
		Owner:                      owner,
		Workers:                    cfg.Workers,
		BatchSize:                  cfg.BatchSize,
		PollInterval:               cfg.PollInterval,
		DeliveryTimeout:            cfg.DeliveryTimeout,
		RetrySchedule:              cfg.RetrySchedule,
		MaxPayloadBytes:            cfg.MaxPayloadBytes,
		MaxInFlightPerSubscription: cfg.MaxInFlightPerSubscription,
		DisableAfter:               cfg.DisableAfter,
		ShutdownGrace:              cfg.ShutdownGrace,
		UserAgent:                  "outbox-relay/" + opts.Version,
		Client:                     deliver.NewHTTPClient(cfg.Workers, policy.DialControl),
		Metrics:                    m,
		Tracer:                     tracer,
		OpenSecret:                 box.Open,
		KeyProblems:                r.keys,
		Logger:                     log.With().Str("component", "deliver").Logger(),
	})
	if err != nil {
		closeListeners()
		return err
	}
	r.dispatcher, err = dispatch.New(dispatch.Config{
		DB:           db,
		Schema:       cfg.Schema,
		BatchSize:    cfg.BatchSize,
		PollInterval: cfg.PollInterval,
		Dispatched:   func(int) { r.deliverer.Kick() },
		Metrics:      m,
		Logger:       log.With().Str("component", "dispatch").Logger(),
	})
	if err != nil {
		closeListeners()
		return err
	}
	if cfg.NotifyTrigger {
		r.listener, err = notify.New(notify.Config{
			DSN:     cfg.ListenDatabaseURL,
			Channel: outbox.Channel(cfg.Schema),
			Wake:    r.dispatcher.Kick,
			Logger:  log.With().Str("component", "notify").Logger(),
		})
		if err != nil {
			closeListeners()
			return err
		}
	}
	cleaner, err := retention.New(retention.Config{
		DB:        db,
		Schema:    cfg.Schema,
		Retention: cfg.Retention,
		Logger:    log.With().Str("component", "retention").Logger(),
	})
	if err != nil {
		closeListeners()
		return err
	}
	apiHandler, err := api.New(api.Config{
		DB:                    db,
		Schema:                cfg.Schema,
		Targets:               policy,
		SealSecret:            box.Seal,
		OpenSecret:            box.Open,
		SecretRotationOverlap: cfg.SecretRotationOverlap,
		KeyProblem:            r.keys.Problem,
		DeliveriesQueued:      r.deliverer.Kick,
		DeliveriesCancelled:   func(n int) { m.Finished("cancelled", n) },
		Logger:                log.With().Str("component", "api").Logger(),
	})
	if err != nil {
		closeListeners()
		return err
	}

	reg.MustRegister(
		metrics.NewDBCollector(db, cfg.Schema, log.With().Str("component", "metrics").Logger()),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_relay_in_flight_requests",
			Help: "Webhook requests on the wire from this replica.",
		}, func() float64 { return float64(r.deliverer.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_relay_queued_requests",
			Help: "Deliveries this replica has claimed and not yet sent: waiting for a worker or for a free slot of their subscription.",
		}, func() float64 { return float64(r.deliverer.Queued()) }),
	)

	var components sync.WaitGroup
	run := func(f func(context.Context) error) {
		components.Add(1)
		go func() {
			defer components.Done()
			if err := f(ctx); err != nil {
				log.Error().Err(err).Msg("component stopped")
			}
		}()
	}
	if r.listener != nil {
		run(r.listener.Run)
	}
	run(r.dispatcher.Run)
	run(r.deliverer.Run)
	run(func(ctx context.Context) error { r.keys.Run(ctx); return nil })
	run(cleaner.Run)
	r.started.Store(true)

	operatorAPI := api.BearerAuth(cfg.APIToken, api.TenantFromHeader(apiHandler.Handler()))
	serve := func(name string, srv *http.Server, ln net.Listener, maxConns int) {
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := srv.Serve(limitListener(ln, maxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg(name + " server stopped")
			}
		}()
	}

	var apiSrv, adminSrv *http.Server
	// streams is the base context of proxied requests. Cancelled after the public server's
	// graceful shutdown, it ends the long streams and WebSockets that Shutdown does not wait
	// for (hijacked connections) or would wait for forever.
	streams, endStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer endStreams()
	if cfg.UpstreamURL == "" {
		apiSrv = newOperatorServer(operatorAPI)
		serve("api", apiSrv, apiLn, limits.operator)
		log.Info().Str("api", apiLn.Addr().String()).Str("ops", opsLn.Addr().String()).
			Int("api_max_conns", limits.operator).Int("ops_max_conns", limits.ops).Msg("relay running")
	} else {
		upstream, err := url.Parse(cfg.UpstreamURL) // config.Validate checked it
		if err != nil {
			closeListeners()
			return fmt.Errorf("RELAY_UPSTREAM_URL: %w", err)
		}
		public, err := proxy.New(proxy.Config{
			Upstream:     upstream,
			Prefix:       cfg.ProxyPrefix,
			AuthURL:      cfg.AuthURL,
			AuthCacheTTL: cfg.AuthCacheTTL,
			// Without BearerAuth and TenantFromHeader: forward auth sets the tenant Caller.
			API:    apiHandler.Handler(),
			Logger: log.With().Str("component", "proxy").Logger(),
		})
		if err != nil {
			closeListeners()
			return err
		}
		apiSrv = newPublicServer(public, streams)
		adminSrv = newOperatorServer(operatorAPI)
		serve("public", apiSrv, apiLn, limits.public)
		serve("admin", adminSrv, adminLn, limits.operator)
		log.Info().Str("public", apiLn.Addr().String()).Str("upstream", upstream.Redacted()).
			Str("prefix", cfg.ProxyPrefix).Str("admin", adminLn.Addr().String()).
			Str("ops", opsLn.Addr().String()).Int("public_max_conns", limits.public).
			Int("admin_max_conns", limits.operator).Int("ops_max_conns", limits.ops).
			Msg("relay running in reverse-proxy mode")
	}

	<-ctx.Done()
	log.Info().Dur("grace", cfg.ShutdownGrace).Msg("shutting down: no more claims, finishing requests in flight")
	r.started.Store(false)
	shutdownServer(apiSrv, 5*time.Second)
	endStreams()
	if adminSrv != nil {
		shutdownServer(adminSrv, 5*time.Second)
	}
	components.Wait()
	log.Info().Msg("stopped")
	return nil
}

// runner holds the running parts, for readiness.
type runner struct {
	cfg        config.Config
	db         *sqlx.DB
	log        zerolog.Logger
	migrated   atomic.Bool
	started    atomic.Bool
	listener   *notify.Listener
	dispatcher *dispatch.Dispatcher
	deliverer  *deliver.Deliverer
	keys       *keycheck.Checker
	registry   *prometheus.Registry
}

// prepareSchema migrates (or, with RELAY_AUTO_MIGRATE=false, waits for someone to), retrying
// while the database is unreachable.
func (r *runner) prepareSchema(ctx context.Context) error {
	bo := time.Duration(0)
	for {
		err := r.tryPrepareSchema(ctx)
		if err == nil {
			r.migrated.Store(true)
			return nil
		}
		if errors.Is(err, outbox.ErrSchemaTooNew) {
			return err
		}
		bo = min(max(bo*2, 200*time.Millisecond), 5*time.Second)
		r.log.Warn().Err(err).Dur("retry_in", bo).Msg("preparing database schema")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(bo):
		}
	}
}

func (r *runner) tryPrepareSchema(ctx context.Context) error {
	if r.cfg.AutoMigrate {
		res, err := outbox.Migrate(ctx, r.db.DB, outbox.MigrateOptions{Schema: r.cfg.Schema, NotifyTrigger: r.cfg.NotifyTrigger})
		if err != nil {
			return err
		}
		if len(res.Applied) > 0 {
			r.log.Info().Strs("applied", res.Applied).Int("version", res.Version).Msg("migrated")
		}
		return nil
	}
	v, err := outbox.SchemaVersion(ctx, r.db.DB, r.cfg.Schema)
	if err != nil {
		return err
	}
	if want := outbox.LatestVersion(); v != want {
		return fmt.Errorf("schema %s is at version %d, this relay needs %d: run outbox-relay migrate", r.cfg.Schema, v, want)
	}
	return nil
}

// ready reports whether this replica is doing its job, and if not, why: schema migrated,
// claiming works, results are being recorded, requests do not fail for reasons of this
// process, every active subscription's secret opens with the configured keys, and the
// LISTEN connection is up (when notifications are used).
func (r *runner) ready() (bool, string) {
	switch {
	case !r.migrated.Load():
		return false, "schema not migrated yet"
	case !r.started.Load():
		return false, "not claiming"
	case !r.dispatcher.Healthy() || !r.deliverer.Healthy():
		return false, "database unreachable"
	case r.listener != nil && !r.listener.Connected():
		return false, "listen connection down"
	}
	if why := r.deliverer.Trouble(); why != "" {
		return false, why
	}
	if why := r.keys.Trouble(); why != "" {
		return false, why
	}
	return true, "ok"
}

func (r *runner) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := r.ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.registry, promhttp.HandlerOpts{}))
	return mux
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
