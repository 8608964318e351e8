package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/referralloop/outbox-relay/relay/targets"
)

// dialTimeout bounds one TCP connection, to a receiver or to the proxy; the request's
// context (RELAY_DELIVERY_TIMEOUT) bounds the rest.
const dialTimeout = 10 * time.Second

// proxyAnswerLimit is how much of a refusing proxy's body is quoted in the error.
const proxyAnswerLimit = 200

// Config is how webhook requests leave the relay.
type Config struct {
	// Workers is the number of concurrent requests; it sizes the idle connection pool.
	// Optional: below 1 counts as 1.
	Workers int
	// Policy is the SSRF guard: which addresses requests may reach. Optional: the zero
	// value is the strict default (public addresses only).
	Policy targets.Policy
	// Proxy is an http:// HTTP CONNECT proxy every request goes through (RELAY_EGRESS_PROXY);
	// user info in it is sent as Proxy-Authorization (Basic). Optional: nil connects
	// directly. Checked by CheckProxyURL.
	Proxy *url.URL
	// ProxyEnforcesSSRF trusts Proxy to refuse private targets: the relay then neither
	// resolves target names nor checks their addresses (RELAY_EGRESS_PROXY_ENFORCES_SSRF).
	// Optional; only with Proxy.
	ProxyEnforcesSSRF bool
	// RootCAs are the roots receivers' certificates are verified against. Optional: nil
	// means the system's (see LoadRoots for the system's plus a file's).
	RootCAs *x509.CertPool
	// ClientCertificate is presented to receivers that ask for one (mTLS). Optional: nil
	// presents none. The deliverer makes one client per subscription certificate with it,
	// from the same Config otherwise, so the guard, proxy and roots apply alike.
	ClientCertificate *tls.Certificate
}

// New returns the client webhook requests go out with: no redirects (a 3xx is a failed
// attempt), keep-alive with enough idle connections per host for the worker pool, TLS 1.2 or
// later verified against cfg.RootCAs, and every connection either guarded at dial time by
// cfg.Policy or tunnelled through cfg.Proxy (see the package documentation).
func New(cfg Config) (*http.Client, error) {
	if cfg.Proxy != nil {
		if err := CheckProxyURL(cfg.Proxy.String()); err != nil {
			return nil, err
		}
	} else if cfg.ProxyEnforcesSSRF {
		return nil, errors.New("egress: ProxyEnforcesSSRF without a Proxy")
	}
	workers := max(cfg.Workers, 1)
	direct := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second, Control: cfg.Policy.DialControl}
	dial := direct.DialContext
	if cfg.Proxy != nil {
		d := &proxyDialer{
			proxy:    cfg.Proxy.Host,
			auth:     proxyAuthorization(cfg.Proxy),
			policy:   cfg.Policy,
			resolver: resolverOf(cfg.Policy),
			enforces: cfg.ProxyEnforcesSSRF,
			// The proxy is the operator's choice, often on a private address: its
			// connection is not guarded, the target behind it is.
			dialer: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		}
		dial = d.DialContext
	}
	transport := &http.Transport{
		// Proxy stays nil: the standard proxy support would ask the proxy for the target's
		// name, resolved by the proxy after any check of ours. proxyDialer speaks CONNECT
		// itself, for an address it has checked.
		Proxy:                 nil,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(workers*2, 100),
		MaxIdleConnsPerHost:   max(workers, 16),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // the per-request context carries RELAY_DELIVERY_TIMEOUT
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
	}
	if cfg.ClientCertificate != nil {
		transport.TLSClientConfig.Certificates = []tls.Certificate{*cfg.ClientCertificate}
	}
	return &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// CheckProxyURL checks RELAY_EGRESS_PROXY: an absolute http:// URL with a host, and nothing
// but an optional trailing "/" after it. The error never quotes the password.
func CheckProxyURL(s string) error {
	const want = "want http://host:port or http://user:password@host:port"
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL (%s; percent-encode special characters in the user name and password)", want)
	}
	switch {
	case u.Scheme == "https":
		return fmt.Errorf("https proxies are not supported: the relay speaks plain HTTP to the proxy and TLS to the receiver through its tunnel (%s)", want)
	case u.Scheme != "http":
		return fmt.Errorf("scheme must be http (%s)", want)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("has no host (%s)", want)
	case u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("must not have a path, query or fragment (%s)", want)
	}
	return nil
}

// LoadRoots answers the system's root CAs plus the certificates of the PEM file at path
// (RELAY_CA_FILE). The file must hold at least one certificate; other PEM blocks are
// ignored. On a system without a root store the file's certificates are the only roots.
func LoadRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		if pathErr, ok := errors.AsType[*os.PathError](err); ok {
			err = pathErr.Err
		}
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate (want one or more -----BEGIN CERTIFICATE----- blocks)", path)
	}
	return pool, nil
}

func proxyAuthorization(u *url.URL) string {
	if u.User == nil {
		return ""
	}
	pass, _ := u.User.Password()
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
}

func resolverOf(p targets.Policy) targets.Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}

// ProxyError is why the egress proxy did not open a tunnel: it could not be reached, closed
// the connection, or answered CONNECT with another status than 2xx. Its text names the
// proxy by host and port only (never its credentials) and quotes the start of its answer.
type ProxyError struct {
	// Proxy is the proxy's host:port.
	Proxy string
	// Authority is what the relay asked the proxy to CONNECT to.
	Authority string
	// Status is the proxy's status line ("403 Forbidden"); empty without an answer.
	Status string
	// Msg says what happened, in words, when there is no status.
	Msg string
	// Err is the underlying error, if any.
	Err error
}

func (e *ProxyError) Error() string {
	s := "egress proxy " + e.Proxy
	if e.Status != "" {
		return s + " refused CONNECT " + e.Authority + ": " + e.Status + e.Msg
	}
	return s + ": " + e.Msg + " (CONNECT " + e.Authority + ")"
}

func (e *ProxyError) Unwrap() error { return e.Err }

// proxyDialer opens connections as tunnels through an HTTP CONNECT proxy.
type proxyDialer struct {
	proxy    string // host:port
	auth     string // the Proxy-Authorization value, or ""
	policy   targets.Policy
	resolver targets.Resolver
	enforces bool
	dialer   *net.Dialer
}

// DialContext answers a tunnel to address (host:port, as the transport gives it). Unless the
// proxy enforces the SSRF policy, the host is resolved here, every address the policy does
// not permit is skipped, and the proxy is asked for the permitted addresses in turn, by IP;
// when none is permitted the error is the policy's, and the proxy is never contacted.
func (d *proxyDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.enforces {
		return d.connect(ctx, network, address)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("egress: bad address %q: %w", address, err)
	}
	var candidates []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		candidates = []netip.Addr{ip}
	} else {
		addrs, err := d.resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				candidates = append(candidates, ip.Unmap())
			}
		}
		if len(candidates) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	var first error
	for _, ip := range candidates {
		err := d.policy.Check(ip)
		if err == nil {
			var conn net.Conn
			conn, err = d.connect(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return conn, nil
			}
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: first}
}

// connect asks the proxy for a tunnel to authority and answers it once the proxy said 2xx.
func (d *proxyDialer) connect(ctx context.Context, network, authority string) (net.Conn, error) {
	conn, err := d.dialer.DialContext(ctx, network, d.proxy)
	if err != nil {
		return nil, &ProxyError{Proxy: d.proxy, Authority: authority, Msg: "cannot connect: " + dialReason(err), Err: err}
	}
	// The request's context bounds the handshake: a proxy that never answers is cut off.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	br, err := d.handshake(conn, authority)
	if !stop() {
		_ = conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if br.Buffered() > 0 {
		// Bytes the proxy sent after its answer belong to the tunnel.
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

func (d *proxyDialer) handshake(conn net.Conn, authority string) (*bufio.Reader, error) {
	req := "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n"
	if d.auth != "" {
		req += "Proxy-Authorization: " + d.auth + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return nil, &ProxyError{Proxy: d.proxy, Authority: authority, Msg: "connection lost while sending CONNECT", Err: err}
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		msg := "closed the connection without answering CONNECT"
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				msg = "no answer to CONNECT in time"
			} else {
				msg = "bad answer to CONNECT: " + err.Error()
			}
		}
		return nil, &ProxyError{Proxy: d.proxy, Authority: authority, Msg: msg, Err: err}
	}
	if resp.StatusCode/100 == 2 {
		return br, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, proxyAnswerLimit))
	_ = resp.Body.Close()
	e := &ProxyError{Proxy: d.proxy, Authority: authority, Status: resp.Status}
	if text := strings.TrimSpace(string(body)); text != "" {
		e.Msg = ": " + text
	}
	return nil, e
}

func dialReason(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}

// bufferedConn reads first what the handshake's reader holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
