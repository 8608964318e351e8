package egress_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// fakeResolver answers from a fixed table.
type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, a := range addrs {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

func post(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"a":1}`))
	require.NoError(t, err)
	resp, err := c.Do(req)
	if err == nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func mustClient(t *testing.T, cfg egress.Config) *http.Client {
	t.Helper()
	c, err := egress.New(cfg)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func proxyURL(t *testing.T, p *relaytest.ConnectProxy, user *url.Userinfo) *url.URL {
	u, err := url.Parse(p.URL)
	require.NoError(t, err)
	u.User = user
	return u
}

// TestProxyTunnelsTLSEndToEnd: an https receiver on a private PKI is reached through the
// proxy, which sees the CONNECT and the credentials, the receiver the request.
func TestProxyTunnelsTLSEndToEnd(t *testing.T) {
	t.Parallel()
	ca := relaytest.NewPrivateCA(t)
	rc := ca.NewReceiver(t)
	proxy := relaytest.NewConnectProxy(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	roots, err := egress.LoadRoots(caFile)
	require.NoError(t, err)

	c := mustClient(t, egress.Config{
		Workers: 1, Policy: targets.Policy{AllowPrivate: true}, RootCAs: roots,
		Proxy: proxyURL(t, proxy, url.UserPassword("relay", "s3cr:et")),
	})
	resp, err := post(t, c, rc.URL+"/hook")
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, []string{strings.TrimPrefix(rc.URL, "https://")}, proxy.Authorities())
	require.Equal(t, []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("relay:s3cr:et"))}, proxy.ProxyAuthorizations())
	reqs := rc.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, `{"a":1}`, string(reqs[0].Body))
}

// TestProxyAskedForTheCheckedAddress: by default the relay resolves the name, checks the
// address and asks the proxy for that address, not for the name; the certificate is still
// verified against the name.
func TestProxyAskedForTheCheckedAddress(t *testing.T) {
	t.Parallel()
	ca := relaytest.NewPrivateCA(t)
	rc := ca.NewReceiver(t)
	proxy := relaytest.NewConnectProxy(t)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(rc.URL, "https://"))
	require.NoError(t, err)
	roots, err := egress.LoadRoots(writeFile(t, ca.PEM))
	require.NoError(t, err)

	// localhost is in the receiver's certificate; the resolver says 127.0.0.1, which
	// AllowCIDRs cannot admit: so admit everything, and watch what the proxy is asked.
	c := mustClient(t, egress.Config{
		Policy:  targets.Policy{AllowPrivate: true, Resolver: fakeResolver{"localhost": {"127.0.0.1"}}},
		RootCAs: roots, Proxy: proxyURL(t, proxy, nil),
	})
	resp, err := post(t, c, "https://localhost:"+port+"/hook")
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, []string{"127.0.0.1:" + port}, proxy.Authorities())
}

// TestProxyNeverAskedForARefusedAddress: the policy refuses before the proxy is contacted.
func TestProxyNeverAskedForARefusedAddress(t *testing.T) {
	t.Parallel()
	proxy := relaytest.NewConnectProxy(t)
	c := mustClient(t, egress.Config{
		Policy: targets.Policy{Resolver: fakeResolver{"metadata.example": {"169.254.169.254"}, "mixed.example": {"10.0.0.1"}}},
		Proxy:  proxyURL(t, proxy, nil),
	})
	for _, target := range []string{"http://169.254.169.254/latest/meta-data/", "https://metadata.example/", "https://mixed.example:8443/", "http://[fd00:ec2::254]/"} {
		_, err := post(t, c, target)
		require.ErrorIs(t, err, targets.ErrPrivateAddress, target)
		require.ErrorContains(t, err, "connection to private address", target)
	}
	require.Empty(t, proxy.Authorities())
}

// TestProxyEnforcesSSRF: the relay neither resolves nor checks; the proxy gets the name.
func TestProxyEnforcesSSRF(t *testing.T) {
	t.Parallel()
	rc := relaytest.NewReceiver(t)
	proxy := relaytest.NewConnectProxy(t)
	proxy.Route(func(string) string { return strings.TrimPrefix(rc.URL, "http://") })
	c := mustClient(t, egress.Config{
		Policy: targets.Policy{Resolver: fakeResolver{}}, ProxyEnforcesSSRF: true, Proxy: proxyURL(t, proxy, nil),
	})
	for _, target := range []string{"http://hooks.internal.example:8080/hook", "http://10.30.0.5:8080/hook"} {
		resp, err := post(t, c, target)
		require.NoError(t, err, target)
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	require.Equal(t, []string{"hooks.internal.example:8080", "10.30.0.5:8080"}, proxy.Authorities())
}

// TestProxyRefusals: every way a proxy can fail reads clearly, without its credentials.
func TestProxyRefusals(t *testing.T) {
	t.Parallel()
	refusing := relaytest.NewConnectProxy(t)
	refusing.Refuse(func(string) (int, string) { return http.StatusForbidden, "denied by egress policy" })

	closing, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { closing.Close() })
	go func() {
		for {
			c, err := closing.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			_, _ = c.Read(buf)
			c.Close()
		}
	}()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	goneAddr := gone.Addr().String()
	gone.Close()

	for name, tt := range map[string]struct {
		proxy string
		want  string
	}{
		"Forbidden": {refusing.URL, "egress proxy " + strings.TrimPrefix(refusing.URL, "http://") + " refused CONNECT 93.184.216.34:443: 403 Forbidden: denied by egress policy"},
		"Closes":    {"http://" + closing.Addr().String(), "egress proxy " + closing.Addr().String() + ": closed the connection without answering CONNECT (CONNECT 93.184.216.34:443)"},
		"Down":      {"http://" + goneAddr, "egress proxy " + goneAddr + ": cannot connect: "},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tt.proxy)
			require.NoError(t, err)
			u.User = url.UserPassword("relay", "hunter2")
			c := mustClient(t, egress.Config{Proxy: u})
			_, err = post(t, c, "https://93.184.216.34/hook")
			var perr *egress.ProxyError
			require.True(t, errors.As(err, &perr), "%v", err)
			require.Contains(t, perr.Error(), tt.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestCheckProxyURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"http://proxy:4750", "http://user:p%40ss@10.0.0.5:3128/", "http://[::1]:8080"} {
		require.NoError(t, egress.CheckProxyURL(ok), ok)
	}
	for in, msg := range map[string]string{
		"https://proxy:443":          "https proxies are not supported",
		"socks5://proxy:1080":        "scheme must be http",
		"proxy:4750":                 "scheme must be http",
		"http://":                    "has no host",
		"http://:8080":               "has no host",
		"http://proxy:4750/path":     "must not have a path",
		"http://proxy:4750?x=1":      "must not have a path",
		"http://user:p ss@proxy:1/%": "invalid URL",
	} {
		err := egress.CheckProxyURL(in)
		require.ErrorContains(t, err, msg, in)
		require.NotContains(t, err.Error(), "p ss", in)
	}
}

func TestLoadRoots(t *testing.T) {
	t.Parallel()
	ca := relaytest.NewPrivateCA(t)
	_, err := egress.LoadRoots(writeFile(t, ca.PEM))
	require.NoError(t, err)

	_, err = egress.LoadRoots(filepath.Join(t.TempDir(), "missing.pem"))
	require.ErrorContains(t, err, "cannot read ")
	require.ErrorContains(t, err, "missing.pem: no such file or directory")

	_, err = egress.LoadRoots(writeFile(t, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")))
	require.ErrorContains(t, err, "holds no PEM certificate")
}

// TestUntrustedCertificate: without the CA the receiver's certificate is refused.
func TestUntrustedCertificate(t *testing.T) {
	t.Parallel()
	rc := relaytest.NewPrivateCA(t).NewReceiver(t)
	c := mustClient(t, egress.Config{Policy: targets.Policy{AllowPrivate: true}})
	_, err := post(t, c, rc.URL+"/hook")
	require.ErrorContains(t, err, "certificate signed by unknown authority")
	require.Empty(t, rc.Requests())
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.pem")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}
