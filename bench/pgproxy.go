package main

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// pgProxy is a TCP proxy between the relay and PostgreSQL that counts the messages the relay
// sends, without changing a byte or the framing: what goes in one read goes out in one
// write. Only the client-to-server direction is parsed.
//
// From the PostgreSQL wire protocol (v3):
//   - statements = Execute ('E') + simple Query ('Q') messages;
//   - round trips = Sync ('S') + simple Query ('Q') + FunctionCall ('F') messages, each of
//     which the client follows by waiting for ReadyForQuery. lib/pq sends a parameterised
//     query as Parse/Describe/Sync then Bind/Execute/Sync: one statement, two round trips.
type pgProxy struct {
	ln     net.Listener
	target string
	counts wireCounters

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// wireCounters are the proxy's running totals.
type wireCounters struct {
	conns, query, parse, bind, execute, sync, function, opaque atomic.Int64
}

// wireCounts is a snapshot of wireCounters.
type wireCounts struct {
	Connections int64 `json:"connections"`
	Statements  int64 `json:"statements"`
	RoundTrips  int64 `json:"round_trips"`
	Parse       int64 `json:"parse"`
	Bind        int64 `json:"bind"`
	// Opaque counts connections the proxy could not parse (TLS); their statements are missing.
	Opaque int64 `json:"opaque_connections"`
}

func (a wireCounts) sub(b wireCounts) wireCounts {
	return wireCounts{
		Connections: a.Connections - b.Connections,
		Statements:  a.Statements - b.Statements,
		RoundTrips:  a.RoundTrips - b.RoundTrips,
		Parse:       a.Parse - b.Parse,
		Bind:        a.Bind - b.Bind,
		Opaque:      a.Opaque - b.Opaque,
	}
}

// startPGProxy listens on a free loopback port and forwards every connection to target.
func startPGProxy(target string) (*pgProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address the relay connects to instead of PostgreSQL.
func (p *pgProxy) Addr() string { return p.ln.Addr().String() }

func (p *pgProxy) snapshot() wireCounts { return p.counts.snapshot() }

func (c *wireCounters) snapshot() wireCounts {
	q := c.query.Load()
	return wireCounts{
		Connections: c.conns.Load(),
		Statements:  c.execute.Load() + q,
		RoundTrips:  c.sync.Load() + q + c.function.Load(),
		Parse:       c.parse.Load(),
		Bind:        c.bind.Load(),
		Opaque:      c.opaque.Load(),
	}
}

// Close stops accepting, cuts every connection and waits for the copiers.
func (p *pgProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers a connection pair so that Close can cut it; false once closed.
func (p *pgProxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

func (p *pgProxy) untrack(a, b net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, a)
	delete(p.conns, b)
}

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			client.Close()
			server.Close()
			return
		}
		p.counts.conns.Add(1)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(client, server)
			client.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.forward(server, client)
			server.Close()
			p.untrack(client, server)
		}()
	}
}

// forward copies client to server, feeding every chunk to a message counter.
func (p *pgProxy) forward(server, client net.Conn) {
	m := msgCounter{startup: true, counts: &p.counts}
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			m.feed(buf[:n])
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut connection: either way the session is over
		}
	}
}

// Protocol codes of the untyped start-up messages.
const (
	protocolV3     = 196608
	sslRequestCode = 80877103
	gssEncRequest  = 80877104
)

// msgCounter follows the message framing of a client's byte stream across reads.
type msgCounter struct {
	counts  *wireCounters
	startup bool // the next message is untyped: int32 length, int32 code
	opaque  bool // encrypted: stop parsing
	hdr     [8]byte
	hdrN    int
	skip    int // body bytes of the current message still to pass
}

func (m *msgCounter) feed(b []byte) {
	for len(b) > 0 && !m.opaque {
		if m.skip > 0 {
			n := min(m.skip, len(b))
			b, m.skip = b[n:], m.skip-n
			continue
		}
		need := 5
		if m.startup {
			need = 8
		}
		n := copy(m.hdr[m.hdrN:need], b)
		b, m.hdrN = b[n:], m.hdrN+n
		if m.hdrN < need {
			return
		}
		m.hdrN = 0
		if m.startup {
			length := int(binary.BigEndian.Uint32(m.hdr[0:4]))
			switch binary.BigEndian.Uint32(m.hdr[4:8]) {
			case sslRequestCode, gssEncRequest:
				// The server may accept and the rest is TLS: count no further.
				m.opaque = true
				m.counts.opaque.Add(1)
			case protocolV3:
				m.startup = false
			}
			m.skip = max(length-8, 0)
			continue
		}
		m.count(m.hdr[0])
		m.skip = max(int(binary.BigEndian.Uint32(m.hdr[1:5]))-4, 0)
	}
}

func (m *msgCounter) count(typ byte) {
	c := m.counts
	switch typ {
	case 'Q':
		c.query.Add(1)
	case 'P':
		c.parse.Add(1)
	case 'B':
		c.bind.Add(1)
	case 'E':
		c.execute.Add(1)
	case 'S':
		c.sync.Add(1)
	case 'F':
		c.function.Add(1)
	}
}
