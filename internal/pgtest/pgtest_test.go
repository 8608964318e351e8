package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lib/pq"
	"go.uber.org/goleak"
)

// TestMain checks that pgtest leaves no goroutine behind: the packages that use it verify the
// same with goleak, and a pooled connection kept open here would fail them all. The helper
// processes of TestFailedSetupIsRebuiltByTheNextProcess are exempt: pgtestdb leaves its
// connection to the base database open when it fails a test, and they make it fail on purpose.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run())
	}
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
		if !slices.ContainsFunc(ft.logs, func(l string) bool { return strings.Contains(l, dsn) }) {
			t.Fatalf("logs = %q, want a line with %s", ft.logs, dsn)
		}
	})
}

func TestTemplatePreparedOnceForParallelTests(t *testing.T) {
	t.Parallel()
	var (
		setups  atomic.Int32
		tplName atomic.Value
	)
	tpl := Template{
		Name: "pgtest once " + randomHex(),
		Setup: func(ctx context.Context, db *sql.DB) error {
			setups.Add(1)
			tplName.Store(currentDatabase(ctx, db))
			return createWidgets(ctx, db)
		},
	}
	t.Cleanup(func() {
		if name, ok := tplName.Load().(string); ok {
			dropForTest(t, name)
		}
	})

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

// A failed Setup is remembered for the rest of its process, so the next process is the one that
// rebuilds the template: each step runs in a process of its own, started from this test binary.
const (
	helperEnv   = "PGTEST_HELPER"
	templateEnv = "PGTEST_HELPER_TEMPLATE"
	// nameMarker prefixes the line on which a helper prints the template database's name.
	nameMarker = "pgtest-template="
)

func TestFailedSetupIsRebuiltByTheNextProcess(t *testing.T) {
	t.Parallel()
	name := "pgtest half-built " + randomHex()

	out := runHelper(t, "fail", name)
	_, tplName, found := strings.Cut(out, nameMarker)
	tplName, _, _ = strings.Cut(tplName, "\n")
	if !found || tplName == "" {
		t.Fatalf("the failing helper printed no template name:\n%s", out)
	}
	t.Cleanup(func() { dropForTest(t, tplName) })
	if exists, marked := templateState(t, tplName); !exists || marked {
		t.Fatalf("after a failed Setup: template exists %v, marked %v; want it kept, unmarked", exists, marked)
	}

	runHelper(t, "rebuild", name)
	if exists, marked := templateState(t, tplName); !exists || !marked {
		t.Fatalf("after the rebuild: template exists %v, marked %v; want both", exists, marked)
	}
}

// TestHelperProcess is one step of TestFailedSetupIsRebuiltByTheNextProcess, run in a process of
// its own; it does nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	name := os.Getenv(templateEnv)
	var setups atomic.Int32
	switch os.Getenv(helperEnv) {
	case "fail":
		// What a process that died in Setup leaves behind, and the error a Setup returns.
		tpl := Template{
			Name: name,
			Setup: func(ctx context.Context, db *sql.DB) error {
				setups.Add(1)
				fmt.Println(nameMarker + currentDatabase(ctx, db))
				if _, err := db.ExecContext(ctx, `CREATE TABLE leftover (id int)`); err != nil {
					return err
				}
				return errors.New("setup died")
			},
		}
		for range 2 {
			ft := &fakeTB{TB: t}
			ft.run(func() { New(ft, tpl) })
			if len(ft.fatals) != 1 || !strings.Contains(ft.fatals[0], "setup died") {
				t.Fatalf("fatals = %q, want one with Setup's error", ft.fatals)
			}
		}
		if n := setups.Load(); n != 1 {
			t.Fatalf("Setup ran %d times, want 1: the process remembers the failure", n)
		}
	case "rebuild":
		tpl := Template{
			Name: name,
			Setup: func(ctx context.Context, db *sql.DB) error {
				setups.Add(1)
				return createWidgets(ctx, db)
			},
		}
		db := openDB(t, New(t, tpl))
		if n := setups.Load(); n != 1 {
			t.Fatalf("Setup ran %d times, want 1", n)
		}
		if got := queryString(t, db, `SELECT count(*)::text FROM pg_tables WHERE tablename = 'leftover'`); got != "0" {
			t.Fatalf("the clone has the half-built template's table")
		}
		queryString(t, db, `SELECT name FROM widget WHERE id = 1`)
	}
}

// runHelper runs TestHelperProcess in mode on the template name and returns its output; the
// helper failing fails t.
func runHelper(t *testing.T, mode, name string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, templateEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %q: %v\n%s", mode, err, out)
	}
	return string(out)
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

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, base string }{
		{"Default", DefaultURL},
		{"EscapedPassword", "postgres://u:p%40s%2Fs%3A@db:6543/app"},
		{"NoPort", "postgresql://u@db/app"},
		{"IPv6", "postgres://u@[::1]:5433/app?sslmode=disable"},
		{"SocketInQuery", "postgres:///app?host=/tmp/pg&user=u"},
		{"SettingsInQuery", "postgres://db/?dbname=app&user=u&password=p&application_name=relay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conf, _, err := config(tt.base)
			if err != nil {
				t.Fatal(err)
			}
			// The URL pgtestdb builds for the base database means the same connection to
			// lib/pq as the URL it came from.
			want, got := pqConfig(t, tt.base), pqConfig(t, conf.URL())
			if got != want {
				t.Fatalf("%s became %s:\n got  %+v\n want %+v", tt.base, conf.URL(), got, want)
			}

			// The URLs of test databases: pgtestdb's role and database, the rest kept.
			inst := conf
			inst.User, inst.Password, inst.Database = "pgtdbuser", "pgtdbpass", "testdb_x"
			want.User, want.Password, want.Database = "pgtdbuser", "pgtdbpass", "testdb_x"
			if got := pqConfig(t, inst.URL()); got != want {
				t.Fatalf("test database URL %s:\n got  %+v\n want %+v", inst.URL(), got, want)
			}
		})
	}
}

// connSettings is what decides where lib/pq connects, and as whom.
type connSettings struct {
	Host, User, Password, Database, SSLMode, ApplicationName string
	Port                                                     uint16
}

func pqConfig(t *testing.T, dsn string) connSettings {
	t.Helper()
	c, err := pq.NewConfig(dsn)
	if err != nil {
		t.Fatalf("lib/pq rejects %s: %v", dsn, err)
	}
	return connSettings{
		Host: c.Host, User: c.User, Password: c.Password, Database: c.Database,
		SSLMode: string(c.SSLMode), ApplicationName: c.ApplicationName, Port: c.Port,
	}
}

func TestTemplateHash(t *testing.T) {
	t.Parallel()
	if h, err := (Template{Name: "migrations abc"}).Hash(); err != nil || h != "migrations abc" {
		t.Fatalf("Hash() = %q, %v; want the Name", h, err)
	}
	if _, err := (Template{}).Hash(); err == nil || !strings.Contains(err.Error(), "Name is required") {
		t.Fatalf("Hash() of a Template without a Name: %v, want an error", err)
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
	exists, _ := templateState(t, name)
	return exists
}

// templateState reports whether the database name exists and whether it is marked a template,
// which pgtestdb does only once Setup succeeded.
func templateState(t *testing.T, name string) (exists, marked bool) {
	t.Helper()
	db := openDB(t, BaseURL())
	err := db.QueryRow(`SELECT datistemplate FROM pg_database WHERE datname = $1`, name).Scan(&marked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false
	}
	if err != nil {
		t.Fatalf("looking up database %s: %v", name, err)
	}
	return true, marked
}

// dropForTest drops a database, template or not, that a test made and pgtestdb keeps.
func dropForTest(t *testing.T, name string) {
	t.Helper()
	db, err := sql.Open("postgres", BaseURL())
	if err != nil {
		t.Errorf("opening the base database: %v", err)
		return
	}
	defer db.Close()
	for _, stmt := range []string{
		// PostgreSQL refuses to drop a database marked as a template.
		"ALTER DATABASE " + pq.QuoteIdentifier(name) + " IS_TEMPLATE false",
		"DROP DATABASE " + pq.QuoteIdentifier(name) + " WITH (FORCE)",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Errorf("%s: %v", stmt, err)
			return
		}
	}
}

// currentDatabase names the database db is connected to; Setup learns its template's name so.
func currentDatabase(ctx context.Context, db *sql.DB) string {
	var name string
	_ = db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&name)
	return name
}

// randomHex makes template Names unique to one test run, so each run prepares them afresh.
func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}
