// Package proxy is reverse-proxy mode (the README's "Reverse-proxy mode"): the relay stands in
// front of the application on its public port, serves the management API to the
// application's own customers under a path prefix, authenticated by the application itself,
// and passes every other request through to the application untouched.
//
//	client ──▶ relay :8080 ──┬─ /webhooks, /webhooks/...  forward auth ─▶ API as that tenant
//	                         └─ everything else ─────────────────────────▶ upstream (the app)
//
// # Routing
//
// A request belongs to the API when its path is the prefix or lies under it as whole
// segments: with the default prefix /webhooks, "/webhooks" and "/webhooks/v1/subscriptions"
// do, "/webhooksfoo", "/webhook" and "/WEBHOOKS/v1" do not. Matching is on the decoded path,
// case-sensitive, like net/http's ServeMux. The prefix is stripped before the API sees the
// request ("/webhooks/v1/subscriptions" becomes "/v1/subscriptions", the query is kept).
// Paths under the prefix with dot or empty segments ("/webhooks/v1/../x", "/webhooks//v1")
// answer 404 after authentication instead of the API router's redirect, which would point
// outside the prefix.
//
// # Forward auth
//
// Under the prefix, the caller's own X-Tenant-ID header is deleted first: a caller is never
// the operator and never picks its tenant. Then the relay sends
//
//	GET <AuthURL>
//	Authorization: <the caller's, every value>
//	Cookie: <the caller's, every value>
//	X-Forwarded-For, -Proto, -Host   (as for the upstream, below)
//	X-Forwarded-Method, -Uri         (the caller's method and request URI, prefix included)
//	User-Agent: outbox-relay (forward-auth)
//
// and nothing else: no other header of the caller, never the body. Redirects are not followed
// and the client has no cookie jar. The answer decides:
//
//	2xx with one usable X-Tenant-ID             -> runs as that tenant   cached
//	401 or 403                                  -> 401 unauthorized      cached
//	2xx without a usable X-Tenant-ID (logged)   -> 401 unauthorized
//	any other status: 3xx, 404, 5xx (logged)    -> 401 unauthorized
//	no answer: refused, reset, timeout (logged) -> 503 auth_unavailable
//
// Usable means accepted by api.ValidateTenantID, the rule the operator's X-Tenant-ID header is
// held to (1 to 255 bytes of UTF-8 without control characters): a tenant the operator can
// address is a tenant the application can name, and the other way round.
//
// A request without a non-empty Authorization or Cookie header is answered 401 at once,
// without calling the auth URL: there is nothing the application could accept. All of these
// answers use the API's error shape, {"error": {"code", "message"}}, and reveal nothing about
// which paths exist. An accepted request reaches the API with api.WithCaller(ctx,
// api.Caller{TenantID: t}) and, as defence in depth, X-Tenant-ID set to that same t, so even a
// handler that read the header would see the authenticated tenant. The API then scopes
// everything to t exactly as for an X-Tenant-ID of t (the api package documentation, and
// "Tenancy" in the README's "Subscriptions"): another tenant's objects are 404.
//
// The application's auth endpoint must decide on the credentials alone (the X-Forwarded-*
// headers are context for its logs), because answers are cached per credential: the key is
// the SHA-256 of the Authorization values, a NUL and the Cookie values, so credentials are
// never kept in memory as keys, and two callers share an entry only with identical
// credentials. Only definite answers are cached (a tenant, 401, 403), each for AuthCacheTTL
// from when it arrived, not extended by use (zero: no cache; a positive TTL must be at least
// 100ms); a revoked API key or session therefore keeps working for at most that long. The
// cache is golang-lru's expirable LRU: at most 10,000 entries, the least recently used
// dropped first when full, expired ones swept by the library's own goroutine, which cannot be
// stopped and so lives as long as the process. Its lock is never held during a call.
//
// Concurrent requests with the same credentials make one call between them
// (golang.org/x/sync/singleflight, keyed by the same hash): the first one that misses the
// cache calls, the others wait for its answer, which then fills the cache. Without that, a
// page that loads ten resources at once, or a client's burst as its entry expires, would be
// as many calls. The call carries the first caller's X-Forwarded-* and -Method, -Uri, another
// reason the answer must depend on the credentials alone. A waiting caller that goes away
// stops waiting, but the call does not stop with it, nor with the first caller: it runs until
// it is answered or the auth timeout ends it, for the others and for the cache. With
// AuthCacheTTL zero nothing is kept after a call, but callers arriving during one still share
// it.
//
// The auth call fails closed: an auth URL that cannot be reached is a 503, never a pass, and
// its timeout (AuthClient's, DefaultAuthTimeout by default) bounds how long a caller waits.
//
// # Proxying
//
// Everything else goes to the upstream through httputil.ReverseProxy, unchanged: method,
// path, query, body and headers (hop-by-hop headers aside, as HTTP requires), the caller's
// Authorization, Cookie and X-Tenant-ID included; the application may well have its own use
// for them, and it does its own authentication. Choices:
//
//   - Host: the upstream gets the Host the client asked for, not the upstream URL's host, so
//     virtual hosts, absolute URLs, cookie domains and CSRF Origin checks work as they did
//     without the relay. X-Forwarded-Host carries it too.
//   - X-Forwarded-*: the relay acts as one more hop. It appends the client's address to
//     X-Forwarded-For, and keeps X-Forwarded-Proto, X-Forwarded-Host and Forwarded as they
//     arrived, setting the first two from the request only when absent. The usual pod sits
//     behind an ingress that terminates TLS and sets these headers; overwriting them would
//     tell the application "http" and break its HTTPS redirects and secure cookies. The relay
//     adds no trust of its own: the application should trust these headers as far as it did
//     before, with the loopback hop (the relay) added to its trusted proxies.
//   - Streaming: FlushInterval -1 flushes every write to the client at once (server-sent
//     events, long polls, slow downloads); the transport adds no compression and has no
//     response timeout, so a long poll is not cut.
//   - WebSocket and other Upgrade requests are handled by ReverseProxy: after the 101 the
//     relay copies bytes both ways until either side closes.
//   - An upstream that cannot be reached (refused, reset, no answer) is a plain-text 502 and a
//     warning in the log with method and path (never the query). The application's paths are
//     not the relay's API, so this answer is not in the API's JSON shape.
//
// # Isolation and timeouts
//
// Each request is independent: the API path shares no lock, connection pool or queue with the
// proxied path (the auth client and the upstream transport are separate), so a slow or hung
// upstream never delays /webhooks. The public server cannot have a ReadTimeout or
// WriteTimeout (streams and WebSockets may last hours); only ReadHeaderTimeout and
// IdleTimeout belong there. Instead, a request under the prefix sets read and write deadlines
// 30 seconds ahead through http.ResponseController when it starts; they also cover the write
// of its buffered answer after the handler returns, and net/http clears them once the answer
// is out, so a proxied request that follows on the same keep-alive connection has none.
//
// # Not here
//
// Request metrics and rate limiting are not part of this package.
package proxy
