package metrics_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// pgProxy stands between a client and PostgreSQL and counts, on the wire, what the client
// asks of the database: the statements PostgreSQL was sent, whatever the code under test
// believes it did. It can also play a database that is down.
type pgProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}

	// statements counts Query (simple protocol) and Execute (extended protocol) messages.
	statements atomic.Int64
	// dials counts connections the client opened, refused ones included.
	dials atomic.Int64
}

// newPGProxy starts a proxy to the server of dsn; the returned URL reaches the same database
// through it. Both close when the test ends.
func newPGProxy(t *testing.T, dsn string) (*pgProxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pgProxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return p, u.String()
}

// setDown closes every connection and refuses new ones (true), or accepts them again (false).
func (p *pgProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *pgProxy) close() {
	p.ln.Close()
	p.setDown(true)
	p.wg.Wait()
}

// track registers c, or answers false when the proxy is down.
func (p *pgProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *pgProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.dials.Add(1)
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *pgProxy) pipe(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	go func() { _ = p.count(up, c); up.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); c.Close(); done <- struct{}{} }()
	<-done
	<-done
}

// Protocol codes of the untyped messages a client may send before its startup message.
const (
	sslRequest    = 80877103
	gssEncRequest = 80877104
)

// count copies the client's messages to the server, counting the statements among them.
// The first messages have no type byte: SSLRequest or GSSENCRequest (each answered with one
// byte, 'N' here, before the startup message follows), then the startup message itself or a
// CancelRequest.
func (p *pgProxy) count(dst io.Writer, src io.Reader) error {
	r := bufio.NewReader(src)
	startup := true
	for {
		head := make([]byte, 5)
		if startup {
			head = head[:4]
		}
		if _, err := io.ReadFull(r, head); err != nil {
			return err
		}
		body := make([]byte, int(binary.BigEndian.Uint32(head[len(head)-4:]))-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if startup {
			code := binary.BigEndian.Uint32(body)
			startup = code == sslRequest || code == gssEncRequest
		} else if head[0] == 'Q' || head[0] == 'E' {
			p.statements.Add(1)
		}
		if _, err := dst.Write(append(head, body...)); err != nil {
			return err
		}
	}
}
