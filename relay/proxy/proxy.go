package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/internal/defaults"
	"github.com/referralloop/outbox-relay/relay/api"
)

// DefaultPrefix is the path the management API is served under when Config.Prefix is empty
// (RELAY_PROXY_PREFIX's default).
const DefaultPrefix = defaults.ProxyPrefix

// DefaultAuthTimeout bounds one forward-auth call when Config.AuthClient is nil or has no
// Timeout of its own.
const DefaultAuthTimeout = 5 * time.Second

// apiTimeout bounds a whole request under the prefix (forward auth included): reading its
// body and writing its answer. The public server cannot have a global ReadTimeout or
// WriteTimeout, since proxied streams and WebSockets may last for hours, so the API path sets
// its own deadlines (the same 30s the plain API server uses).
const apiTimeout = 30 * time.Second

// Config is what New needs.
type Config struct {
	// Upstream is the application behind the relay (RELAY_UPSTREAM_URL), an absolute http(s)
	// URL. Required. A path in it is joined in front of every proxied path, and its query
	// merged into every proxied query (httputil.ProxyRequest.SetURL).
	Upstream *url.URL
	// Prefix is the path under which the management API is served (RELAY_PROXY_PREFIX): a
	// clean path that starts with "/" and does not end with one. Optional: DefaultPrefix.
	Prefix string
	// AuthURL is the forward-auth endpoint (RELAY_AUTH_URL), an absolute http(s) URL that
	// answers GET. Required.
	AuthURL string
	// AuthCacheTTL is how long a forward-auth answer is reused for the same credentials
	// (RELAY_AUTH_CACHE_TTL). Optional: zero asks the auth URL on every request. Negative is
	// refused.
	AuthCacheTTL time.Duration
	// API serves the management API's routes without any authentication in front of it: the
	// api.API's Handler(), which reads the caller with api.CallerFromContext. Required. Do not
	// wrap it in api.BearerAuth or api.TenantFromHeader: forward auth takes their place.
	API http.Handler
	// Console is the customer portal (a console.Console in Tenant mode), served under
	// Prefix + "/console" after the same forward auth, with the tenant as its caller and the
	// path below that. Optional: nil serves no portal.
	Console http.Handler
	// AuthClient makes the forward-auth calls. Optional: nil is a client with a timeout of
	// DefaultAuthTimeout. New uses a copy of it that never follows redirects (a redirect to a
	// login page is a refusal) and has no cookie jar (a jar would carry one caller's cookies
	// into another caller's auth call). When its Timeout is zero, DefaultAuthTimeout applies.
	AuthClient *http.Client
	// Logger receives upstream errors and misbehaving auth answers; never credentials, bodies
	// or queries. Optional: the zero Logger discards.
	Logger zerolog.Logger
	// Transport carries proxied requests to the upstream. Optional: nil is a transport of its
	// own (no HTTP proxy from the environment, no transparent compression, no response
	// timeout, 5s to connect, up to 256 idle connections).
	Transport http.RoundTripper
}

// handler routes a request to the management API (under the prefix, after forward auth) or
// to the upstream (everything else).
type handler struct {
	prefix        string
	escapedPrefix string
	api           http.Handler
	console       http.Handler
	auth          *forwardAuth
	upstream      *httputil.ReverseProxy
	log           zerolog.Logger
	apiTimeout    time.Duration // apiTimeout; shortened by tests
}

var _ http.Handler = (*handler)(nil)

// New checks cfg and returns the handler of the public port in reverse-proxy mode: requests
// under cfg.Prefix go to cfg.API after forward auth, all others to cfg.Upstream.
func New(cfg Config) (http.Handler, error) {
	if err := checkUpstream(cfg.Upstream); err != nil {
		return nil, err
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if msg := checkPrefix(prefix); msg != "" {
		return nil, fmt.Errorf("proxy: Config.Prefix %q %s", prefix, msg)
	}
	if cfg.API == nil {
		return nil, errors.New("proxy: Config.API is required")
	}
	auth, err := newForwardAuth(cfg)
	if err != nil {
		return nil, err
	}
	transport := cfg.Transport
	if transport == nil {
		transport = newUpstreamTransport()
	}
	log := cfg.Logger
	target := *cfg.Upstream
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&target)
			// The application keeps seeing the Host its clients asked for: virtual hosts,
			// absolute URLs, cookie domains and Origin checks work as they did without the
			// relay. X-Forwarded-Host carries it as well.
			pr.Out.Host = pr.In.Host
			setForwarded(pr.Out.Header, pr.In)
		},
		Transport: transport,
		// Every write reaches the client at once: server-sent events, long polls and slow
		// downloads behave as they would without the relay.
		FlushInterval: -1,
		ErrorLog:      stdlog.New(logWriter{log}, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				// The client went away; nobody reads this answer.
				log.Debug().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("proxied request abandoned by the client")
			} else {
				log.Warn().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("proxying to upstream")
			}
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("502 bad gateway: the application did not answer\n"))
		},
	}
	return &handler{
		prefix:        prefix,
		escapedPrefix: (&url.URL{Path: prefix}).EscapedPath(),
		api:           cfg.API,
		console:       cfg.Console,
		auth:          auth,
		upstream:      rp,
		log:           log,
		apiTimeout:    apiTimeout,
	}, nil
}

func checkUpstream(u *url.URL) error {
	switch {
	case u == nil:
		return errors.New("proxy: Config.Upstream is required")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("proxy: Config.Upstream %q is not an absolute http(s) URL", u.Redacted())
	}
	return nil
}

func checkPrefix(p string) string {
	switch {
	case !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/"):
		return `must start with "/" and not end with "/"`
	case strings.ContainsAny(p, "?#%* \t") || path.Clean(p) != p:
		return "must be a clean path without ?, #, %, * or spaces"
	}
	return ""
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := stripPrefix(r.URL.Path, h.prefix)
	if !ok {
		h.upstream.ServeHTTP(w, r)
		return
	}
	h.serveAPI(w, r, rest)
}

// consolePath is where the customer portal is, below the prefix.
const consolePath = "/console"

// stripPrefix answers the path below prefix when p is prefix itself or lies under it as whole
// segments: "/webhooks" and "/webhooks/v1/x" do ("/" and "/v1/x"), "/webhooksfoo" does not.
// Matching is case-sensitive, on the decoded path, like net/http's ServeMux.
func stripPrefix(p, prefix string) (rest string, ok bool) {
	if p == prefix {
		return "/", true
	}
	if len(p) > len(prefix) && p[len(prefix)] == '/' && strings.HasPrefix(p, prefix) {
		return p[len(prefix):], true
	}
	return "", false
}

// serveAPI authenticates a request under the prefix and hands it to the API as the tenant the
// auth URL named, with the prefix stripped.
func (h *handler) serveAPI(w http.ResponseWriter, r *http.Request, rest string) {
	// Handlers must not change the request they are given: work on a copy. The caller's
	// X-Tenant-ID goes first, so that nothing below can ever read it.
	r = r.Clone(r.Context())
	r.Header.Del("X-Tenant-ID")

	// The deadlines stay in force after the handler returns, while net/http writes what the
	// API buffered; net/http then clears them, so the next request on this keep-alive
	// connection (a long stream to the upstream, say) is not bound by them.
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(h.apiTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)

	// The portal's pages are for a browser: its refusals are a page too.
	fail := writeError
	if _, ok := stripPrefix(rest, consolePath); ok && h.console != nil {
		fail = writePage
	}
	if !hasCredentials(r.Header) {
		fail(w, http.StatusUnauthorized, codeUnauthorized, "missing credentials: send the Authorization header or the cookie your application's API expects")
		return
	}
	v := h.auth.check(r)
	switch v.outcome {
	case outcomeUnavailable:
		fail(w, http.StatusServiceUnavailable, codeAuthUnavailable, "authentication is unavailable, try again later")
		return
	case outcomeDenied:
		fail(w, http.StatusUnauthorized, codeUnauthorized, "the credentials were not accepted")
		return
	}

	// A dot segment or an empty one would make the API's (or the portal's) ServeMux answer a
	// redirect to a path without the prefix; no route has them, so they are simply not
	// found. The portal's pages may end with a slash.
	if rest != "/" && path.Clean(rest) != strings.TrimSuffix(rest, "/") {
		fail(w, http.StatusNotFound, codeNotFound, "no such endpoint")
		return
	}

	r = r.WithContext(api.WithCaller(r.Context(), api.Caller{TenantID: v.tenant}))
	// The header now carries the authenticated tenant: even a handler that (wrongly) read
	// X-Tenant-ID would find that tenant and never the operator's empty header.
	r.Header.Set("X-Tenant-ID", v.tenant)
	if page, ok := stripPrefix(rest, consolePath); ok && h.console != nil {
		r.URL.Path, r.URL.RawPath = page, ""
		h.console.ServeHTTP(w, r)
		return
	}
	if strings.HasSuffix(rest, "/") && rest != "/" {
		fail(w, http.StatusNotFound, codeNotFound, "no such endpoint")
		return
	}
	r.URL.Path = rest
	if r.URL.RawPath != "" {
		raw, ok := stripPrefix(r.URL.RawPath, h.escapedPrefix)
		if !ok {
			raw = ""
		}
		r.URL.RawPath = raw
	}
	h.api.ServeHTTP(w, r)
}

// hasCredentials reports whether the request carries anything forward auth could accept. A
// request without a non-empty Authorization or Cookie header is refused without asking.
func hasCredentials(h http.Header) bool {
	for _, k := range []string{"Authorization", "Cookie"} {
		for _, v := range h.Values(k) {
			if strings.TrimSpace(v) != "" {
				return true
			}
		}
	}
	return false
}

// setForwarded sets the X-Forwarded-* headers of a request the relay makes on behalf of in
// (the upstream request, or the forward-auth call). The relay behaves as one more hop: it
// appends the client's address to X-Forwarded-For, and keeps X-Forwarded-Host,
// X-Forwarded-Proto and Forwarded as an ingress in front of it set them, filling in the first
// two from this request when nobody did. See the package documentation for why.
func setForwarded(out http.Header, in *http.Request) {
	prior := strings.Join(in.Header.Values("X-Forwarded-For"), ", ")
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior != "" {
			prior += ", "
		}
		prior += ip
	}
	if prior != "" {
		out.Set("X-Forwarded-For", prior)
	} else {
		out.Del("X-Forwarded-For")
	}
	if v := in.Header.Values("X-Forwarded-Host"); len(v) > 0 {
		out["X-Forwarded-Host"] = v
	} else {
		out.Set("X-Forwarded-Host", in.Host)
	}
	if v := in.Header.Values("X-Forwarded-Proto"); len(v) > 0 {
		out["X-Forwarded-Proto"] = v
	} else if in.TLS != nil {
		out.Set("X-Forwarded-Proto", "https")
	} else {
		out.Set("X-Forwarded-Proto", "http")
	}
	if v := in.Header.Values("Forwarded"); len(v) > 0 {
		out["Forwarded"] = v
	}
}

func newUpstreamTransport() *http.Transport {
	return &http.Transport{
		// The upstream sits in the pod: no HTTP_PROXY detour.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// Every public request but the API's goes to this one host: keep plenty of
		// connections (the default of 2 idle per host would redial under any load).
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		// Bodies pass as they are: no Accept-Encoding added, nothing decompressed.
		DisableCompression: true,
		// No ResponseHeaderTimeout: long polls are legitimate, and the client decides how
		// long it waits.
	}
}

// Error codes of the answers the proxy gives itself under the prefix, in the API's shape.
const (
	codeUnauthorized    = "unauthorized"     // 401
	codeNotFound        = "not_found"        // 404
	codeAuthUnavailable = "auth_unavailable" // 503
)

// writeError answers {"error": {"code", "message"}} like the management API does.
func writeError(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: message}}) // cannot fail
	_, _ = w.Write(append(body, '\n'))
}

// writePage answers a refusal of a portal page as a small HTML page, for the browser that
// asked: the message is the one the API's callers get in JSON.
func writePage(w http.ResponseWriter, status int, _, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%d %s</title></head>\n<body><h1>%s</h1><p>%s. Sign in to the application, then open this page again.</p></body></html>\n",
		status, html.EscapeString(http.StatusText(status)), html.EscapeString(http.StatusText(status)), html.EscapeString(message))
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// logWriter turns ReverseProxy's standard-library log lines into warnings.
type logWriter struct{ log zerolog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
