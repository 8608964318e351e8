package proxy

import (
	"container/list"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/relay/api"
)

// maxCacheEntries bounds the auth cache: at most this many credentials are remembered, the
// oldest forgotten first. An entry is a hash, a tenant ID and list bookkeeping, so the bound
// is a few MiB at worst, whatever a flood of made-up credentials does.
const maxCacheEntries = 10_000

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
	cache  *authCache // nil when AuthCacheTTL is zero
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
		a.cache = newAuthCache(cfg.AuthCacheTTL, maxCacheEntries, time.Now)
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

// check answers who the caller of r is, from the cache or from the auth URL.
func (a *forwardAuth) check(r *http.Request) verdict {
	var key [sha256.Size]byte
	if a.cache != nil {
		key = credentialKey(r.Header)
		if v, ok := a.cache.get(key); ok {
			return v
		}
	}
	v, cacheable := a.ask(r)
	if cacheable && a.cache != nil {
		a.cache.put(key, v)
	}
	return v
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
func (a *forwardAuth) ask(r *http.Request) (v verdict, cacheable bool) {
	ctx := r.Context()
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
		if ctx.Err() != nil {
			a.log.Debug().Err(err).Msg("forward auth abandoned by the client")
		} else {
			a.log.Warn().Err(err).Msg("calling the forward-auth URL")
		}
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

// authCache remembers verdicts per credential key for ttl, at most max of them. Every entry
// lives exactly ttl from its insertion, so the insertion order kept in the list is also the
// expiry order: expired entries are always at the front, and so is the oldest one to evict.
// Safe for concurrent use; the lock is never held across I/O.
type authCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	order   *list.List // of *cacheEntry, oldest first
	entries map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	key     [sha256.Size]byte
	v       verdict
	expires time.Time
}

func newAuthCache(ttl time.Duration, maxEntries int, now func() time.Time) *authCache {
	return &authCache{
		ttl:     ttl,
		max:     maxEntries,
		now:     now,
		order:   list.New(),
		entries: make(map[[sha256.Size]byte]*list.Element),
	}
}

// get answers the verdict stored for key, if it has not expired.
func (c *authCache) get(key [sha256.Size]byte) (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return verdict{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.remove(el)
		return verdict{}, false
	}
	return e.v, true
}

// put stores v for key for ttl from now, replacing what key had, and makes room by dropping
// expired entries and then the oldest ones.
func (c *authCache) put(key [sha256.Size]byte, v verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for el := c.order.Front(); el != nil && !now.Before(el.Value.(*cacheEntry).expires); el = c.order.Front() {
		c.remove(el)
	}
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		e.v, e.expires = v, now.Add(c.ttl)
		c.order.MoveToBack(el)
		return
	}
	for len(c.entries) >= c.max {
		c.remove(c.order.Front())
	}
	c.entries[key] = c.order.PushBack(&cacheEntry{key: key, v: v, expires: now.Add(c.ttl)})
}

func (c *authCache) remove(el *list.Element) {
	c.order.Remove(el)
	delete(c.entries, el.Value.(*cacheEntry).key)
}

// len answers the number of entries, expired ones included.
func (c *authCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
