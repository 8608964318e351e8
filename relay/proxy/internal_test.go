package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStripPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, prefix, rest string
		ok                 bool
	}{
		{"/webhooks", "/webhooks", "/", true},
		{"/webhooks/", "/webhooks", "/", true},
		{"/webhooks/v1/subscriptions", "/webhooks", "/v1/subscriptions", true},
		{"/webhooks//x", "/webhooks", "//x", true},
		{"/webhooksfoo", "/webhooks", "", false},
		{"/webhook", "/webhooks", "", false},
		{"/Webhooks/v1", "/webhooks", "", false},
		{"", "/webhooks", "", false},
		{"/", "/webhooks", "", false},
		{"/x/webhooks/v1", "/webhooks", "", false},
		{"/a/b/c", "/a/b", "/c", true},
		{"/a/bc", "/a/b", "", false},
	} {
		rest, ok := stripPrefix(tc.path, tc.prefix)
		require.Equal(t, tc.ok, ok, "%q under %q", tc.path, tc.prefix)
		require.Equal(t, tc.rest, rest, "%q under %q", tc.path, tc.prefix)
	}
}

func FuzzStripPrefix(f *testing.F) {
	for _, s := range []string{"/webhooks", "/webhooks/", "/webhooksfoo", "/webhooks/v1/x", "/", "", "/webhooks%2F"} {
		f.Add(s)
	}
	const prefix = "/webhooks"
	f.Fuzz(func(t *testing.T, p string) {
		rest, ok := stripPrefix(p, prefix)
		whole := p == prefix || strings.HasPrefix(p, prefix+"/")
		if ok != whole {
			t.Fatalf("stripPrefix(%q) ok=%v, want %v", p, ok, whole)
		}
		if !ok {
			return
		}
		if !strings.HasPrefix(rest, "/") {
			t.Fatalf("stripPrefix(%q) = %q, not rooted", p, rest)
		}
		if p != prefix && prefix+rest != p {
			t.Fatalf("stripPrefix(%q) = %q, which is not what follows the prefix", p, rest)
		}
	})
}

func TestCredentialKey(t *testing.T) {
	t.Parallel()
	key := func(h http.Header) [sha256.Size]byte { return credentialKey(h) }
	a := key(http.Header{"Authorization": {"Bearer x"}})
	require.Equal(t, a, key(http.Header{"Authorization": {"Bearer x"}, "X-Other": {"1"}}), "only credentials count")
	distinct := []http.Header{
		{"Authorization": {"Bearer x"}},
		{"Cookie": {"Bearer x"}},
		{"Authorization": {"Bearer x"}, "Cookie": {"s=1"}},
		{"Authorization": {"Bearer x"}, "Cookie": {"s=1", "t=2"}},
		{"Authorization": {"Bearer x"}, "Cookie": {"s=1; t=2"}},
		{"Authorization": {"Bearer y"}},
		{},
	}
	seen := map[[sha256.Size]byte]int{}
	for i, h := range distinct {
		k := key(h)
		if j, dup := seen[k]; dup {
			t.Fatalf("headers %d and %d share a key", j, i)
		}
		seen[k] = i
	}
}

// TestAuthCacheBound checks the cache New builds: bounded at maxCacheEntries, the least
// recently used going first, so made-up credentials cannot grow it without limit.
func TestAuthCacheBound(t *testing.T) {
	t.Parallel()
	a, err := newForwardAuth(Config{AuthURL: "http://127.0.0.1:1/auth", AuthCacheTTL: time.Minute})
	require.NoError(t, err)
	key := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }
	a.cache.Add(key(0), verdict{outcome: outcomeAllowed, tenant: "first"})
	for i := 1; i <= maxCacheEntries; i++ {
		if i == maxCacheEntries/2 {
			_, ok := a.cache.Get(key(0)) // used again: no longer the least recent
			require.True(t, ok)
		}
		a.cache.Add(key(i), verdict{})
	}
	require.Equal(t, maxCacheEntries, a.cache.Len())
	_, ok := a.cache.Get(key(1))
	require.False(t, ok, "the least recently used went")
	v, ok := a.cache.Get(key(0))
	require.True(t, ok)
	require.Equal(t, "first", v.tenant)
}

func TestAPIDeadlines(t *testing.T) {
	t.Parallel()
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Tenant-ID", "tenant_a")
	}))
	t.Cleanup(auth.Close)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(time.Second)
		_, _ = io.WriteString(w, "late\n")
	}))
	t.Cleanup(upstream.Close)
	apiHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		_, _ = io.WriteString(w, "api\n")
	})
	up, err := url.Parse(upstream.URL)
	require.NoError(t, err)
	h, err := New(Config{Upstream: up, AuthURL: auth.URL, API: apiHandler})
	require.NoError(t, err)
	h.(*handler).apiTimeout = 400 * time.Millisecond
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get := func(client *http.Client, path string) (string, bool, error) {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer key")
		resp, err := client.Do(req)
		if err != nil {
			return "", reused, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), reused, err
	}

	t.Run("APIRequestIsBounded", func(t *testing.T) {
		transport := &http.Transport{}
		t.Cleanup(transport.CloseIdleConnections)
		_, _, err := get(&http.Client{Transport: transport}, "/webhooks/slow")
		require.Error(t, err, "an API request past its deadline is cut")
	})

	t.Run("DeadlineClearedForNextRequest", func(t *testing.T) {
		// One keep-alive connection: an API request, then a proxied one that outlasts the
		// API's deadline. net/http clears a handler's deadlines once its answer is out; this
		// guards that assumption.
		transport := &http.Transport{MaxConnsPerHost: 1}
		t.Cleanup(transport.CloseIdleConnections)
		client := &http.Client{Transport: transport}
		body, _, err := get(client, "/webhooks/fast")
		require.NoError(t, err)
		require.Equal(t, "api\n", body)
		body, reused, err := get(client, "/upstream")
		require.NoError(t, err)
		require.True(t, reused, "the second request must share the connection for this test to mean anything")
		require.Equal(t, "late\n", body)
	})
}
