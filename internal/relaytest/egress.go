package relaytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ConnectProxy is an HTTP CONNECT proxy on loopback, like Smokescreen in front of a relay: it
// records every CONNECT it is asked for and tunnels the bytes, or refuses as told.
type ConnectProxy struct {
	*httptest.Server
	mu          sync.Mutex
	authorities []string
	auths       []string
	refuse      func(authority string) (status int, body string)
	route       func(authority string) string
}

// NewConnectProxy starts a CONNECT proxy, closed when the test ends. By default it connects
// every tunnel to the authority asked for.
func NewConnectProxy(t testing.TB) *ConnectProxy {
	t.Helper()
	p := &ConnectProxy{}
	var tunnels sync.WaitGroup
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.mu.Lock()
		p.authorities = append(p.authorities, r.Host)
		p.auths = append(p.auths, r.Header.Get("Proxy-Authorization"))
		refuse, route := p.refuse, p.route
		p.mu.Unlock()
		if refuse != nil {
			if status, body := refuse(r.Host); status != 0 {
				http.Error(w, body, status)
				return
			}
		}
		target := r.Host
		if route != nil {
			target = route(r.Host)
		}
		upstream, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		tunnels.Add(2)
		go func() {
			defer tunnels.Done()
			_, _ = io.Copy(upstream, rw) // rw first: it may hold bytes read past the CONNECT
			if tc, ok := upstream.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}()
		go func() {
			defer tunnels.Done()
			_, _ = io.Copy(conn, upstream)
			conn.Close()
			upstream.Close()
		}()
	}))
	t.Cleanup(func() {
		p.Close()
		tunnels.Wait()
	})
	return p
}

// Authorities answers the host:port of every CONNECT asked for so far, in order.
func (p *ConnectProxy) Authorities() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.authorities...)
}

// ProxyAuthorizations answers the Proxy-Authorization header of every CONNECT so far.
func (p *ConnectProxy) ProxyAuthorizations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auths...)
}

// Refuse makes the proxy answer a CONNECT with status and body when f says a status other
// than 0; nil lets every CONNECT through.
func (p *ConnectProxy) Refuse(f func(authority string) (status int, body string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = f
}

// Route makes the proxy connect a tunnel asked for authority to f(authority) instead, as a
// proxy inside a private network would reach an address the test machine does not have.
func (p *ConnectProxy) Route(f func(authority string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.route = f
}

// PrivateCA is a certificate authority made for one test, as a company's private PKI.
type PrivateCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate, what RELAY_CA_FILE would hold.
	PEM []byte
}

// NewPrivateCA makes a CA.
func NewPrivateCA(t testing.TB) *PrivateCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "outbox-relay test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &PrivateCA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// NewTLSServer starts an HTTPS server on 127.0.0.1 whose certificate, for 127.0.0.1 and
// localhost, the CA signed; closed when the test ends.
func (ca *PrivateCA) NewTLSServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = ca.serverTLS(t)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// serverTLS answers a server configuration with a certificate the CA signed for 127.0.0.1
// and localhost.
func (ca *PrivateCA) serverTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "receiver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// NewReceiver starts a Receiver over HTTPS whose certificate the CA signed (see
// NewTLSServer); closed when the test ends.
func (ca *PrivateCA) NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	rc := newReceiver()
	rc.Server = ca.NewTLSServer(t, rc.handler())
	return rc
}

// NewClientCertificate makes a client certificate for commonName, signed by the CA and
// valid until notAfter, and answers it and its private key in PEM (PKCS #8).
func (ca *PrivateCA) NewClientCertificate(t testing.TB, commonName string, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"outbox-relay tests"}},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// NewMTLSReceiver is NewReceiver for a receiver that requires a client certificate the CA
// signed (tls.RequireAndVerifyClientCert): a request without one fails in the handshake.
// The Receiver's handler sees the certificate in r.TLS.
func (ca *PrivateCA) NewMTLSReceiver(t testing.TB) *Receiver {
	t.Helper()
	rc := newReceiver()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(rc.handler())
	srv.TLS = ca.serverTLS(t)
	srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	srv.TLS.ClientCAs = pool
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rc.Server = srv
	return rc
}
