package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lib/pq"
	"go.uber.org/goleak"
)

// TestMain checks that pgtest leaves no goroutine behind: the packages that use it verify the
// same with goleak, and a pooled connection kept open here would fail them all.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// widgetTemplate is reused across runs, as a real migrations template would be.
var widgetTemplate = Template{
	Name:  "pgtest self-test widgets v1",
	Setup: createWidgets,
}

func createWidgets(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, `
		CREATE TABLE widget (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO widget (id, name) VALUES (1, 'from the template');`)
	return err
}

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("DistinctDatabasesWithTemplateObjects", func(t *testing.T) {
		t.Parallel()
		dsn1, dsn2 := New(t, widgetTemplate), New(t, widgetTemplate)
		if dbName(t, dsn1) == dbName(t, dsn2) {
			t.Fatalf("two New calls returned the same database %s", dbName(t, dsn1))
		}
		db1, db2 := openDB(t, dsn1), openDB(t, dsn2)
		for _, db := range []*sql.DB{db1, db2} {
			if got := queryString(t, db, `SELECT name FROM widget WHERE id = 1`); got != "from the template" {
				t.Fatalf("widget 1 = %q, want the template's row", got)
			}
		}
		mustExec(t, db1, `INSERT INTO widget (id, name) VALUES (2, 'only in db1')`)
		if got := queryString(t, db2, `SELECT count(*)::text FROM widget`); got != "1" {
			t.Fatalf("db2 has %s widgets after an insert into db1, want 1", got)
		}
	})

	t.Run("DroppedAfterCleanup", func(t *testing.T) {
		t.Parallel()
		var (
			name     string
			leftOpen *sql.DB
		)
		t.Run("Inner", func(t *testing.T) {
			dsn := New(t, widgetTemplate)
			name = dbName(t, dsn)
			// A connection still open when the test ends must not keep the database alive,
			// so this one is closed only after the check below.
			var err error
			if leftOpen, err = sql.Open("postgres", dsn); err != nil {
				t.Fatalf("opening %s: %v", dsn, err)
			}
			mustExec(t, leftOpen, `SELECT 1`)
		})
		if leftOpen != nil {
			defer leftOpen.Close()
		}
		if databaseExists(t, name) {
			t.Fatalf("database %s still exists after its test's cleanup", name)
		}
	})

	t.Run("EightInParallel", func(t *testing.T) {
		t.Parallel()
		var (
			mu    sync.Mutex
			names = map[string]bool{}
		)
		t.Run("Group", func(t *testing.T) {
			for i := range 8 {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					dsn := New(t, widgetTemplate)
					db := openDB(t, dsn)
					mustExec(t, db, `INSERT INTO widget (id, name) VALUES (2, 'mine')`)
					mu.Lock()
					defer mu.Unlock()
					names[dbName(t, dsn)] = true
				})
			}
		})
		if len(names) != 8 {
			t.Fatalf("8 parallel New calls gave %d distinct databases", len(names))
		}
	})

	t.Run("KeepsDatabaseOfFailedTest", func(t *testing.T) {
		t.Parallel()
		ft := &fakeTB{TB: t, failed: true}
		var dsn string
		ft.run(func() { dsn = New(ft, widgetTemplate) })
		ft.runCleanups()
		name := dbName(t, dsn)
		t.Cleanup(func() { dropForTest(t, name) })

		if len(ft.fatals) > 0 || len(ft.errors) > 0 {
			t.Fatalf("unexpected failures: %q %q", ft.fatals, ft.errors)
		}
		if !databaseExists(t, name) {
			t.Fatalf("the database of a failed test was dropped")
		}
		if len(ft.logs) != 1 || !strings.Contains(ft.logs[0], dsn) {
			t.Fatalf("logs = %q, want one line with %s", ft.logs, dsn)
		}
	})
}

func TestTemplatePreparedOnceForParallelTests(t *testing.T) {
	t.Parallel()
	var setups atomic.Int32
	tpl := Template{
		Name: "pgtest once " + randomHex(8),
		Setup: func(ctx context.Context, db *sql.DB) error {
			setups.Add(1)
			return createWidgets(ctx, db)
		},
	}
	t.Cleanup(func() { dropForTest(t, templateName(tpl.Name)) })

	t.Run("Group", func(t *testing.T) {
		for i := range 8 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				db := openDB(t, New(t, tpl))
				queryString(t, db, `SELECT name FROM widget WHERE id = 1`)
			})
		}
	})
	if n := setups.Load(); n != 1 {
		t.Fatalf("Setup ran %d times, want 1", n)
	}
}

func TestHalfBuiltTemplateIsRebuilt(t *testing.T) {
	t.Parallel()
	var setups atomic.Int32
	tpl := Template{
		Name: "pgtest half-built " + randomHex(8),
		Setup: func(ctx context.Context, db *sql.DB) error {
			setups.Add(1)
			return createWidgets(ctx, db)
		},
	}
	tplName := templateName(tpl.Name)
	t.Cleanup(func() { dropForTest(t, tplName) })

	// What a process that died in Setup leaves: the database, some objects, no 'ready' mark.
	mustExec(t, openDB(t, BaseURL()), "CREATE DATABASE "+pq.QuoteIdentifier(tplName))
	base, err := parseBaseURL(BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	half, err := sql.Open("postgres", withDatabase(base, tplName).String())
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, half, `CREATE TABLE leftover (id int)`)
	half.Close()

	db := openDB(t, New(t, tpl))
	if n := setups.Load(); n != 1 {
		t.Fatalf("Setup ran %d times, want 1", n)
	}
	if got := queryString(t, db, `SELECT count(*)::text FROM pg_tables WHERE tablename = 'leftover'`); got != "0" {
		t.Fatalf("the clone has the half-built template's table")
	}
	queryString(t, db, `SELECT name FROM widget WHERE id = 1`)
}

func TestSetupErrorFailsAndDropsTemplate(t *testing.T) {
	t.Parallel()
	tpl := Template{
		Name:  "pgtest failing setup " + randomHex(8),
		Setup: func(context.Context, *sql.DB) error { return errors.New("boom") },
	}
	tplName := templateName(tpl.Name)
	t.Cleanup(func() { dropForTest(t, tplName) })

	ft := &fakeTB{TB: t}
	ft.run(func() { New(ft, tpl) })
	if len(ft.fatals) != 1 || !strings.Contains(ft.fatals[0], "boom") {
		t.Fatalf("fatals = %q, want one with Setup's error", ft.fatals)
	}
	if databaseExists(t, tplName) {
		t.Fatalf("the template of a failed Setup was kept")
	}

	// The failure is not remembered: a later New tries again.
	tpl.Setup = createWidgets
	queryString(t, openDB(t, New(t, tpl)), `SELECT name FROM widget WHERE id = 1`)
}

// The tests below change RELAY_TEST_DATABASE_URL, so they cannot run in parallel; Go runs them
// before resuming the parallel tests above.

func TestNewWithoutServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	t.Setenv("RELAY_TEST_DATABASE_URL", fmt.Sprintf("postgres://postgres:secret@127.0.0.1:%d/postgres?sslmode=disable", port))

	ft := &fakeTB{TB: t}
	ft.run(func() { New(ft, widgetTemplate) })
	want := fmt.Sprintf(`no PostgreSQL at postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable: `+
		`run "make test" (it finds or starts one) or set RELAY_TEST_DATABASE_URL`, port)
	if len(ft.fatals) != 1 || ft.fatals[0] != want {
		t.Fatalf("fatals = %q, want [%q]", ft.fatals, want)
	}
}

func TestNewRejectsKeyValueBaseURL(t *testing.T) {
	t.Setenv("RELAY_TEST_DATABASE_URL", "host=127.0.0.1 user=postgres password=secret")

	ft := &fakeTB{TB: t}
	ft.run(func() { New(ft, widgetTemplate) })
	if len(ft.fatals) != 1 || !strings.Contains(ft.fatals[0], "must be a postgres:// URL") ||
		strings.Contains(ft.fatals[0], "secret") {
		t.Fatalf("fatals = %q, want one saying a URL is needed, without the password", ft.fatals)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base, want string
	}{
		{"Default", DefaultURL, "postgres://postgres@127.0.0.1:5432/relaytest_x?sslmode=disable"},
		{"Password", "postgres://u:p%40ss@db:6543/app", "postgres://u:p%40ss@db:6543/relaytest_x"},
		{"NoPath", "postgresql://u@db", "postgresql://u@db/relaytest_x"},
		{"SocketInQuery", "postgres:///app?host=/tmp/pg&user=u", "postgres:///relaytest_x?host=/tmp/pg&user=u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, err := parseBaseURL(tt.base)
			if err != nil {
				t.Fatal(err)
			}
			if got := withDatabase(base, "relaytest_x").String(); got != tt.want {
				t.Fatalf("withDatabase(%q) = %q, want %q", tt.base, got, tt.want)
			}
		})
	}
}

func TestTemplateName(t *testing.T) {
	t.Parallel()
	a, b := templateName("migrations abc"), templateName("migrations abd")
	if a != templateName("migrations abc") || a == b {
		t.Fatalf("templateName is not a stable, distinguishing hash: %q %q", a, b)
	}
	if !strings.HasPrefix(a, "relaytest_tpl_") || len(a) > 63 {
		t.Fatalf("templateName = %q, want relaytest_tpl_<hash> within 63 bytes", a)
	}
}

// fakeTB stands in for a test whose failure or output is itself under test.
type fakeTB struct {
	testing.TB // the real test, for anything not recorded here
	failed     bool

	mu       sync.Mutex
	fatals   []string
	errors   []string
	logs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Failed() bool { return f.failed }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.record(&f.fatals, format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Errorf(format string, args ...any) { f.record(&f.errors, format, args...) }
func (f *fakeTB) Logf(format string, args ...any)   { f.record(&f.logs, format, args...) }

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) record(to *[]string, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*to = append(*to, fmt.Sprintf(format, args...))
}

// run calls fn on its own goroutine, so that Fatalf's runtime.Goexit ends fn and not the test.
func (f *fakeTB) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.run(f.cleanups[i])
	}
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("opening %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, query string) {
	t.Helper()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func queryString(t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	var s string
	if err := db.QueryRow(query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parsing %s: %v", dsn, err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	db := openDB(t, BaseURL())
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatalf("looking up database %s: %v", name, err)
	}
	return exists
}

func dropForTest(t *testing.T, name string) {
	t.Helper()
	db, err := sql.Open("postgres", BaseURL())
	if err != nil {
		t.Errorf("opening the base database: %v", err)
		return
	}
	defer db.Close()
	if _, err := db.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)"); err != nil {
		t.Errorf("dropping %s: %v", name, err)
	}
}
