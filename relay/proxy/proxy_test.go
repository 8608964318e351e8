package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/proxy"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	up, _ := url.Parse("http://127.0.0.1:3000")
	valid := func() proxy.Config {
		return proxy.Config{Upstream: up, AuthURL: "http://127.0.0.1:3000/auth", API: echoAPI()}
	}
	_, err := proxy.New(valid())
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		change func(*proxy.Config)
		want   string
	}{
		"NoUpstream":        {func(c *proxy.Config) { c.Upstream = nil }, "Config.Upstream is required"},
		"RelativeUpstream":  {func(c *proxy.Config) { c.Upstream = &url.URL{Path: "/app"} }, "not an absolute http(s) URL"},
		"FTPUpstream":       {func(c *proxy.Config) { c.Upstream = &url.URL{Scheme: "ftp", Host: "x"} }, "not an absolute http(s) URL"},
		"PrefixSlash":       {func(c *proxy.Config) { c.Prefix = "/" }, "Config.Prefix"},
		"PrefixTrailing":    {func(c *proxy.Config) { c.Prefix = "/webhooks/" }, "Config.Prefix"},
		"PrefixRelative":    {func(c *proxy.Config) { c.Prefix = "webhooks" }, "Config.Prefix"},
		"PrefixUnclean":     {func(c *proxy.Config) { c.Prefix = "/a/../webhooks" }, "Config.Prefix"},
		"NoAPI":             {func(c *proxy.Config) { c.API = nil }, "Config.API is required"},
		"NoAuthURL":         {func(c *proxy.Config) { c.AuthURL = "" }, "Config.AuthURL is required"},
		"RelativeAuthURL":   {func(c *proxy.Config) { c.AuthURL = "/auth" }, "Config.AuthURL"},
		"NegativeCacheTTL":  {func(c *proxy.Config) { c.AuthCacheTTL = -time.Second }, "Config.AuthCacheTTL"},
		"TinyCacheTTL":      {func(c *proxy.Config) { c.AuthCacheTTL = 50 * time.Nanosecond }, "Config.AuthCacheTTL must be zero or at least 100ms"},
		"AuthURLWithSecret": {func(c *proxy.Config) { c.AuthURL = "ftp://user:hunter2@host/auth" }, "Config.AuthURL"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			_, err := proxy.New(cfg)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestPrefixRouting(t *testing.T) {
	t.Parallel()
	type want struct {
		to      string // "api", "upstream" or "404"
		path    string // the path the API saw (api), or the request URI the upstream saw
		rawPath string // the API's RawPath, when it has one
		query   string // the API's query
	}
	for _, tc := range []struct {
		prefix string
		path   string
		want   want
	}{
		{"", "/webhooks", want{to: "api", path: "/"}},
		{"", "/webhooks/", want{to: "api", path: "/"}},
		{"", "/webhooks/v1/subscriptions", want{to: "api", path: "/v1/subscriptions"}},
		{"", "/webhooks/v1/subscriptions/sub_1/secret", want{to: "api", path: "/v1/subscriptions/sub_1/secret"}},
		{"", "/webhooks/v1/subscriptions?limit=5&cursor=abc", want{to: "api", path: "/v1/subscriptions", query: "limit=5&cursor=abc"}},
		{"", "/webhooks/v1/subscriptions/sub%2Fx", want{to: "api", path: "/v1/subscriptions/sub/x", rawPath: "/v1/subscriptions/sub%2Fx"}},
		// Matching is on the decoded path, as net/http's ServeMux does.
		{"", "/webhooks%2Fv1", want{to: "api", path: "/v1"}},
		{"", "/webhooksfoo", want{to: "upstream", path: "/webhooksfoo"}},
		{"", "/webhooksfoo/v1/subscriptions", want{to: "upstream", path: "/webhooksfoo/v1/subscriptions"}},
		{"", "/webhooks-v1/subscriptions", want{to: "upstream", path: "/webhooks-v1/subscriptions"}},
		{"", "/webhook", want{to: "upstream", path: "/webhook"}},
		{"", "/WEBHOOKS/v1", want{to: "upstream", path: "/WEBHOOKS/v1"}},
		{"", "/", want{to: "upstream", path: "/"}},
		{"", "/app/webhooks/v1", want{to: "upstream", path: "/app/webhooks/v1"}},
		{"", "/?q=/webhooks/v1", want{to: "upstream", path: "/?q=/webhooks/v1"}},
		{"", "/webhooks/v1/../../admin", want{to: "404"}},
		{"", "/webhooks/./v1/subscriptions", want{to: "404"}},
		{"", "/webhooks//v1/subscriptions", want{to: "404"}},
		{"", "/webhooks/v1/subscriptions/", want{to: "404"}},
		{"/api/hooks", "/api/hooks/v1/subscriptions", want{to: "api", path: "/v1/subscriptions"}},
		{"/api/hooks", "/api/hooks", want{to: "api", path: "/"}},
		{"/api/hooks", "/api/hooksx", want{to: "upstream", path: "/api/hooksx"}},
		{"/api/hooks", "/api", want{to: "upstream", path: "/api"}},
		{"/api/hooks", "/webhooks/v1/subscriptions", want{to: "upstream", path: "/webhooks/v1/subscriptions"}},
	} {
		t.Run(tc.prefix+tc.path, func(t *testing.T) {
			t.Parallel()
			b := setup(t, env{configure: func(c *proxy.Config) { c.Prefix = tc.prefix }})
			r := b.asKey(t, "key_A", http.MethodGet, tc.path)
			switch tc.want.to {
			case "api":
				e := r.apiEcho(t)
				require.Equal(t, tc.want.path, e.Path)
				require.Equal(t, tc.want.rawPath, e.RawPath)
				require.Equal(t, tc.want.query, e.Query)
				require.Equal(t, "tenant_a", e.TenantID)
				require.EqualValues(t, 1, b.auth.calls.Load())
			case "upstream":
				e := r.upstreamEcho(t)
				require.Equal(t, tc.want.path, e.RequestURI)
				require.Zero(t, b.auth.calls.Load(), "the upstream path never asks forward auth")
			case "404":
				require.Equal(t, http.StatusNotFound, r.status, "body: %s", r.body)
				require.Equal(t, "not_found", r.errorCode(t))
			}
		})
	}
}

func TestForwardAuth(t *testing.T) {
	t.Parallel()

	t.Run("TenantFromAuthAnswer", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		for key, tenant := range map[string]string{"key_A": "tenant_a", "key_B": "tenant_b", "max_tenant": strings.Repeat("t", 255)} {
			e := b.asKey(t, key, http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t)
			require.Equal(t, apiEcho{
				HasCaller: true, TenantID: tenant, Operator: false,
				Method: http.MethodGet, Path: "/v1/subscriptions", Header: tenant,
			}, e)
		}
	})

	t.Run("TenantRuleIsTheAPIs", func(t *testing.T) {
		t.Parallel()
		// The auth URL names, for "Bearer <i>", the i-th of these tenants; the proxy must
		// accept exactly those api.ValidateTenantID accepts for the X-Tenant-ID header.
		tenants := []string{
			"tenant_a",
			"wl 42",
			"a\u00a0b",                 // no-break space: not printable, not a control character
			"\u0645\u06cc\u200c\u062e", // zero-width non-joiner, ordinary in Persian
			strings.Repeat("é", 127) + "x",
			strings.Repeat("é", 128), // 256 bytes
			"caf\xe9",                // not UTF-8
			"a\u0085b",               // C1 control
			// C0 controls and DEL never reach the rule: Go's client refuses the whole answer
			// as malformed, a 503 like any answer that cannot be read.
		}
		auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i, err := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			if err != nil || i < 0 || i >= len(tenants) {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header()["X-Tenant-Id"] = []string{tenants[i]}
		}))
		t.Cleanup(auth.Close)
		b := setup(t, env{configure: func(c *proxy.Config) { c.AuthURL = auth.URL }})
		for i, tenant := range tenants {
			r := b.asKey(t, strconv.Itoa(i), http.MethodGet, "/webhooks/v1/subscriptions")
			if api.ValidateTenantID(tenant) != nil {
				require.Equal(t, http.StatusUnauthorized, r.status, "%q: %s", tenant, r.body)
				continue
			}
			require.Equal(t, tenant, r.apiEcho(t).TenantID, "%q", tenant)
		}
	})

	t.Run("SessionCookie", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		r := b.do(t, http.MethodGet, "/webhooks/v1/subscriptions", http.Header{"Cookie": {"session=sess_A"}}, "")
		require.Equal(t, "tenant_a", r.apiEcho(t).TenantID)
	})

	t.Run("CallerTenantHeaderIgnored", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		for _, sent := range [][]string{{"tenant_b"}, {""}, {"tenant_b", "tenant_c"}} {
			r := b.do(t, http.MethodGet, "/webhooks/v1/subscriptions",
				http.Header{"Authorization": {"Bearer key_A"}, "X-Tenant-Id": sent}, "")
			e := r.apiEcho(t)
			require.Equal(t, "tenant_a", e.TenantID, "sent X-Tenant-ID %q", sent)
			require.Equal(t, "tenant_a", e.Header)
			require.False(t, e.Operator)
			authReq, _ := b.auth.lastRequest()
			require.Empty(t, authReq.Header.Values("X-Tenant-ID"), "the auth URL never sees the caller's X-Tenant-ID")
		}
	})

	t.Run("AuthRequestCarriesOnlyCredentialsAndContext", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		r := b.do(t, http.MethodPost, "/webhooks/v1/subscriptions?limit=5", http.Header{
			"Authorization":   {"Bearer key_A"},
			"Cookie":          {"a=1", "b=2"},
			"Content-Type":    {"application/json"},
			"X-Custom":        {"private"},
			"X-Tenant-Id":     {"tenant_b"},
			"X-Forwarded-For": {"203.0.113.9"},
			"Idempotency-Key": {"k1"},
		}, `{"target_url": "https://example.com"}`)
		require.Equal(t, http.MethodPost, r.apiEcho(t).Method)

		req, body := b.auth.lastRequest()
		require.Equal(t, http.MethodGet, req.Method)
		require.Equal(t, "/auth", req.URL.Path)
		require.Empty(t, body, "never the body")
		require.Equal(t, []string{"Bearer key_A"}, req.Header.Values("Authorization"))
		require.Equal(t, []string{"a=1", "b=2"}, req.Header.Values("Cookie"))
		require.Equal(t, "203.0.113.9, 127.0.0.1", req.Header.Get("X-Forwarded-For"))
		require.Equal(t, "http", req.Header.Get("X-Forwarded-Proto"))
		require.Equal(t, strings.TrimPrefix(b.srv.URL, "http://"), req.Header.Get("X-Forwarded-Host"))
		require.Equal(t, http.MethodPost, req.Header.Get("X-Forwarded-Method"))
		require.Equal(t, "/webhooks/v1/subscriptions?limit=5", req.Header.Get("X-Forwarded-Uri"))
		allowed := []string{
			"Authorization", "Cookie", "User-Agent", "Accept-Encoding",
			"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Method", "X-Forwarded-Uri",
		}
		for k := range req.Header {
			require.Contains(t, allowed, k, "the auth request carries %s", k)
		}
	})

	t.Run("RefusedAnswersAre401", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		for _, key := range []string{
			"unknown",     // 401
			"forbidden",   // 403, even with a tenant
			"broken",      // 500, even with a tenant
			"not_found",   // 404
			"redirect",    // 302 to a login page, not followed
			"no_tenant",   // 2xx without X-Tenant-ID
			"empty",       // 2xx with an empty X-Tenant-ID
			"two_tenants", // 2xx with two
			"long_tenant", // 2xx with 256 bytes
		} {
			r := b.asKey(t, key, http.MethodGet, "/webhooks/v1/subscriptions")
			require.Equal(t, http.StatusUnauthorized, r.status, "%s: %s", key, r.body)
			require.Equal(t, "unauthorized", r.errorCode(t), key)
		}
		require.EqualValues(t, 9, b.auth.calls.Load(), "the redirect is not followed")
		log := b.log.String()
		require.Contains(t, log, "without exactly one X-Tenant-ID")
		require.Contains(t, log, "unusable X-Tenant-ID")
		require.Contains(t, log, "neither 2xx, 401 nor 403")
		require.NotContains(t, log, "Bearer", "credentials never reach the log")
	})

	t.Run("NoCredentialsNoCall", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		for _, h := range []http.Header{
			{},
			{"Authorization": {""}, "Cookie": {"  "}},
			{"X-Tenant-Id": {"tenant_a"}},
		} {
			r := b.do(t, http.MethodGet, "/webhooks/v1/subscriptions", h, "")
			require.Equal(t, http.StatusUnauthorized, r.status, "body: %s", r.body)
			require.Equal(t, "unauthorized", r.errorCode(t))
		}
		require.Zero(t, b.auth.calls.Load())
	})

	t.Run("AuthTimeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{configure: func(c *proxy.Config) {
			c.AuthClient = &http.Client{Timeout: 200 * time.Millisecond}
		}})
		start := time.Now()
		r := b.asKey(t, "slow", http.MethodGet, "/webhooks/v1/subscriptions")
		require.Equal(t, http.StatusServiceUnavailable, r.status, "body: %s", r.body)
		require.Equal(t, "auth_unavailable", r.errorCode(t))
		require.Less(t, time.Since(start), 1500*time.Millisecond)
	})

	t.Run("AuthClientJarNotUsed", func(t *testing.T) {
		t.Parallel()
		jar := &recordingJar{}
		b := setup(t, env{configure: func(c *proxy.Config) { c.AuthClient = &http.Client{Jar: jar} }})
		require.Equal(t, "tenant_a", b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t).TenantID)
		require.False(t, jar.used, "a jar would carry one caller's cookies into another's auth call")
	})
}

// recordingJar is a cookie jar that notes whether anyone used it.
type recordingJar struct{ used bool }

func (j *recordingJar) SetCookies(*url.URL, []*http.Cookie) { j.used = true }
func (j *recordingJar) Cookies(*url.URL) []*http.Cookie     { j.used = true; return nil }

func TestAuthCache(t *testing.T) {
	t.Parallel()
	withTTL := func(ttl time.Duration) env {
		return env{configure: func(c *proxy.Config) { c.AuthCacheTTL = ttl }}
	}

	t.Run("HitWithinTTL", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTTL(time.Minute))
		for range 5 {
			require.Equal(t, "tenant_a", b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t).TenantID)
		}
		require.EqualValues(t, 1, b.auth.calls.Load())
	})

	t.Run("MissAfterTTL", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTTL(100*time.Millisecond))
		b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t)
		require.EqualValues(t, 1, b.auth.calls.Load())
		time.Sleep(150 * time.Millisecond)
		b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t)
		require.EqualValues(t, 2, b.auth.calls.Load())
	})

	t.Run("DifferentCredentialsDoNotShare", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTTL(time.Minute))
		cases := []struct {
			header http.Header
			tenant string // "" for 401
		}{
			{http.Header{"Authorization": {"Bearer key_A"}}, "tenant_a"},
			{http.Header{"Authorization": {"Bearer key_B"}}, "tenant_b"},
			{http.Header{"Authorization": {"Bearer key_C"}}, ""},
			{http.Header{"Cookie": {"session=sess_A"}}, "tenant_a"},
			{http.Header{"Cookie": {"session=sess_B"}}, "tenant_b"},
			// The same strings on the other side of the separator are other credentials.
			{http.Header{"Cookie": {"Bearer key_A"}}, ""},
		}
		for round := range 2 {
			for _, c := range cases {
				r := b.do(t, http.MethodGet, "/webhooks/v1/subscriptions", c.header, "")
				if c.tenant == "" {
					require.Equal(t, http.StatusUnauthorized, r.status, "round %d %v: %s", round, c.header, r.body)
					continue
				}
				require.Equal(t, c.tenant, r.apiEcho(t).TenantID, "round %d %v", round, c.header)
			}
			require.EqualValues(t, len(cases), b.auth.calls.Load(), "round %d: one call per credential", round)
		}
	})

	t.Run("OnlyDefiniteAnswersCached", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTTL(time.Minute))
		for _, tc := range []struct {
			key   string
			calls int64 // for two requests
		}{
			{"unknown", 1},   // 401: cached
			{"forbidden", 1}, // 403: cached
			{"broken", 2},    // 500: asked again
			{"no_tenant", 2}, // 2xx without tenant: asked again
			{"redirect", 2},  // 302: asked again
		} {
			before := b.auth.calls.Load()
			for range 2 {
				r := b.asKey(t, tc.key, http.MethodGet, "/webhooks/v1/subscriptions")
				require.Equal(t, http.StatusUnauthorized, r.status, "%s: %s", tc.key, r.body)
			}
			require.Equal(t, tc.calls, b.auth.calls.Load()-before, tc.key)
		}
	})

	t.Run("OutageNotCached", func(t *testing.T) {
		t.Parallel()
		// The auth URL drops the connection for the first request and answers the second.
		auth := &fakeAuth{}
		var down atomic.Bool
		down.Store(true)
		authSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					_ = conn.Close()
				}
				return
			}
			auth.ServeHTTP(w, r)
		}))
		t.Cleanup(authSrv.Close)
		b := setup(t, env{configure: func(c *proxy.Config) {
			c.AuthCacheTTL = time.Minute
			c.AuthURL = authSrv.URL + "/auth"
		}})
		r := b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions")
		require.Equal(t, http.StatusServiceUnavailable, r.status, "body: %s", r.body)
		down.Store(false)
		require.Equal(t, "tenant_a", b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t).TenantID)
		require.EqualValues(t, 1, auth.calls.Load())
	})

	t.Run("NoCacheWhenTTLZero", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTTL(0))
		for range 3 {
			b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t)
		}
		require.EqualValues(t, 3, b.auth.calls.Load())
	})
}

// heldAuth is a forward-auth endpoint that answers "Bearer <c>" with the tenant "tenant_<c>"
// after holding the answer for hold, so that concurrent requests overlap in the proxy, and
// counts its calls per credential.
type heldAuth struct {
	hold    time.Duration
	arrived chan struct{} // told of a call as it arrives, when it has room; nil for none

	mu    sync.Mutex
	calls map[string]int
}

func (h *heldAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	h.mu.Lock()
	if h.calls == nil {
		h.calls = map[string]int{}
	}
	h.calls[cred]++
	h.mu.Unlock()
	select {
	case h.arrived <- struct{}{}:
	default: // nobody is waiting for more than the first
	}
	select {
	case <-time.After(h.hold):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("X-Tenant-ID", "tenant_"+cred)
}

// counts answers the calls so far per credential.
func (h *heldAuth) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.calls {
		out[k] = v
	}
	return out
}

// burst sends n requests under the prefix at once, the i-th with "Bearer creds[i%len(creds)]",
// and requires each to run as that credential's tenant.
func burst(t *testing.T, b *bundle, n int, creds ...string) {
	t.Helper()
	type result struct {
		cred, tenant string
		err          error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		cred := creds[i%len(creds)]
		wg.Go(func() {
			<-start
			res := result{cred: cred}
			defer func() { results <- res }()
			req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/webhooks/v1/subscriptions", nil)
			if err != nil {
				res.err = err
				return
			}
			req.Header.Set("Authorization", "Bearer "+cred)
			resp, err := b.client.Do(req)
			if err != nil {
				res.err = err
				return
			}
			defer resp.Body.Close()
			var e apiEcho
			if resp.StatusCode != http.StatusOK {
				res.err = fmt.Errorf("status %d", resp.StatusCode)
			} else {
				res.err = json.NewDecoder(resp.Body).Decode(&e)
			}
			res.tenant = e.TenantID
		})
	}
	close(start)
	wg.Wait()
	close(results)
	for res := range results {
		require.NoError(t, res.err, res.cred)
		require.Equal(t, "tenant_"+res.cred, res.tenant)
	}
}

// TestAuthCoalescing checks that concurrent requests with the same credentials make one
// forward-auth call between them, against a real auth server that holds its answers.
func TestAuthCoalescing(t *testing.T) {
	t.Parallel()
	// hold is long enough for 50 requests to reach the proxy while the first call is
	// under way, so that without coalescing nearly every one of them would call.
	const hold = 500 * time.Millisecond
	setupHeld := func(t *testing.T, ttl time.Duration, auth *heldAuth) *bundle {
		authSrv := httptest.NewServer(auth)
		t.Cleanup(authSrv.Close)
		return setup(t, env{configure: func(c *proxy.Config) {
			c.AuthURL = authSrv.URL
			c.AuthCacheTTL = ttl
		}})
	}

	t.Run("OneCredentialOneCall", func(t *testing.T) {
		t.Parallel()
		auth := &heldAuth{hold: hold}
		b := setupHeld(t, time.Minute, auth)
		burst(t, b, 50, "A")
		require.Equal(t, map[string]int{"A": 1}, auth.counts())
	})

	t.Run("OneCallPerCredential", func(t *testing.T) {
		t.Parallel()
		auth := &heldAuth{hold: hold}
		b := setupHeld(t, time.Minute, auth)
		burst(t, b, 50, "A", "B", "C", "D", "E")
		require.Equal(t, map[string]int{"A": 1, "B": 1, "C": 1, "D": 1, "E": 1}, auth.counts())
	})

	t.Run("NewCallAfterTTL", func(t *testing.T) {
		t.Parallel()
		// The cache library reads the wall clock, so the TTL is short and real.
		const ttl = time.Second
		auth := &heldAuth{hold: hold}
		b := setupHeld(t, ttl, auth)
		burst(t, b, 50, "A")
		burst(t, b, 50, "A") // within the TTL: from the cache
		require.Equal(t, map[string]int{"A": 1}, auth.counts())
		time.Sleep(ttl + 100*time.Millisecond)
		burst(t, b, 50, "A")
		require.Equal(t, map[string]int{"A": 2}, auth.counts())
	})

	t.Run("WithoutCache", func(t *testing.T) {
		t.Parallel()
		// TTL zero remembers nothing after a call, but callers that arrive during one share it.
		auth := &heldAuth{hold: hold}
		b := setupHeld(t, 0, auth)
		burst(t, b, 20, "A")
		require.Equal(t, map[string]int{"A": 1}, auth.counts())
	})

	t.Run("LeavingCallerDoesNotFailOthers", func(t *testing.T) {
		t.Parallel()
		// The first caller starts the call and hangs up during it; those that joined the
		// call still get its answer.
		auth := &heldAuth{hold: hold, arrived: make(chan struct{}, 1)}
		b := setupHeld(t, time.Minute, auth)
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/webhooks/v1/subscriptions", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer A")
		firstDone := make(chan error, 1)
		go func() {
			resp, err := b.client.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			firstDone <- err
		}()
		<-auth.arrived
		time.AfterFunc(100*time.Millisecond, cancel)
		burst(t, b, 10, "A")
		require.ErrorIs(t, <-firstDone, context.Canceled)
		require.Equal(t, map[string]int{"A": 1}, auth.counts())
	})
}

func TestUpstreamPassThrough(t *testing.T) {
	t.Parallel()

	t.Run("Request", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		body := make([]byte, 0, 512)
		for i := range 512 {
			body = append(body, byte(i))
		}
		req, err := http.NewRequest(http.MethodPut, b.srv.URL+"/app/items/42?x=1&y=%20z&x=2&empty=", strings.NewReader(string(body)))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Authorization", "Bearer app-token")
		req.Header.Set("Cookie", "session=abc")
		req.Header.Set("X-Tenant-ID", "tenant_b") // the application's own business
		req.Header.Add("X-Custom", "a")
		req.Header.Add("X-Custom", "b")
		req.Header.Set("User-Agent", "test-client/1.0")
		e := b.send(t, req).upstreamEcho(t)

		host := strings.TrimPrefix(b.srv.URL, "http://")
		require.Equal(t, http.MethodPut, e.Method)
		require.Equal(t, "/app/items/42?x=1&y=%20z&x=2&empty=", e.RequestURI)
		require.Equal(t, body, e.Body)
		require.Equal(t, host, e.Host, "the original Host")
		require.Equal(t, "application/octet-stream", e.Header.Get("Content-Type"))
		require.Equal(t, "Bearer app-token", e.Header.Get("Authorization"))
		require.Equal(t, "session=abc", e.Header.Get("Cookie"))
		require.Equal(t, "tenant_b", e.Header.Get("X-Tenant-ID"))
		require.Equal(t, []string{"a", "b"}, e.Header.Values("X-Custom"))
		require.Equal(t, "test-client/1.0", e.Header.Get("User-Agent"))
		require.Equal(t, "512", e.Header.Get("Content-Length"))
		require.Equal(t, "127.0.0.1", e.Header.Get("X-Forwarded-For"))
		require.Equal(t, "http", e.Header.Get("X-Forwarded-Proto"))
		require.Equal(t, host, e.Header.Get("X-Forwarded-Host"))
		require.Empty(t, e.Header.Values("Accept-Encoding"), "the proxy adds no compression")
		require.Zero(t, b.auth.calls.Load())
	})

	t.Run("HostAndForwardedFromIngress", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{})
		e := b.do(t, http.MethodGet, "/", http.Header{
			"Host":              {"app.example.com"},
			"X-Forwarded-For":   {"203.0.113.7, 10.0.0.1"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"www.example.com"},
			"Forwarded":         {"for=203.0.113.7;proto=https"},
		}, "").upstreamEcho(t)
		require.Equal(t, "app.example.com", e.Host)
		require.Equal(t, "203.0.113.7, 10.0.0.1, 127.0.0.1", e.Header.Get("X-Forwarded-For"))
		require.Equal(t, "https", e.Header.Get("X-Forwarded-Proto"))
		require.Equal(t, "www.example.com", e.Header.Get("X-Forwarded-Host"))
		require.Equal(t, "for=203.0.113.7;proto=https", e.Header.Get("Forwarded"))

		e = b.do(t, http.MethodGet, "/", http.Header{"Host": {"app.example.com"}}, "").upstreamEcho(t)
		require.Equal(t, "app.example.com", e.Header.Get("X-Forwarded-Host"))
	})

	t.Run("Response", func(t *testing.T) {
		t.Parallel()
		body := "\x00\x01 teapot body \xff"
		b := setup(t, env{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-tea")
			w.Header().Add("Set-Cookie", "a=1; Path=/")
			w.Header().Add("Set-Cookie", "b=2; Path=/")
			w.Header().Set("Content-Encoding", "identity")
			w.Header().Set("X-App", "yes")
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte(body))
		})})
		r := b.do(t, http.MethodGet, "/tea", nil, "")
		require.Equal(t, http.StatusTeapot, r.status)
		require.Equal(t, body, string(r.body))
		require.Equal(t, "application/x-tea", r.header.Get("Content-Type"))
		require.Equal(t, []string{"a=1; Path=/", "b=2; Path=/"}, r.header.Values("Set-Cookie"))
		require.Equal(t, "yes", r.header.Get("X-App"))
	})

	t.Run("UpstreamWithBasePath", func(t *testing.T) {
		t.Parallel()
		b := setup(t, env{configure: func(c *proxy.Config) { c.Upstream.Path = "/base" }})
		e := b.do(t, http.MethodGet, "/items?a=1", nil, "").upstreamEcho(t)
		require.Equal(t, "/base/items?a=1", e.RequestURI)
	})

}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	t.Run("AuthDown", func(t *testing.T) {
		t.Parallel()
		down := droppingURL(t)
		b := setup(t, env{configure: func(c *proxy.Config) { c.AuthURL = down + "/auth" }})
		r := b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions")
		require.Equal(t, http.StatusServiceUnavailable, r.status, "body: %s", r.body)
		require.Equal(t, "auth_unavailable", r.errorCode(t))
		require.Contains(t, b.log.String(), "calling the forward-auth URL")
	})

	t.Run("UpstreamDown", func(t *testing.T) {
		t.Parallel()
		down := droppingURL(t)
		b := setup(t, env{configure: func(c *proxy.Config) {
			u, _ := url.Parse(down)
			c.Upstream = u
		}})
		r := b.do(t, http.MethodGet, "/anything?token=secret-in-query", nil, "")
		require.Equal(t, http.StatusBadGateway, r.status)
		require.True(t, strings.HasPrefix(r.header.Get("Content-Type"), "text/plain"))
		require.Contains(t, string(r.body), "bad gateway")
		log := b.log.String()
		require.Contains(t, log, "proxying to upstream")
		require.Contains(t, log, `"path":"/anything"`)
		require.NotContains(t, log, "secret-in-query")

		// The API under the prefix does not depend on the upstream.
		require.Equal(t, "tenant_a", b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions").apiEcho(t).TenantID)
	})
}

func TestCustomTransport(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	b := setup(t, env{configure: func(c *proxy.Config) {
		c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls.Add(1)
			return http.DefaultTransport.RoundTrip(r)
		})
	}})
	b.do(t, http.MethodGet, "/x", nil, "").upstreamEcho(t)
	require.EqualValues(t, 1, calls.Load())
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The customer portal is served under the prefix's /console after the same forward auth,
// with the tenant as its caller and the path below /console; a browser that is refused gets
// a page, not JSON. Without a Console, /console is the API's like any other path.
func TestPortalBehindForwardAuth(t *testing.T) {
	b := setup(t, env{configure: func(c *proxy.Config) {
		c.Console = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			caller, _ := api.CallerFromContext(r.Context())
			w.Header().Set("X-Served-By", "console")
			_, _ = io.WriteString(w, caller.TenantID+" "+r.URL.Path)
		})
	}})
	sessA := http.Header{"Cookie": {"session=sess_A"}}
	for path, want := range map[string]string{
		"/webhooks/console":                   "tenant_a /",
		"/webhooks/console/":                  "tenant_a /",
		"/webhooks/console/subscriptions/x_1": "tenant_a /subscriptions/x_1",
	} {
		r := b.do(t, http.MethodGet, path, sessA, "")
		require.Equal(t, http.StatusOK, r.status, path)
		require.Equal(t, "console", r.header.Get("X-Served-By"), path)
		require.Equal(t, want, string(r.body), path)
	}
	require.Equal(t, "api", b.asKey(t, "key_A", http.MethodGet, "/webhooks/consoles").header.Get("X-Served-By"), "whole segments only")
	require.Equal(t, "upstream", b.do(t, http.MethodGet, "/console/", sessA, "").header.Get("X-Served-By"), "only under the prefix")

	for name, header := range map[string]http.Header{
		"NoCredentials":    nil,
		"UnknownSession":   {"Cookie": {"session=nobody"}},
		"AuthSaysNoTenant": {"Authorization": {"Bearer no_tenant"}},
	} {
		r := b.do(t, http.MethodGet, "/webhooks/console/", header, "")
		require.Equal(t, http.StatusUnauthorized, r.status, name)
		require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"), name)
		require.Contains(t, string(r.body), "<h1>Unauthorized</h1>", name)
		require.Contains(t, string(r.body), "Sign in to the application", name)
	}

	plain := setup(t, env{})
	require.Equal(t, "/console", plain.asKey(t, "key_A", http.MethodGet, "/webhooks/console").apiEcho(t).Path)
	require.Equal(t, "not_found", plain.asKey(t, "key_A", http.MethodGet, "/webhooks/console/").errorCode(t), "as any path with a trailing slash")
}
