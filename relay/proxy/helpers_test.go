package proxy_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/proxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener lives as long as its *sql.DB, closed in t.Cleanup.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// The auth cache's sweeper: golang-lru's expirable cache has no way to stop it (its
		// documentation says so), one per New with a TTL, for the life of the process.
		goleak.IgnoreAnyFunction("github.com/hashicorp/golang-lru/v2/expirable.NewLRU[...].func1"),
	)
}

// authAnswer is what the fake auth endpoint answers for one credential.
type authAnswer struct {
	status  int
	tenants []string      // X-Tenant-ID values
	delay   time.Duration // wait before answering (or until the caller gives up)
}

// fakeAuth is the application's forward-auth endpoint: it maps an Authorization value (or,
// without one, a Cookie value) to an answer, counts calls and keeps the last request.
type fakeAuth struct {
	calls atomic.Int64

	mu       sync.Mutex
	last     *http.Request
	lastBody []byte
}

// authAnswers: key_A and the session cookie sess_A are tenant_a, key_B is tenant_b; the
// others misbehave in one way each; anything unknown is 401.
var authAnswers = map[string]authAnswer{
	"Bearer key_A":       {status: http.StatusOK, tenants: []string{"tenant_a"}},
	"Bearer key_B":       {status: http.StatusNoContent, tenants: []string{"tenant_b"}},
	"session=sess_A":     {status: http.StatusOK, tenants: []string{"tenant_a"}},
	"session=sess_B":     {status: http.StatusOK, tenants: []string{"tenant_b"}},
	"Bearer no_tenant":   {status: http.StatusOK},
	"Bearer empty":       {status: http.StatusOK, tenants: []string{""}},
	"Bearer two_tenants": {status: http.StatusOK, tenants: []string{"tenant_a", "tenant_b"}},
	"Bearer long_tenant": {status: http.StatusOK, tenants: []string{strings.Repeat("t", 256)}},
	"Bearer max_tenant":  {status: http.StatusOK, tenants: []string{strings.Repeat("t", 255)}},
	"Bearer forbidden":   {status: http.StatusForbidden, tenants: []string{"tenant_a"}},
	"Bearer broken":      {status: http.StatusInternalServerError, tenants: []string{"tenant_a"}},
	"Bearer not_found":   {status: http.StatusNotFound},
	"Bearer redirect":    {status: http.StatusFound, tenants: []string{"tenant_a"}},
	"Bearer slow":        {status: http.StatusOK, tenants: []string{"tenant_a"}, delay: 2 * time.Second},
}

func (f *fakeAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.last, f.lastBody = r.Clone(r.Context()), body
	f.mu.Unlock()

	ans, ok := authAnswers[r.Header.Get("Authorization")]
	if !ok && r.Header.Get("Authorization") == "" {
		for _, c := range r.Header.Values("Cookie") {
			if a, found := authAnswers[c]; found && strings.HasPrefix(c, "session=") {
				ans, ok = a, true
				break
			}
		}
	}
	if !ok {
		ans = authAnswer{status: http.StatusUnauthorized}
	}
	if ans.delay > 0 {
		select {
		case <-time.After(ans.delay):
		case <-r.Context().Done():
			return
		}
	}
	for _, t := range ans.tenants {
		w.Header().Add("X-Tenant-ID", t)
	}
	if ans.status == http.StatusFound {
		w.Header().Set("Location", "/login")
	}
	w.WriteHeader(ans.status)
}

// lastRequest returns the last request the auth endpoint got, and its body.
func (f *fakeAuth) lastRequest() (*http.Request, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.lastBody
}

// apiEcho is what echoAPI answers: what the management API would have seen.
type apiEcho struct {
	HasCaller bool   `json:"has_caller"`
	TenantID  string `json:"tenant_id"`
	Operator  bool   `json:"operator"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	RawPath   string `json:"raw_path"`
	Query     string `json:"query"`
	Header    string `json:"x_tenant_id"`
}

// echoAPI stands in for api.API.Handler(): it answers the Caller it finds and the request as
// it arrived.
func echoAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := api.CallerFromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Served-By", "api")
		_ = json.NewEncoder(w).Encode(apiEcho{
			HasCaller: ok, TenantID: c.TenantID, Operator: c.Operator,
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery,
			Header: r.Header.Get("X-Tenant-ID"),
		})
	})
}

// upstreamEcho is what echoUpstream answers: the request as the application got it.
type upstreamEcho struct {
	Method     string      `json:"method"`
	RequestURI string      `json:"request_uri"`
	Host       string      `json:"host"`
	Header     http.Header `json:"header"`
	Body       []byte      `json:"body"`
}

// echoUpstream is the application: it answers every request with what it received.
func echoUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Served-By", "upstream")
		_ = json.NewEncoder(w).Encode(upstreamEcho{
			Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header, Body: body,
		})
	})
}

// env changes what setup builds; the zero env is the echo API and the echo upstream.
type env struct {
	api       http.Handler          // nil: echoAPI
	upstream  http.Handler          // nil: echoUpstream
	configure func(c *proxy.Config) // changes the Config before New
}

// bundle is a proxy served over HTTP with its fake auth endpoint and upstream.
type bundle struct {
	srv      *httptest.Server // the relay's public port
	auth     *fakeAuth
	authSrv  *httptest.Server
	upstream *httptest.Server
	client   *http.Client
	log      *relaytest.LockedBuffer
}

func setup(t *testing.T, e env) *bundle {
	t.Helper()
	b := &bundle{auth: &fakeAuth{}, log: &relaytest.LockedBuffer{}}
	if e.api == nil {
		e.api = echoAPI()
	}
	if e.upstream == nil {
		e.upstream = echoUpstream()
	}
	b.authSrv = httptest.NewServer(b.auth)
	t.Cleanup(b.authSrv.Close)
	b.upstream = httptest.NewServer(e.upstream)
	t.Cleanup(b.upstream.Close)

	up, err := url.Parse(b.upstream.URL)
	require.NoError(t, err)
	cfg := proxy.Config{
		Upstream: up,
		AuthURL:  b.authSrv.URL + "/auth",
		API:      e.api,
		Logger:   zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), b.log)),
	}
	if e.configure != nil {
		e.configure(&cfg)
	}
	h, err := proxy.New(cfg)
	require.NoError(t, err)
	b.srv = httptest.NewServer(h)
	t.Cleanup(b.srv.Close)

	transport := &http.Transport{DisableCompression: true}
	t.Cleanup(transport.CloseIdleConnections)
	b.client = &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b
}

// response is an answer with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends method path (relative to the proxy) with header and body.
func (b *bundle) do(t *testing.T, method, path string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	return b.send(t, req)
}

func (b *bundle) send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// asKey sends method path with "Authorization: Bearer <key>".
func (b *bundle) asKey(t *testing.T, key, method, path string) response {
	t.Helper()
	return b.do(t, method, path, http.Header{"Authorization": {"Bearer " + key}}, "")
}

// apiEcho decodes an answer of echoAPI, checking it came from there.
func (r response) apiEcho(t *testing.T) apiEcho {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Equal(t, "api", r.header.Get("X-Served-By"), "body: %s", r.body)
	var e apiEcho
	require.NoError(t, json.Unmarshal(r.body, &e), "body: %s", r.body)
	return e
}

// upstreamEcho decodes an answer of echoUpstream, checking it came from there.
func (r response) upstreamEcho(t *testing.T) upstreamEcho {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Equal(t, "upstream", r.header.Get("X-Served-By"), "body: %s", r.body)
	var e upstreamEcho
	require.NoError(t, json.Unmarshal(r.body, &e), "body: %s", r.body)
	return e
}

// errorCode checks the API's error shape and answers its code.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	return relaytest.ErrorCode(t, r.header, r.body)
}

// droppingURL is the URL of a server that accepts connections and drops them at once,
// without a byte: unreachable for HTTP. Unlike a closed port, which the next httptest server
// of a parallel test may be given, it cannot be taken over while the test runs.
func droppingURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not an orderly close
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}
