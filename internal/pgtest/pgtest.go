package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
)

// DefaultURL is the base URL used when RELAY_TEST_DATABASE_URL is not set: the server that
// scripts/with-postgres.sh looks for first.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const (
	templatePrefix = "relaytest_tpl_"
	databasePrefix = "relaytest_"
	readyComment   = "ready"

	// connectTimeout bounds the first contact with the server, so a firewalled address fails
	// the test quickly instead of at the test binary's deadline.
	connectTimeout = 10 * time.Second
	// prepareTimeout bounds waiting for another process's template and running Setup.
	prepareTimeout = 5 * time.Minute
	// cloneTimeout bounds CREATE DATABASE and DROP DATABASE.
	cloneTimeout = time.Minute
)

// The SQL that takes values; database names are interpolated only after
// pq.QuoteIdentifier, since DDL takes no parameters.
const (
	sqlLock         = `SELECT pg_advisory_lock($1)`
	sqlUnlock       = `SELECT pg_advisory_unlock($1)`
	sqlTemplateMark = `SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1`
)

// Template describes how to prepare the template database that test databases are cloned from.
type Template struct {
	// Name is the template's stable identity, for example a hash of the migrations. Required.
	// Its hash is part of the template database's name, and a template with a given Name is
	// prepared once and then reused by every test process and every later run.
	Name string

	// Setup prepares the freshly created, empty template database, for example by applying
	// migrations. It runs once per Name, and must not leave goroutines or connections behind.
	// Optional: without it, test databases start empty.
	Setup func(ctx context.Context, db *sql.DB) error
}

// BaseURL returns the URL of the database that pgtest connects to in order to create and drop
// databases: RELAY_TEST_DATABASE_URL, or DefaultURL when that is unset.
func BaseURL() string {
	if u := os.Getenv("RELAY_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// New returns the URL of a new database cloned from tpl's template database, preparing the
// template first if no process has done so yet. t.Cleanup drops the database, unless the test
// failed: then the database is kept and its URL logged. New calls t.Fatalf when there is no
// usable server or the template cannot be prepared.
func New(t testing.TB, tpl Template) string {
	t.Helper()
	if tpl.Name == "" {
		t.Fatalf("pgtest: Template.Name is required")
	}

	base, err := parseBaseURL(BaseURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	db, err := connect(base)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer db.Close()

	tplName := templateName(tpl.Name)
	if err := ensureTemplate(db, base, tplName, tpl); err != nil {
		t.Fatalf("pgtest: preparing template %s for %q: %v", tplName, tpl.Name, err)
	}

	name := databasePrefix + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), cloneTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)+
		" TEMPLATE "+pq.QuoteIdentifier(tplName)); err != nil {
		t.Fatalf("pgtest: cloning %s into %s: %v", tplName, name, err)
	}

	dsn := withDatabase(base, name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: test failed, keeping its database: %s", withoutPassword(dsn))
			return
		}
		if err := dropDatabase(base, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dsn.String()
}

// connect opens the base database and checks that a server answers there. The error for a
// server that cannot be reached is the one line a newcomer needs.
func connect(base *url.URL) (*sql.DB, error) {
	db, err := sql.Open("postgres", base.String())
	if err != nil {
		return nil, fmt.Errorf("pgtest: opening %s: %w", withoutPassword(base), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf(`no PostgreSQL at %s: run "make test" (it finds or starts one) or set RELAY_TEST_DATABASE_URL`,
				withoutPassword(base))
		}
		return nil, fmt.Errorf("pgtest: connecting to %s: %w", withoutPassword(base), err)
	}
	return db, nil
}

// prepared remembers, per template name, that this process has seen the template ready, so
// only the first New per name and process takes the advisory lock.
var prepared sync.Map // template database name -> *templateOnce

type templateOnce struct {
	mu    sync.Mutex
	ready bool
}

func ensureTemplate(db *sql.DB, base *url.URL, tplName string, tpl Template) error {
	v, _ := prepared.LoadOrStore(tplName, &templateOnce{})
	once := v.(*templateOnce)
	once.mu.Lock()
	defer once.mu.Unlock()
	if once.ready {
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()

	// Advisory locks are scoped to a database and held by a session: every process locks on
	// the base database, through one connection kept for the whole preparation. A process that
	// dies releases its lock with its connection.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("taking a connection: %w", err)
	}
	defer conn.Close()
	key := lockKey(tplName)
	if _, err := conn.ExecContext(ctx, sqlLock, key); err != nil {
		return fmt.Errorf("taking the advisory lock: %w", err)
	}
	defer func() {
		// A fresh context, so the lock is released even when ctx has expired. Should the unlock
		// fail anyway, New closes db, which ends the session and with it the lock.
		unlockCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(unlockCtx, sqlUnlock, key)
	}()

	var mark string
	err = conn.QueryRowContext(ctx, sqlTemplateMark, tplName).Scan(&mark)
	switch {
	case err == nil && mark == readyComment:
		once.ready = true
		return nil
	case err == nil:
		// Left half-built by a process that died during Setup.
		if _, err := conn.ExecContext(ctx, "DROP DATABASE "+pq.QuoteIdentifier(tplName)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dropping the unfinished template: %w", err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("looking up the template: %w", err)
	}

	if err := buildTemplate(ctx, conn, base, tplName, tpl); err != nil {
		dropCtx, cancel := context.WithTimeout(context.Background(), cloneTimeout)
		defer cancel()
		_, _ = conn.ExecContext(dropCtx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(tplName)+" WITH (FORCE)")
		return err
	}
	once.ready = true
	return nil
}

func buildTemplate(ctx context.Context, conn *sql.Conn, base *url.URL, tplName string, tpl Template) error {
	// template0 rather than the default template1: nobody can be connected to it, and it holds
	// only what PostgreSQL itself puts there.
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(tplName)+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("creating the template database: %w", err)
	}
	if tpl.Setup != nil {
		tdb, err := sql.Open("postgres", withDatabase(base, tplName).String())
		if err != nil {
			return fmt.Errorf("opening the template database: %w", err)
		}
		err = tpl.Setup(ctx, tdb)
		// Clones fail while anyone is connected to the template, so close before marking it
		// ready.
		if cerr := tdb.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing the template database: %w", cerr)
		}
		if err != nil {
			return fmt.Errorf("running Setup: %w", err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMENT ON DATABASE "+pq.QuoteIdentifier(tplName)+" IS "+pq.QuoteLiteral(readyComment)); err != nil {
		return fmt.Errorf("marking the template ready: %w", err)
	}
	return nil
}

func dropDatabase(base *url.URL, name string) error {
	db, err := sql.Open("postgres", base.String())
	if err != nil {
		return fmt.Errorf("opening %s: %w", withoutPassword(base), err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cloneTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping %s: %w", name, err)
	}
	return nil
}

// templateName derives the template database's name from Template.Name. 16 hex digits keep it
// well under PostgreSQL's 63-byte limit and make collisions between names implausible.
func templateName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return templatePrefix + hex.EncodeToString(sum[:8])
}

// lockKey maps a template database name to an advisory lock key. Other users of advisory locks
// on the base database would have to hit the same 64-bit value to interfere.
func lockKey(tplName string) int64 {
	sum := sha256.Sum256([]byte("pgtest:" + tplName))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

// parseBaseURL accepts only URL-form connection strings: test database URLs are made by
// replacing the path, which key=value strings do not have.
func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The value is not echoed: a key=value string may hold a password.
		return nil, errors.New("RELAY_TEST_DATABASE_URL must be a postgres:// URL; key=value connection strings are not supported")
	}
	return u, nil
}

// withDatabase returns base with its database name replaced, keeping the user, host and query
// parameters.
func withDatabase(base *url.URL, name string) *url.URL {
	u := *base
	u.Path = "/" + name
	u.RawPath = ""
	return &u
}

// withoutPassword returns u as a string with the password removed (not masked), for messages.
func withoutPassword(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}
