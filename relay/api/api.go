package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// Config is what the management API needs.
type Config struct {
	// DB is the relay's database. Required.
	DB *sqlx.DB
	// Schema holds the relay's tables (RELAY_SCHEMA). Optional: outbox.DefaultSchema when empty.
	Schema string
	// DeliveryIDs formats and parses the public IDs of deliveries (the installation's key,
	// ids.Load). Required; it may be loaded after New, before the first request.
	DeliveryIDs *ids.Deliveries
	// Targets decides which target URLs subscriptions may have. Optional: the zero Policy is
	// the strict one (https, public addresses).
	Targets targets.Policy
	// Logger receives internal errors and notable changes; never secrets or bodies. Optional:
	// the zero Logger discards.
	Logger zerolog.Logger
	// SealSecret turns a new plain signing secret, custom header value or idempotent answer
	// into what is stored (encrypts it). Optional: nil stores values as they are. When it
	// answers its input unchanged (secrets.Box without a key does), header values are stored
	// as plain JSON strings rather than as sealed objects.
	SealSecret func(plain string) (stored string, err error)
	// OpenSecret turns a stored secret back into the plain one; the inverse of SealSecret.
	// Optional: nil reads the stored value as it is.
	OpenSecret func(stored string) (plain string, err error)
	// SecretRotationOverlap is how long the previous secret keeps signing beside the new one
	// after POST /v1/subscriptions/{id}/rotate-secret (RELAY_SECRET_ROTATION_OVERLAP).
	// Optional: zero ends the old secret at once. Negative is refused.
	SecretRotationOverlap time.Duration
	// DeliveriesQueued is called after a request made deliveries due at once (test, retry,
	// replay, a PATCH that sets a subscription active again), so that the active relay starts
	// on them instead of at its next poll. Optional; it must not block.
	DeliveriesQueued func()
	// DeliveriesCancelled is called with the number of pending deliveries a DELETE cancelled,
	// for the outbox_relay_deliveries_total{status="cancelled"} metric. Optional.
	DeliveriesCancelled func(n int)
	// KeyProblem answers why the relay cannot sign for subscription subscriptionID with its
	// configured keys (no key opens its signing secret or a sealed header value), or "" when
	// it can or nothing is known; every subscription the API answers shows it, phrased for
	// the subscription's owner, as blocked_reason. Pass keycheck.Checker.Problem: the key
	// check and the deliverer decide what is blocked, so the API never judges a secret by
	// itself. It is called for every subscription of an answer, lists included, so it must
	// be cheap and must not block. Optional: nil shows no subscription as blocked.
	KeyProblem func(subscriptionID string) string
	// RequestTimeout bounds the work of one request, its database queries included; a
	// request cut by it because the database did not answer is 503 database_unavailable.
	// Keep it under the HTTP server's WriteTimeout so that the answer still reaches the
	// caller. Optional: zero means 20 seconds. Negative is refused.
	RequestTimeout time.Duration
}

// defaultRequestTimeout is Config.RequestTimeout when unset: under the management server's
// 30-second WriteTimeout, with room to write the answer.
const defaultRequestTimeout = 20 * time.Second

// API serves the management API. Create it with New.
type API struct {
	db         *sqlx.DB
	q          queries
	ids        *ids.Deliveries
	targets    targets.Policy
	log        zerolog.Logger
	sealSecret func(string) (string, error)
	openSecret func(string) (string, error)
	overlap    time.Duration
	queued     func()
	cancelled  func(n int)
	keyProblem func(subscriptionID string) string
	handler    http.Handler
	// requestTimeout is Config.RequestTimeout with its default filled in.
	requestTimeout time.Duration
	// idempotencyWait is idempotencyWait, shortened by tests.
	idempotencyWait time.Duration

	// lastPurge is when this API last deleted expired idempotency keys (Unix nanoseconds).
	lastPurge atomic.Int64
}

// New checks cfg and returns the API.
func New(cfg Config) (*API, error) {
	if cfg.DB == nil {
		return nil, errors.New("api: Config.DB is required")
	}
	if cfg.DeliveryIDs == nil {
		return nil, errors.New("api: Config.DeliveryIDs is required")
	}
	schema := cfg.Schema
	if schema == "" {
		schema = outbox.DefaultSchema
	}
	if err := outbox.CheckSchemaName(schema); err != nil {
		return nil, fmt.Errorf("api: Config.Schema: %w", err)
	}
	if (cfg.SealSecret == nil) != (cfg.OpenSecret == nil) {
		return nil, errors.New("api: Config.SealSecret and Config.OpenSecret go together: set both or neither")
	}
	if cfg.SecretRotationOverlap < 0 {
		return nil, fmt.Errorf("api: Config.SecretRotationOverlap must not be negative, got %s", cfg.SecretRotationOverlap)
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("api: Config.RequestTimeout must not be negative, got %s", cfg.RequestTimeout)
	}
	identity := func(s string) (string, error) { return s, nil }
	a := &API{
		db:         cfg.DB,
		q:          newQueries(schema),
		ids:        cfg.DeliveryIDs,
		targets:    cfg.Targets,
		log:        cfg.Logger,
		sealSecret: cfg.SealSecret,
		openSecret: cfg.OpenSecret,
		overlap:    cfg.SecretRotationOverlap,
		queued:     cfg.DeliveriesQueued,
		cancelled:  cfg.DeliveriesCancelled,
		keyProblem: cfg.KeyProblem,

		requestTimeout:  cfg.RequestTimeout,
		idempotencyWait: idempotencyWait,
	}
	if a.requestTimeout == 0 {
		a.requestTimeout = defaultRequestTimeout
	}
	if a.cancelled == nil {
		a.cancelled = func(int) {}
	}
	if a.keyProblem == nil {
		a.keyProblem = func(string) string { return "" }
	}
	if a.queued == nil {
		a.queued = func() {}
	}
	if a.sealSecret == nil {
		a.sealSecret = identity
	}
	if a.openSecret == nil {
		a.openSecret = identity
	}
	a.handler = a.newHandler()
	return a, nil
}

// newSecret makes a signing secret for scheme: shown is what the caller gets (a "whsec_..."
// secret for v1; for v1a the "whpk_..." public key, the private key never leaving the relay)
// and stored is the secret or private key sealed for the database.
func (a *API) newSecret(scheme string) (shown, stored string, err error) {
	var plain string
	if scheme == signature.SchemeEd25519 {
		if plain, shown, err = signature.NewKeyPair(); err != nil {
			return "", "", err
		}
	} else {
		if plain, err = signature.NewSecret(); err != nil {
			return "", "", err
		}
		shown = plain
	}
	if stored, err = a.sealSecret(plain); err != nil {
		return "", "", fmt.Errorf("sealing secret: %w", err)
	}
	return shown, stored, nil
}

// secretAnswer is what the routes that hand out a subscription's key answer (GET .../secret,
// rotate-secret): the secret of a v1 subscription, the public key of a v1a one.
type secretAnswer struct {
	Secret    string `json:"secret,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
}

func newSecretAnswer(scheme, shown string) secretAnswer {
	if scheme == signature.SchemeEd25519 {
		return secretAnswer{PublicKey: shown}
	}
	return secretAnswer{Secret: shown}
}

// handlerFunc is one route's handler. It writes its own success answer; an error it returns is
// answered by serve: an *apiError as it is, anything else as a logged 500.
type handlerFunc func(w http.ResponseWriter, r *http.Request, s scope) error

// route is one method and path of the API.
type route struct {
	method  string
	pattern string // a net/http pattern without the method
	handle  handlerFunc
}

// routes is the whole API surface. A new endpoint is one line here and one handler; every
// POST takes an Idempotency-Key (idempotent), and openapi.json describes each line.
func (a *API) routes() []route {
	return []route{
		{http.MethodPost, "/v1/subscriptions", a.idempotent(a.createSubscription)},
		{http.MethodGet, "/v1/subscriptions", a.listSubscriptions},
		{http.MethodGet, "/v1/subscriptions/{id}", a.getSubscription},
		{http.MethodPatch, "/v1/subscriptions/{id}", a.patchSubscription},
		{http.MethodDelete, "/v1/subscriptions/{id}", a.deleteSubscription},
		{http.MethodGet, "/v1/subscriptions/{id}/secret", a.getSecret},
		{http.MethodPost, "/v1/subscriptions/{id}/rotate-secret", a.idempotent(a.rotateSecret)},
		{http.MethodPost, "/v1/subscriptions/{id}/test", a.idempotent(a.sendTest)},
		{http.MethodPost, "/v1/subscriptions/{id}/replay", a.idempotent(a.replay)},
		{http.MethodGet, "/v1/subscriptions/{id}/deliveries", a.listSubscriptionDeliveries},
		{http.MethodGet, "/v1/deliveries", a.listDeliveries},
		{http.MethodGet, "/v1/deliveries/{id}", a.getDelivery},
		{http.MethodPost, "/v1/deliveries/{id}/retry", a.idempotent(a.retryDelivery)},
		{http.MethodGet, "/v1/events", a.listEvents},
		{http.MethodGet, "/v1/events/{event_id}", a.getEvent},
		{http.MethodGet, "/v1/openapi.json", a.getOpenAPI},
	}
}

// Handler answers the API routes. It does not authenticate: put BearerAuth and a middleware
// that sets the Caller (TenantFromHeader, or forward auth) in front of it. A request that
// reaches it without a Caller is refused with 401.
func (a *API) Handler() http.Handler { return a.handler }

func (a *API) newHandler() http.Handler {
	// Each path gets one handler that picks the method itself, so that a wrong method is a
	// JSON 405 with an Allow header rather than net/http's plain-text one.
	byPath := map[string]map[string]handlerFunc{}
	var paths []string
	for _, rt := range a.routes() {
		if byPath[rt.pattern] == nil {
			byPath[rt.pattern] = map[string]handlerFunc{}
			paths = append(paths, rt.pattern)
		}
		byPath[rt.pattern][rt.method] = rt.handle
	}
	mux := http.NewServeMux()
	for _, p := range paths {
		mux.Handle(p, a.methods(byPath[p]))
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, errorf(http.StatusNotFound, codeNotFound, "no such endpoint"))
	}))
	return a.recover(a.requireCaller(mux))
}

func (a *API) methods(handlers map[string]handlerFunc) http.Handler {
	allowed := make([]string, 0, len(handlers))
	for m := range handlers {
		allowed = append(allowed, m)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := handlers[r.Method]
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "method %s is not allowed here; allowed: %s", truncate(r.Method), allow))
			return
		}
		s, aerr := scopeOf(r.Context())
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		// A database that does not answer (a network partition, a lock held too long) costs
		// the caller requestTimeout and a 503, not a connection held open until the server's
		// write timeout drops it without an answer.
		ctx, cancel := context.WithTimeout(r.Context(), a.requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		if err := h(w, r, s); err != nil {
			a.fail(w, r, err)
		}
	})
}

// requireCaller refuses every request without a usable Caller before routing, so that an
// unauthenticated request learns nothing, not even which paths exist.
func (a *API) requireCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, aerr := scopeOf(r.Context()); aerr != nil {
			writeError(w, aerr)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fail answers err: an *apiError as it is, a database that cannot be reached as 503
// database_unavailable with Retry-After, anything else as 500 internal_error. Both are
// logged here with the request they broke and never shown to the caller.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if aerr, ok := errors.AsType[*apiError](err); ok {
		writeError(w, aerr)
		return
	}
	if databaseUnavailable(r.Context(), err) {
		a.log.Warn().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("api request failed: database unavailable")
		writeError(w, errDatabaseUnavailable)
		return
	}
	ev := a.log.Error()
	if errors.Is(r.Context().Err(), context.Canceled) {
		ev = a.log.Debug() // the caller went away; nobody reads the answer
	}
	ev.Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("api request failed")
	writeError(w, errInternal)
}

// recover turns a panic in a handler into a logged 500, so a bug costs one request rather
// than a stack trace on the wire.
func (a *API) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error().Str("method", r.Method).Str("path", r.URL.Path).
				Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).Msg("api handler panicked")
			writeError(w, errInternal)
		}()
		next.ServeHTTP(w, r)
	})
}
