// Package console serves the web console: pages where an operator, or the application's own
// customer, sees the endpoints, reads why a delivery failed and presses retry.
//
// It is mounted twice. The operator console (Operator) sits on the management listener and
// is signed in to with the API token, exchanged for a session cookie (session.go). The
// customer portal (Tenant) sits under the reverse proxy's prefix, behind the same forward
// auth as the proxied API: the tenant it names is the caller, with no token and no second
// sign-in, and every page and action is scoped to it.
//
// Pages are server-rendered html/template, their assets embedded; they read with
// JavaScript off (a small script only refreshes the delivery log). The console reads the
// database itself (sql.go, scoped like the API) but changes nothing by itself: every form
// is a call to the management API's handler with the caller's scope (actions.go), so the
// API's rules (validation, tenancy, idempotency) are the only ones.
//
// Everything shown came from outside (payloads, headers, descriptions, URLs): templates
// escape it, the Content-Security-Policy allows no inline script and no other origin, and
// state-changing requests from another origin are refused (http.CrossOriginProtection).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// Mode says who the console's callers are.
type Mode int

const (
	// Operator: the management listener's console. Callers sign in with the API token and
	// see every tenant.
	Operator Mode = iota
	// Tenant: the customer portal under the reverse proxy. The handler in front (forward
	// auth) sets the api.Caller; the console refuses a request without one.
	Tenant
)

// Config is what New needs.
type Config struct {
	// DB is the relay's database. Required.
	DB *sqlx.DB
	// Schema holds the relay's tables. Optional: outbox.DefaultSchema.
	Schema string
	// DeliveryIDs formats and parses the public IDs of deliveries, as the API does
	// (ids.Load). Required; it may be loaded after New, before the first request.
	DeliveryIDs *ids.Deliveries
	// API is the management API's handler without authentication (api.API.Handler): every
	// change the console makes is a request to it. Required.
	API http.Handler
	// Mode is Operator or Tenant.
	Mode Mode
	// Base is the path the console is served under, without a trailing slash: "/console",
	// or "<RELAY_PROXY_PREFIX>/console". Links and redirects start with it; the handler sees
	// paths below it (the mount strips it).
	Base string
	// Token is the API token an operator signs in with (Operator mode). Empty signs every
	// caller in as the operator, as the API does without a token (RELAY_INSECURE_NO_AUTH).
	Token string
	// Title names the application on every page (RELAY_CONSOLE_TITLE). Optional.
	Title string
	// FrameAncestors is the CSP frame-ancestors source list: who may show the console in a
	// frame (RELAY_CONSOLE_FRAME_ANCESTORS, checked by config.CheckFrameAncestors).
	// Optional: 'self'.
	FrameAncestors string
	// Logger receives internal errors and sign-ins; never tokens or payloads. Optional.
	Logger zerolog.Logger
}

// DefaultTitle is Config.Title when empty.
const DefaultTitle = "outbox-relay"

// DefaultFrameAncestors is Config.FrameAncestors when empty.
const DefaultFrameAncestors = "'self'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Console serves the pages. Create it with New.
type Console struct {
	db       *sqlx.DB
	schema   string
	ids      *ids.Deliveries
	api      http.Handler
	mode     Mode
	base     string
	title    string
	csp      string
	log      zerolog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	handler  http.Handler
}

// New checks cfg and returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.DB == nil || cfg.API == nil || cfg.DeliveryIDs == nil {
		return nil, errors.New("console: Config.DB, Config.API and Config.DeliveryIDs are required")
	}
	schema := cfg.Schema
	if schema == "" {
		schema = outbox.DefaultSchema
	}
	if err := outbox.CheckSchemaName(schema); err != nil {
		return nil, fmt.Errorf("console: Config.Schema: %w", err)
	}
	if cfg.Base != "" && (!strings.HasPrefix(cfg.Base, "/") || strings.HasSuffix(cfg.Base, "/") || path.Clean(cfg.Base) != cfg.Base) {
		return nil, fmt.Errorf("console: Config.Base %q must be a clean path that starts with / and does not end with one", cfg.Base)
	}
	ancestors := cfg.FrameAncestors
	if ancestors == "" {
		ancestors = DefaultFrameAncestors
	}
	title := cfg.Title
	if title == "" {
		title = DefaultTitle
	}
	c := &Console{
		db: cfg.DB, schema: schema, ids: cfg.DeliveryIDs, api: cfg.API, mode: cfg.Mode, base: cfg.Base, title: title, log: cfg.Logger,
		// No inline script or style, nothing from another origin; forms post only here.
		csp: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors " + ancestors,
	}
	if cfg.Mode == Operator {
		c.sessions = newSessions(cfg.DB, schema, cfg.Base, cfg.Token)
	}
	var err error
	if c.pages, err = parsePages(c.base, c.ids); err != nil {
		return nil, err
	}
	c.handler = c.newHandler()
	return c, nil
}

// ServeHTTP serves a request whose path is below Base (the mount strips Base).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

func (c *Console) newHandler() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	if c.mode == Operator {
		mux.HandleFunc("GET /sign-in", c.signInPage)
		mux.HandleFunc("POST /sign-in", c.signIn)
		mux.HandleFunc("POST /sign-out", c.signOut)
	}
	pages := http.NewServeMux()
	pages.HandleFunc("GET /{$}", c.overview)
	pages.HandleFunc("GET /subscriptions", c.subscriptions)
	pages.HandleFunc("GET /subscriptions/new", c.newSubscriptionPage)
	pages.HandleFunc("POST /subscriptions", c.createSubscription)
	pages.HandleFunc("GET /subscriptions/{id}", c.subscription)
	pages.HandleFunc("POST /subscriptions/{id}", c.editSubscription)
	pages.HandleFunc("POST /subscriptions/{id}/{action}", c.subscriptionAction)
	pages.HandleFunc("GET /deliveries", c.deliveries)
	pages.HandleFunc("GET /deliveries/{id}", c.delivery)
	pages.HandleFunc("POST /deliveries/{id}/retry", c.retryDelivery)
	pages.HandleFunc("GET /events/{id}", c.event)
	pages.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "message", pageData{Title: "Not found", Message: "There is no such page."})
	})
	mux.Handle("/", c.authenticated(pages))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusForbidden, "message", pageData{Title: "Refused",
			Message: "This request came from another site and was refused. Use the console's own pages."})
	}))
	return c.secure(cop.Handler(mux))
}

// secure sets the headers every answer carries: the CSP, no sniffing, no referrer (URLs carry
// IDs), and no caching of pages that show what only a signed-in caller may see.
func (c *Console) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", c.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/assets/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// authenticated sets the caller of a page request: the operator with a live session (else a
// redirect to the sign-in page), or the tenant forward auth named (else 401).
func (c *Console) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.mode == Tenant {
			if caller, ok := api.CallerFromContext(r.Context()); !ok || caller.TenantID == "" {
				c.render(w, r, http.StatusUnauthorized, "message", pageData{Title: "Not signed in", Message: "Sign in to the application first."})
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		ok, err := c.sessions.valid(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if !ok {
			http.Redirect(w, r, c.base+"/sign-in", http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r.WithContext(api.WithCaller(r.Context(), api.Caller{Operator: true})))
	})
}

// scope is the tenant the caller is limited to, "" for the operator.
func scope(ctx context.Context) string {
	caller, _ := api.CallerFromContext(ctx)
	return caller.TenantID
}

// dbTimeout bounds a page's queries.
const dbTimeout = 10 * time.Second

// fail answers an internal error as a page without its details, which go to the log.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		return
	}
	c.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("console request failed")
	c.render(w, r, http.StatusInternalServerError, "message", pageData{Title: "Something went wrong",
		Message: "The page could not be made. The relay's log says why; try again in a moment."})
}
