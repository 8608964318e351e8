package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // the driver pgtestdb opens as "postgres"
	"github.com/peterldowns/pgtestdb"
)

// DefaultURL is the base URL used when RELAY_TEST_DATABASE_URL is not set: the server that
// scripts/with-postgres.sh looks for first.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// connectTimeout bounds the first contact with the server, so a firewalled address fails the
// test quickly instead of at the test binary's deadline.
const connectTimeout = 10 * time.Second

// Template describes how to prepare the template database that test databases are cloned from.
// It is the pgtestdb.Migrator that [New] hands to pgtestdb.
type Template struct {
	// Name is the template's stable identity, for example a hash of the migrations. Required.
	// pgtestdb names the template database after a hash of it, and a template with a given
	// Name is prepared once and then reused by every test process and every later run.
	Name string

	// Setup prepares the freshly created, empty template database, for example by applying
	// migrations. It runs once per Name, and must not leave goroutines or connections behind.
	// Optional: without it, test databases start empty.
	Setup func(ctx context.Context, db *sql.DB) error
}

var _ pgtestdb.Migrator = Template{}

// Hash returns Name, which pgtestdb hashes (with its role) into the template database's name.
func (tpl Template) Hash() (string, error) {
	if tpl.Name == "" {
		return "", errors.New("pgtest: Template.Name is required")
	}
	return tpl.Name, nil
}

// Migrate runs Setup on the template database pgtestdb has just created.
func (tpl Template) Migrate(ctx context.Context, db *sql.DB, _ pgtestdb.Config) error {
	if tpl.Setup == nil {
		return nil
	}
	return tpl.Setup(ctx, db)
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
// failed: then the database is kept, and the URL pgtestdb logged when creating it leads to it.
// New calls t.Fatalf when there is no usable server or the template cannot be prepared.
func New(t testing.TB, tpl Template) string {
	t.Helper()
	conf, base, err := config(BaseURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := reachable(conf, base); err != nil {
		t.Fatalf("%v", err)
	}
	return pgtestdb.Custom(t, conf, tpl).URL()
}

// config turns a postgres:// URL into the parts pgtestdb.Config wants. It also returns the
// parsed URL, for messages.
func config(s string) (pgtestdb.Config, *url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The value is not echoed: a key=value string may hold a password.
		return pgtestdb.Config{}, nil, errors.New("RELAY_TEST_DATABASE_URL must be a postgres:// URL; key=value connection strings are not supported")
	}

	var user, password string
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
	}
	database := strings.TrimPrefix(u.Path, "/")
	// pgtestdb sets its own role and database in the URL's authority and path; the same
	// settings left in the query would compete with them, so they move out of it.
	query := u.Query()
	for key, field := range map[string]*string{"user": &user, "password": &password, "dbname": &database} {
		if v := query.Get(key); v != "" {
			*field = v
		}
		query.Del(key)
	}

	host, port := u.Hostname(), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if host != "" && port == "" {
		// Tests take host:port from the URLs New returns (relaytest.TargetOf).
		port = "5432"
	}

	// Config.URL pastes the parts into a URL as they are, so they are stored escaped.
	escapedUser, escapedPassword, _ := strings.Cut(url.UserPassword(user, password).String(), ":")
	return pgtestdb.Config{
		DriverName: "postgres",
		Host:       host,
		Port:       port,
		User:       escapedUser,
		Password:   escapedPassword,
		Database:   url.PathEscape(database),
		Options:    query.Encode(),
		// A connection the test forgot to close must not keep its database alive.
		ForceTerminateConnections: true,
	}, u, nil
}

// reachable checks that a server answers at conf. pgtestdb connects without a timeout and
// reports an unreachable server as a failure to create its role, so New checks first and says
// in one line how to get a server.
func reachable(conf pgtestdb.Config, base *url.URL) error {
	db, err := conf.Connect()
	if err != nil {
		return fmt.Errorf("pgtest: opening %s: %w", withoutPassword(base), err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf(`no PostgreSQL at %s: run "make test" (it finds or starts one) or set RELAY_TEST_DATABASE_URL`,
				withoutPassword(base))
		}
		return fmt.Errorf("pgtest: connecting to %s: %w", withoutPassword(base), err)
	}
	return nil
}

// withoutPassword returns u as a string with the password removed (not masked), for messages.
func withoutPassword(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}
