package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/referralloop/outbox-relay/config"
	"github.com/referralloop/outbox-relay/internal/defaults"
	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/console"
	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/dispatch"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/keycheck"
	"github.com/referralloop/outbox-relay/relay/leader"
	"github.com/referralloop/outbox-relay/relay/metrics"
	"github.com/referralloop/outbox-relay/relay/notify"
	"github.com/referralloop/outbox-relay/relay/proxy"
	"github.com/referralloop/outbox-relay/relay/retention"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/targets"
	"github.com/referralloop/outbox-relay/relay/tracing"
)

// dbConnMaxIdle is how long a pooled connection may sit unused before it is closed: a burst
// of API requests or a backlog opens up to RELAY_DB_MAX_CONNS, and the quiet that follows
// gives them back to the database.
const dbConnMaxIdle = 10 * time.Second

// New opens what the relay owns and builds its components; nothing reaches the database
// yet. On error it releases whatever it had opened.
func New(ctx context.Context, cfg config.Config, opts Options) (r *Relay, err error) {
	// The delivery ID key is in the database: prepare loads it before anything runs.
	r = &Relay{cfg: cfg, opts: opts, log: opts.Logger, registry: prometheus.NewRegistry(), deliveryIDs: new(ids.Deliveries)}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.box, err = secrets.New(cfg.EncryptionKey, cfg.EncryptionKeyPrevious); err != nil {
		return nil, fmt.Errorf("RELAY_ENCRYPTION_KEY: %w", err)
	}
	pool, err := pgstmt.Open(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("RELAY_DATABASE_URL: %w", err)
	}
	r.db = sqlx.NewDb(pool, "postgres")
	r.closers = append(r.closers, func() { r.db.Close() })
	maxConns := cfg.DBMaxConns
	if maxConns <= 0 {
		maxConns = defaults.DBMaxConns
	}
	r.db.SetMaxOpenConns(maxConns)
	r.db.SetMaxIdleConns(maxConns)
	r.db.SetConnMaxIdleTime(dbConnMaxIdle)
	if err := r.listen(); err != nil {
		return nil, err
	}
	r.streams, r.endStreams = context.WithCancel(context.WithoutCancel(ctx))
	r.closers = append(r.closers, r.endStreams)
	tracer, err := r.startTracing(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.build(tracer); err != nil {
		return nil, err
	}
	return r, nil
}

// listen binds the ports: the API (the public port in reverse-proxy mode, where the
// operator API moves to RELAY_ADMIN_ADDR, reachable only inside the pod) and ops.
func (r *Relay) listen() error {
	bind := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s %s: %w", name, addr, err)
		}
		// Closing a listener a server already closed is harmless.
		r.closers = append(r.closers, func() { ln.Close() })
		return ln, nil
	}
	var err error
	if r.listeners.api, err = bind("RELAY_LISTEN_ADDR", r.cfg.ListenAddr); err != nil {
		return err
	}
	if r.listeners.ops, err = bind("RELAY_OPS_ADDR", r.cfg.OpsAddr); err != nil {
		return err
	}
	if r.cfg.UpstreamURL != "" {
		if r.listeners.admin, err = bind("RELAY_ADMIN_ADDR", r.cfg.AdminAddr); err != nil {
			return err
		}
	}
	if r.opts.Listening != nil {
		r.opts.Listening(r.listeners.api.Addr(), r.listeners.ops.Addr())
	}
	if r.opts.AdminListening != nil && r.listeners.admin != nil {
		r.opts.AdminListening(r.listeners.admin.Addr())
	}
	nofile := openFileLimit()
	r.limits = newConnLimits(nofile, r.cfg.Workers, r.cfg.UpstreamURL != "")
	if r.limits.short {
		r.log.Warn().Uint64("open_file_limit", nofile).Int("workers", r.cfg.Workers).
			Msg("open-file limit is low for RELAY_WORKERS: the listeners accept fewer connections at once; raise it (ulimit -n)")
	}
	return nil
}

// startTracing sets OpenTelemetry up (off unless configured) and answers the deliverer's
// tracer, nil when off.
func (r *Relay) startTracing(ctx context.Context) (trace.Tracer, error) {
	tp, stop, err := tracing.Setup(ctx, r.opts.Version)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stop(sctx); err != nil {
			r.log.Warn().Err(err).Msg("flushing traces")
		}
	})
	if !tracing.Enabled() {
		return nil, nil
	}
	r.log.Info().Msg("tracing on: one span per attempt, traceparent sent to receivers")
	return tp.Tracer("github.com/referralloop/outbox-relay/relay/deliver"), nil
}

// egressClient makes the client webhooks leave through, from the egress settings: the
// address guard, the proxy and the root CAs. It answers the egress.Config too, from which
// the deliverer makes the clients of subscriptions with a client certificate.
func egressClient(cfg config.Config, policy targets.Policy) (*http.Client, egress.Config, error) {
	ecfg := egress.Config{Workers: cfg.Workers, Policy: policy, ProxyEnforcesSSRF: cfg.EgressProxyEnforcesSSRF}
	if cfg.EgressProxy != "" {
		u, err := url.Parse(cfg.EgressProxy)
		if err != nil {
			return nil, ecfg, fmt.Errorf("RELAY_EGRESS_PROXY: invalid URL")
		}
		ecfg.Proxy = u
	}
	if cfg.CAFile != "" {
		roots, err := egress.LoadRoots(cfg.CAFile)
		if err != nil {
			return nil, ecfg, fmt.Errorf("RELAY_CA_FILE: %w", err)
		}
		ecfg.RootCAs = roots
	}
	client, err := egress.New(ecfg)
	return client, ecfg, err
}

// build makes the components and wires them together.
func (r *Relay) build(tracer trace.Tracer) error {
	cfg, db, log := r.cfg, r.db, r.log
	r.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(r.registry)
	policy := targets.Policy{
		AllowHTTP: cfg.AllowHTTP, AllowPrivate: cfg.AllowPrivateTargets, AllowCIDRs: cfg.AllowPrivateCIDRs,
		// An egress proxy that enforces the policy resolves names itself: the relay's DNS
		// has no say at subscription time either.
		NoLookup: cfg.EgressProxy != "" && cfg.EgressProxyEnforcesSSRF,
	}
	owner := ownerID()
	log.Info().Str("owner", owner).Str("schema", cfg.Schema).Msg("starting")
	log.Info().Fields(cfg.LogFields()).Msg("configuration")

	client, ecfg, err := egressClient(cfg, policy)
	if err != nil {
		return err
	}
	if r.leader, err = leader.New(leader.Config{
		DB: db, Schema: cfg.Schema, Owner: owner,
		Logger: log.With().Str("component", "leader").Logger(),
	}); err != nil {
		return err
	}
	if r.keys, err = keycheck.New(keycheck.Config{
		DB: db, Schema: cfg.Schema, Open: r.box.Open,
		Logger: log.With().Str("component", "keycheck").Logger(),
	}); err != nil {
		return err
	}
	if r.deliverer, err = deliver.New(deliver.Config{
		DB:                         db,
		Schema:                     cfg.Schema,
		DeliveryIDs:                r.deliveryIDs,
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
		UserAgent:                  "outbox-relay/" + r.opts.Version,
		Client:                     client,
		ClientWithCertificate: func(cert tls.Certificate) (*http.Client, error) {
			c := ecfg
			c.ClientCertificate = &cert
			return egress.New(c)
		},
		Metrics:     m,
		Active:      r.leader,
		Backlog:     func() { r.dispatcher.Kick() },
		Tracer:      tracer,
		OpenSecret:  r.box.Open,
		KeyProblems: r.keys,
		Logger:      log.With().Str("component", "deliver").Logger(),
	}); err != nil {
		return err
	}
	if r.dispatcher, err = dispatch.New(dispatch.Config{
		DB: db, Schema: cfg.Schema, BatchSize: cfg.BatchSize, PollInterval: cfg.PollInterval,
		Dispatched: func(int) { r.deliverer.Kick() },
		Metrics:    m,
		Logger:     log.With().Str("component", "dispatch").Logger(),
	}); err != nil {
		return err
	}
	if cfg.NotifyTrigger {
		if r.listener, err = notify.New(notify.Config{
			DSN: cfg.ListenDatabaseURL, Channel: outbox.Channel(cfg.Schema), Wake: r.newEvents,
			Queued: r.deliverer.Kick,
			Logger: log.With().Str("component", "notify").Logger(),
		}); err != nil {
			return err
		}
	}
	if r.cleaner, err = retention.New(retention.Config{
		DB: db, Schema: cfg.Schema, Retention: cfg.Retention,
		Logger: log.With().Str("component", "retention").Logger(),
	}); err != nil {
		return err
	}
	apiHandler, err := api.New(api.Config{
		DB:                    db,
		Schema:                cfg.Schema,
		DeliveryIDs:           r.deliveryIDs,
		Targets:               policy,
		SealSecret:            r.box.Seal,
		OpenSecret:            r.box.Open,
		SecretRotationOverlap: cfg.SecretRotationOverlap,
		KeyProblem:            r.keys.Problem,
		DeliveriesQueued:      r.deliveriesQueued,
		DeliveriesCancelled:   func(n int) { m.Finished("cancelled", n) },
		Logger:                log.With().Str("component", "api").Logger(),
	})
	if err != nil {
		return err
	}
	r.operator = api.BearerAuth(cfg.APIToken, api.TenantFromHeader(apiHandler.Handler()))
	var portal http.Handler
	if cfg.Console {
		consoleConfig := console.Config{
			DB: db, Schema: cfg.Schema, DeliveryIDs: r.deliveryIDs, API: apiHandler.Handler(), Mode: console.Operator, Base: "/console",
			Token: cfg.APIToken, Title: cfg.ConsoleTitle, FrameAncestors: cfg.ConsoleFrameAncestors,
			Logger: log.With().Str("component", "console").Logger(),
		}
		operatorConsole, err := console.New(consoleConfig)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/console/", http.StripPrefix("/console", operatorConsole))
		mux.Handle("/console", http.RedirectHandler("/console/", http.StatusSeeOther))
		mux.Handle("/", r.operator)
		r.operator = mux
		if cfg.UpstreamURL != "" {
			consoleConfig.Mode, consoleConfig.Base, consoleConfig.Token = console.Tenant, cfg.ProxyPrefix+"/console", ""
			if portal, err = console.New(consoleConfig); err != nil {
				return err
			}
		}
	}
	if cfg.UpstreamURL != "" {
		upstream, err := url.Parse(cfg.UpstreamURL) // config.Validate checked it
		if err != nil {
			return fmt.Errorf("RELAY_UPSTREAM_URL: %w", err)
		}
		r.upstream = upstream.Redacted()
		if r.public, err = proxy.New(proxy.Config{
			Upstream: upstream, Prefix: cfg.ProxyPrefix, AuthURL: cfg.AuthURL, AuthCacheTTL: cfg.AuthCacheTTL,
			// Without BearerAuth and TenantFromHeader: forward auth sets the tenant Caller.
			API:     apiHandler.Handler(),
			Console: portal,
			Logger:  log.With().Str("component", "proxy").Logger(),
		}); err != nil {
			return err
		}
	}
	r.registry.MustRegister(
		metrics.NewDBCollector(db, cfg.Schema, log.With().Str("component", "metrics").Logger()),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_relay_active",
			Help: "1 while this replica is the active relay (claims, fans out and sends), 0 while it stands by.",
		}, func() float64 {
			if r.leader.Leading() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_relay_in_flight_requests",
			Help: "Webhook requests on the wire from this replica.",
		}, func() float64 { return float64(r.deliverer.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_relay_queued_requests",
			Help: "Deliveries this replica has claimed and not yet sent: waiting for a worker or for a free slot of their subscription.",
		}, func() float64 { return float64(r.deliverer.Queued()) }),
	)
	return nil
}
