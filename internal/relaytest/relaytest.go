// Package relaytest holds what the relay's tests share: a freshly migrated database per test
// and a real HTTP receiver that records every request it gets.
package relaytest

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the PostgreSQL driver
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/internal/pgtest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// Migrated is the template of a database migrated to the latest schema, with the NOTIFY
// trigger. Its name changes whenever a migration does, so the template is rebuilt.
var Migrated = pgtest.Template{
	Name: "migrated-" + outbox.MigrationsFingerprint(),
	Setup: func(ctx context.Context, db *sql.DB) error {
		_, err := outbox.Migrate(ctx, db, outbox.MigrateOptions{NotifyTrigger: true})
		return err
	},
}

// Empty is the template of a database with nothing in it, for tests in which the relay
// migrates the database itself.
var Empty = pgtest.Template{Name: "empty"}

// NewDB returns a connection to a new, migrated database and its DSN; both are gone when the
// test ends (the database stays, with its URL logged, when the test failed).
func NewDB(t testing.TB) (*sqlx.DB, string) {
	return Open(t, Migrated)
}

// Open returns a connection to a new database cloned from tpl, and its DSN. The pool sends
// statements the way the relay's own does (pgstmt.Open), so components tested on it meet
// the database as in production.
func Open(t testing.TB, tpl pgtest.Template) (*sqlx.DB, string) {
	t.Helper()
	dsn := pgtest.New(t, tpl)
	pool, err := pgstmt.Open(dsn)
	require.NoError(t, err)
	db := sqlx.NewDb(pool, "postgres")
	t.Cleanup(func() { db.Close() })
	return db, dsn
}

// Request is one request a Receiver got.
type Request struct {
	// Path is the request's URL path: a receiver serves several subscriptions by path.
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
	// ClientSubject is the subject of the client certificate presented, "" without one.
	ClientSubject string
}

// Receiver is a real HTTP server that records requests and answers with Respond.
type Receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
	arrived  chan struct{}
	// Respond decides the answer to each request; 204 when nil. Set it before traffic starts.
	Respond func(w http.ResponseWriter, r *http.Request, body []byte)
}

// NewReceiver starts a Receiver that is closed when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	rc := newReceiver()
	rc.Server = httptest.NewServer(rc.handler())
	t.Cleanup(rc.Server.Close)
	return rc
}

func newReceiver() *Receiver { return &Receiver{arrived: make(chan struct{}, 1)} }

func (rc *Receiver) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		req := Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			req.ClientSubject = r.TLS.PeerCertificates[0].Subject.String()
		}
		rc.requests = append(rc.requests, req)
		respond := rc.Respond
		rc.mu.Unlock()
		select {
		case rc.arrived <- struct{}{}:
		default:
		}
		if respond != nil {
			respond(w, r, body)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// Requests returns a copy of every request so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.requests...)
}

// WaitFor waits until at least n requests arrived and returns them; it fails the test after
// timeout.
func (rc *Receiver) WaitFor(t testing.TB, n int, timeout time.Duration) []Request {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if reqs := rc.Requests(); len(reqs) >= n {
			return reqs
		}
		select {
		case <-rc.arrived:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			require.FailNowf(t, "receiver timed out", "got %d of %d requests within %s", len(rc.Requests()), n, timeout)
		}
	}
}

// Eventually polls cond until it holds or timeout passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNowf(t, "condition not met in time", msg, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DeliveryIDs answers the delivery IDs of db's schema (outbox.DefaultSchema): the public
// IDs the relay shows for its rows.
func DeliveryIDs(t testing.TB, db *sqlx.DB) *ids.Deliveries {
	t.Helper()
	d, err := ids.Load(context.Background(), db.DB, outbox.DefaultSchema)
	require.NoError(t, err)
	return d
}
