// Command bench is outbox-relay's end-to-end benchmark: the real relay binary in its own
// process(es), a real HTTP receiver in another, and PostgreSQL, all on this machine. Run it
// from the repository root through scripts/with-postgres.sh ("make bench"); bench/README.md
// explains every figure.
//
// Usage:
//
//	bench [-quick] [-scenarios drain,limit,fanout,steady,slow,idle,ordered,many,wide,tenants,fleet,river] [-replicas N] ...
//	bench receiver -addr 127.0.0.1:0     (started by the harness itself)
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the PostgreSQL driver
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "receiver" {
		if err := runReceiver(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench receiver: %v\n", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(runBench(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	scenarios       []string
	quick           bool
	replicas        int
	databaseURL     string
	relayBin        string
	out             string
	countStatements bool
	timeout         time.Duration
	keepLogs        bool
	relayEnv        []string
	riverBin        string
	limitConfigs    []limitConfig
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parseOptions(args []string, stderr io.Writer) (o options, err error) {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.String("scenarios", strings.Join(names, ","), "comma-separated scenarios to run")
	fs.BoolVar(&o.quick, "quick", false, "scaled-down sizes, for a smoke run of about a minute")
	fs.IntVar(&o.replicas, "replicas", 1, "relay processes to run side by side")
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("RELAY_TEST_DATABASE_URL"), "PostgreSQL server URL (a database on it is created per scenario); scripts/with-postgres.sh sets RELAY_TEST_DATABASE_URL")
	fs.StringVar(&o.relayBin, "relay-bin", "", "relay binary to run; empty: go build -o bin/outbox-relay . first")
	fs.StringVar(&o.out, "out", "bench-results.json", "where to write the JSON results")
	fs.BoolVar(&o.countStatements, "count-statements", true, "route the relays through a counting proxy to count statements and round trips")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long a scenario may wait for its deliveries")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the relay and receiver logs (kept anyway when a scenario fails)")
	fs.Var((*stringList)(&o.relayEnv), "relay-env", "extra KEY=VALUE for the relays, e.g. -relay-env RELAY_BATCH_SIZE=200 (repeatable)")
	fs.StringVar(&o.riverBin, "river-bin", "", "River sender binary for the river scenario; empty: go build it in bench/river first")
	limitList := fs.String("limit-configs", defaultLimitConfigs, "the limit scenario's settings: CONNSxBATCH, + for record_and_lease_due; the best counts")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, n := range strings.Split(*list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(names, n) {
			return o, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(names, ", "))
		}
		o.scenarios = append(o.scenarios, n)
	}
	if len(o.scenarios) == 0 {
		return o, errors.New("no scenario selected")
	}
	if o.limitConfigs, err = parseLimitConfigs(*limitList); err != nil {
		return o, err
	}
	if o.replicas < 1 {
		return o, errors.New("-replicas must be at least 1")
	}
	for _, kv := range o.relayEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || !strings.HasPrefix(k, "RELAY_") {
			return o, fmt.Errorf("-relay-env %q: want RELAY_NAME=value", kv)
		}
	}
	if o.databaseURL == "" {
		return o, errors.New("no PostgreSQL: run through scripts/with-postgres.sh (make bench) or pass -database-url")
	}
	return o, nil
}

func runBench(args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Whatever happens below, no relay or receiver outlives the harness.
	defer killAll(5 * time.Second)

	h, mach, err := newHarness(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer h.admin.Close()

	var results []Result
	failed := false
	for _, sc := range scenarios {
		if !slices.Contains(opts.scenarios, sc.name) || ctx.Err() != nil {
			continue
		}
		progress("%s: setting up", sc.name)
		r := Result{Scenario: sc.name}
		e, err := h.newEnv(ctx, sc.name)
		if err == nil {
			err = sc.run(ctx, e, &r)
			e.close()
		}
		r.derive()
		if err != nil {
			r.Error = err.Error()
			failed = true
			progress("%s: FAILED: %v", sc.name, err)
		} else {
			progress("%s: done", sc.name)
		}
		results = append(results, r)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted; relays and receivers stopped, databases dropped")
		failed = true
	}

	rep := newReport(h, mach, results)
	rep.print(stdout)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(stdout, "\ninterrupted: %s left as it was\n", opts.out)
	case rep.write(opts.out) != nil:
		fmt.Fprintf(stderr, "bench: writing %s failed\n", opts.out)
		failed = true
	default:
		fmt.Fprintf(stdout, "\nresults written to %s\n", opts.out)
	}
	if opts.keepLogs || failed {
		fmt.Fprintf(stdout, "relay and receiver logs kept in %s\n", h.logDir)
	} else {
		os.RemoveAll(h.logDir)
	}
	if failed {
		return 1
	}
	return 0
}

// newHarness checks the server, builds the relay and describes the machine.
func newHarness(ctx context.Context, opts options) (*harness, machine, error) {
	h := &harness{opts: opts, size: fullSizes}
	if opts.quick {
		h.size = quickSizes
	}
	var m machine
	if _, err := os.Stat("go.mod"); err != nil {
		return nil, m, errors.New("run from the repository root (make bench)")
	}
	u, err := url.Parse(opts.databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, m, fmt.Errorf("-database-url must be a postgres:// URL, got %q", opts.databaseURL)
	}
	h.server = u
	if h.admin, err = sql.Open("postgres", opts.databaseURL); err != nil {
		return nil, m, fmt.Errorf("opening database: %w", err)
	}
	if err := h.admin.QueryRowContext(ctx, "SHOW server_version").Scan(&m.Postgres); err != nil {
		h.admin.Close()
		return nil, m, fmt.Errorf("reaching PostgreSQL: %w", err)
	}
	h.relayBin = opts.relayBin
	if h.relayBin == "" {
		h.relayBin = filepath.Join("bin", "outbox-relay")
		progress("building %s (go build, no -race)", h.relayBin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", h.relayBin, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			h.admin.Close()
			return nil, m, fmt.Errorf("building the relay: %w", err)
		}
	}
	if h.relayBin, err = filepath.Abs(h.relayBin); err != nil {
		h.admin.Close()
		return nil, m, err
	}
	if h.self, err = os.Executable(); err != nil {
		h.admin.Close()
		return nil, m, fmt.Errorf("finding this program for the receiver: %w", err)
	}
	if h.logDir, err = os.MkdirTemp("", "outbox-relay-bench-"); err != nil {
		h.admin.Close()
		return nil, m, err
	}
	m.Cores = runtime.NumCPU()
	m.GoVersion = runtime.Version()
	m.GOOS, m.GOARCH = runtime.GOOS, runtime.GOARCH
	m.GitCommit, m.GitDirty = gitState()
	m.Hostname, _ = os.Hostname()
	return h, m, nil
}

// gitState returns HEAD and whether tracked files differ from it (other work in the tree
// may then be in the binary).
func gitState() (commit string, dirty bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	status, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(bytes.TrimSpace(status)) > 0
}

// progress reports what the harness is doing on stderr, so stdout stays the table.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
