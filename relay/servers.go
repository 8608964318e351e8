package relay

import (
	"context"
	"math"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/net/netutil"
)

// Every listener takes at most a fixed number of connections, and every server ends idle,
// slow and oversized requests. Without that, a client holding connections open (the ops
// port has no auth) takes the process's file descriptors one by one, and the relay's own
// webhook requests and database connections then fail with "too many open files".
//
// At the limit a listener stops accepting until one of its connections closes. The kernel
// still completes the TCP handshake for up to net.core.somaxconn waiting connections, so a
// client sees its connection open and its request wait; beyond that backlog, connection
// attempts go unanswered and the client's TCP stack retries them. Waiting connections use
// no file descriptor of the relay. The timeouts below bound how long a slot stays taken.

const (
	// Fixed caps; lowered by connLimits when the open-file limit is small.
	opsMaxConns      = 64   // probes and scrapes: a handful at a time
	operatorMaxConns = 512  // the management API (RELAY_LISTEN_ADDR, or RELAY_ADMIN_ADDR in reverse-proxy mode)
	publicMaxConns   = 4096 // reverse-proxy mode's public port: browsers, long streams, WebSockets
	minConns         = 4    // whatever the open-file limit: probes must still get through

	// reservedFiles is kept for everything but the listeners' connections, besides the
	// webhook requests (see connLimits): the database pool (16, set in Run), the LISTEN
	// connection, the listeners themselves, stdio, the tracing exporter and forward auth.
	reservedFiles = 64
)

// connLimits are the most connections each listener holds open at once.
type connLimits struct {
	ops      int
	operator int // RELAY_LISTEN_ADDR, or RELAY_ADMIN_ADDR in reverse-proxy mode
	public   int // RELAY_LISTEN_ADDR in reverse-proxy mode; 0 otherwise
	// short is true when the open-file limit leaves less room than the fixed caps want.
	short bool
}

// newConnLimits shares out the open-file limit nofile (0: unknown). Webhook requests come
// first: up to twice workers (the requests in flight and as many connections kept alive
// for reuse), then reservedFiles. Of what is left the listeners take at most three
// quarters, so that an open-file limit that is too small still cannot be exhausted by
// inbound connections: ops an eighth, the management API half (an eighth in reverse-proxy
// mode), the public proxy a quarter (each of its connections may hold a second one to the
// upstream). Each gets at least minConns and at most its fixed cap.
func newConnLimits(nofile uint64, workers int, proxyMode bool) connLimits {
	avail := math.MaxInt
	if nofile > 0 && nofile < math.MaxInt32 {
		avail = int(nofile) - 2*workers - reservedFiles
	}
	share := func(fraction, fixed int) int {
		if avail == math.MaxInt {
			return fixed
		}
		return max(minConns, min(fixed, avail/fraction))
	}
	l := connLimits{ops: share(8, opsMaxConns)}
	if proxyMode {
		l.operator = share(8, operatorMaxConns)
		l.public = share(4, publicMaxConns)
		l.short = l.ops < opsMaxConns || l.operator < operatorMaxConns || l.public < publicMaxConns
	} else {
		l.operator = share(2, operatorMaxConns)
		l.short = l.ops < opsMaxConns || l.operator < operatorMaxConns
	}
	return l
}

// openFileLimit is the soft RLIMIT_NOFILE (which the Go runtime raises to the hard limit at
// start-up), or 0 if it cannot be read.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// limitListener caps ln at n open connections; Accept waits for a free slot.
func limitListener(ln net.Listener, n int) net.Listener {
	return netutil.LimitListener(ln, n)
}

// newOpsServer serves /healthz, /readyz and /metrics. Its clients send small requests and
// come back every few seconds at most, so idle connections end soon.
func newOpsServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// /metrics queries the database; generous, but bounded.
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    10 * time.Second,
		MaxHeaderBytes: 8 << 10,
	}
}

// newOperatorServer serves the management API.
func newOperatorServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// newPublicServer serves the reverse proxy's public port. streams is the base context of its
// requests (see Run).
func newPublicServer(h http.Handler, streams context.Context) *http.Server {
	return &http.Server{
		Handler: h,
		// No ReadTimeout or WriteTimeout: proxied streams and WebSockets may last hours.
		// The proxy bounds requests under the prefix itself (30s). The connection limit
		// bounds how many such streams there are; idle keep-alive connections still end.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		// Browsers send cookies: room for them, far below the default of 1 MB.
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return streams },
	}
}
