package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/referralloop/outbox-relay/internal/defaults"
	"github.com/referralloop/outbox-relay/relay/api"
)

// maxCacheEntries bounds the auth cache: at most this many credentials are remembered, the
// least recently used forgotten first. An entry is a 32-byte hash, a tenant ID of at most 255
// bytes and the library's list and map bookkeeping, well under 1 KiB, so the bound is a few
// MiB at worst, whatever a flood of made-up credentials does. It is far above the number of
// distinct credentials that one relay sees within a TTL of seconds.
const maxCacheEntries = 10_000

// minAuthCacheTTL is the shortest positive AuthCacheTTL (see defaults.MinAuthCacheTTL).
const minAuthCacheTTL = defaults.MinAuthCacheTTL

// userAgent identifies the relay's forward-auth calls in the application's logs.
const userAgent = "outbox-relay (forward-auth)"

// outcome is what forward auth decided. The zero value denies, so a verdict nobody filled in
// fails closed.
type outcome int

const (
	outcomeDenied      outcome = iota // 401 for the caller
	outcomeAllowed                    // the request runs as verdict.tenant
	outcomeUnavailable                // 503: the auth URL could not be asked
)

// verdict is forward auth's answer for one request.
type verdict struct {
	outcome outcome
	tenant  string // set when outcome is outcomeAllowed
}

// forwardAuth asks the application's auth URL who a caller is.
type forwardAuth struct {
	url    *url.URL
	client *http.Client
	cache  *expirable.LRU[[sha256.Size]byte, verdict] // nil when AuthCacheTTL is zero
	calls  singleflight.Group                         // in-flight calls by credential key
	log    zerolog.Logger
}

func newForwardAuth(cfg Config) (*forwardAuth, error) {
	if cfg.AuthURL == "" {
		return nil, errors.New("proxy: Config.AuthURL is required")
	}
	u, err := url.Parse(cfg.AuthURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := "(unparsable)"
		if err == nil {
			shown = u.Redacted()
		}
		return nil, fmt.Errorf("proxy: Config.AuthURL %s is not an absolute http(s) URL", shown)
	}
	if cfg.AuthCacheTTL < 0 {
		return nil, fmt.Errorf("proxy: Config.AuthCacheTTL must not be negative, got %s", cfg.AuthCacheTTL)
	}
	if cfg.AuthCacheTTL > 0 && cfg.AuthCacheTTL < minAuthCacheTTL {
		return nil, fmt.Errorf("proxy: Config.AuthCacheTTL must be zero or at least %s, got %s", minAuthCacheTTL, cfg.AuthCacheTTL)
	}
	var client http.Client
	if cfg.AuthClient != nil {
		client = *cfg.AuthClient
	} else {
		client = http.Client{Transport: newAuthTransport()}
	}
	if client.Timeout == 0 {
		client.Timeout = DefaultAuthTimeout
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client.Jar = nil
	a := &forwardAuth{url: u, client: &client, log: cfg.Logger}
	if cfg.AuthCacheTTL > 0 {
		// The library gives an entry exactly the TTL from when it was added (reading it does
		// not extend it) and has no way to stop its sweeping goroutine: there is one per New
		// for the life of the process.
		a.cache = expirable.NewLRU[[sha256.Size]byte, verdict](maxCacheEntries, nil, cfg.AuthCacheTTL)
	}
	return a, nil
}

func newAuthTransport() *http.Transport {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	// Every request under the prefix makes a call to this one host when the cache misses.
	t.MaxIdleConnsPerHost = 64
	return t
}

// check answers who the caller of r is: from the cache, from a call already under way for
// the same credentials, or from a call of its own. Concurrent misses for one credential make
// one call and share its answer, which is as good for all of them since the auth URL decides
// on the credentials alone; without that, a burst of requests from one client as its entry
// expires, or a page loading many resources, would be as many calls.
func (a *forwardAuth) check(r *http.Request) verdict {
	key := credentialKey(r.Header)
	if a.cache != nil {
		if v, ok := a.cache.Get(key); ok {
			return v
		}
	}
	ch := a.calls.DoChan(string(key[:]), func() (any, error) {
		if a.cache != nil {
			// The previous call for these credentials may have stored its answer between
			// the miss above and now.
			if v, ok := a.cache.Get(key); ok {
				return v, nil
			}
		}
		v, cacheable := a.ask(r)
		if cacheable && a.cache != nil {
			a.cache.Add(key, v)
		}
		return v, nil
	})
	select {
	case res := <-ch:
		return res.Val.(verdict)
	case <-r.Context().Done():
		// The call goes on for the others waiting for it, and fills the cache.
		a.log.Debug().Msg("forward auth abandoned by the client")
		return verdict{outcome: outcomeUnavailable}
	}
}

// credentialKey is the cache key of a request's credentials: SHA-256 of its Authorization
// values, a NUL, and its Cookie values (several values of one header joined by "\n", which no
// header value contains). The credentials themselves are never kept.
func credentialKey(h http.Header) [sha256.Size]byte {
	s := sha256.New()
	_, _ = io.WriteString(s, strings.Join(h.Values("Authorization"), "\n"))
	_, _ = s.Write([]byte{0})
	_, _ = io.WriteString(s, strings.Join(h.Values("Cookie"), "\n"))
	var key [sha256.Size]byte
	s.Sum(key[:0])
	return key
}

// ask calls the auth URL with r's credentials. cacheable is true for the answers that may be
// reused for the same credentials: a tenant, 401 and 403. Everything else (a 2xx without a
// usable tenant, another status, no answer at all) is decided anew every time.
//
// The call does not end when r's client goes away: other callers with the same credentials
// may be waiting for it. The client's Timeout bounds it instead.
func (a *forwardAuth) ask(r *http.Request) (v verdict, cacheable bool) {
	ctx := context.WithoutCancel(r.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url.String(), nil)
	if err != nil {
		// Not expected: the URL was parsed in New.
		a.log.Error().Err(err).Msg("building the forward-auth request")
		return verdict{outcome: outcomeUnavailable}, false
	}
	// Only the credentials and where the request came from; never its body or other headers.
	for _, k := range []string{"Authorization", "Cookie"} {
		for _, val := range r.Header.Values(k) {
			req.Header.Add(k, val)
		}
	}
	setForwarded(req.Header, r)
	req.Header.Set("X-Forwarded-Method", r.Method)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("User-Agent", userAgent)

	resp, err := a.client.Do(req)
	if err != nil {
		a.log.Warn().Err(err).Msg("calling the forward-auth URL")
		return verdict{outcome: outcomeUnavailable}, false
	}
	defer func() {
		// A little draining lets the connection be reused; a large body is not worth it.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
	}()

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		values := resp.Header.Values("X-Tenant-ID")
		if len(values) != 1 {
			a.log.Warn().Int("status", resp.StatusCode).Int("tenant_headers", len(values)).
				Msg("forward auth answered 2xx without exactly one X-Tenant-ID; refusing the caller")
			return verdict{}, false
		}
		// The API's own rule, the one X-Tenant-ID is held to: a tenant the operator can
		// address is a tenant the application can name, and nothing else.
		if err := api.ValidateTenantID(values[0]); err != nil {
			a.log.Warn().Int("status", resp.StatusCode).Str("problem", err.Error()).
				Msg("forward auth answered an unusable X-Tenant-ID; refusing the caller")
			return verdict{}, false
		}
		return verdict{outcome: outcomeAllowed, tenant: values[0]}, true
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return verdict{}, true
	default:
		a.log.Warn().Int("status", resp.StatusCode).Msg("forward auth answered neither 2xx, 401 nor 403; refusing the caller")
		return verdict{}, false
	}
}
