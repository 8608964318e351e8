package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The river scenario: the webhook sender a Go team would otherwise write, with River
// (bench/river, a module of its own so that the relay's module never depends on River), on
// the same receiver and measured the same way as the relay: drain (DrainEvents jobs already
// inserted, 1 endpoint) and steady (SteadyRate jobs/s for SteadyFor, one transaction each),
// with River's defaults and tuned. Each run gets a fresh database (River's migrations run
// in it first), receiver and counting proxy, as each fleet count does.

// riverSetting is one River client configuration.
type riverSetting struct {
	Name              string        `json:"name"`
	MaxWorkers        int           `json:"max_workers"`
	FetchCooldown     time.Duration `json:"fetch_cooldown_ns"`
	FetchPollInterval time.Duration `json:"fetch_poll_interval_ns"`
}

func (s riverSetting) String() string {
	return fmt.Sprintf("%d workers, FetchCooldown %s, FetchPollInterval %s", s.MaxWorkers, s.FetchCooldown, s.FetchPollInterval)
}

// River's settings. River has no default MaxWorkers (a queue must name one); its
// documentation and examples use 100. FetchCooldown (100 ms) and FetchPollInterval (1 s)
// are River's defaults (river.FetchCooldownDefault, river.FetchPollIntervalDefault).
var (
	riverDefault  = riverSetting{Name: "default", MaxWorkers: 100, FetchCooldown: 100 * time.Millisecond, FetchPollInterval: time.Second}
	riverTuned128 = riverSetting{Name: "tuned128", MaxWorkers: 128, FetchCooldown: 10 * time.Millisecond, FetchPollInterval: time.Second}
	riverTuned256 = riverSetting{Name: "tuned256", MaxWorkers: 256, FetchCooldown: 10 * time.Millisecond, FetchPollInterval: time.Second}
	riverFast     = riverSetting{Name: "1ms", MaxWorkers: 64, FetchCooldown: time.Millisecond, FetchPollInterval: time.Second}
)

// riverRunSpec is one run of the scenario: a mode (drain or steady) with a setting.
type riverRunSpec struct {
	mode    string
	setting riverSetting
}

var riverRuns = []riverRunSpec{
	{"drain", riverDefault},
	{"drain", riverTuned128},
	{"drain", riverTuned256},
	{"steady", riverDefault},
	{"steady", riverFast},
}

// The runs the targets compare with the relay.
const (
	riverDrainBaseline  = "river-drain/tuned128"
	riverSteadyBaseline = "river-steady/1ms"
)

// riverRun is one run's figures.
type riverRun struct {
	Mode    string       `json:"mode"`
	Setting riverSetting `json:"setting"`
	Result  Result       `json:"result"`
}

// riverStats is what "river" measures.
type riverStats struct {
	// River is the River version bench/river/go.mod requires.
	River string     `json:"river_version"`
	Runs  []riverRun `json:"runs"`
	// RelaySteady and RelayDrain are the relay's steady and drain runs made between River's
	// extra runs (riverPairs).
	RelaySteady []Result `json:"relay_steady,omitempty"`
	RelayDrain  []Result `json:"relay_drain,omitempty"`
}

// riverPairs is how many more times each comparison with River runs, as pairs: the relay's
// drain then River's tuned128 drain, the relay's steady then River's 1 ms steady, each in a
// fresh database. The figures at stake drift over minutes on a shared machine: a steady p50
// of a few milliseconds has a disk flush in every event's way on both sides (the
// publisher's commit), and a drain of a few seconds is at the mercy of whatever else runs
// (River's tuned128 drain gave 4,273/s and 5,378/s within the same hour). The targets
// compare the medians of the relay's and River's runs, taken side by side.
const riverPairs = 2

// riverAppName is the application_name of the River sender's connections.
const riverAppName = "outbox-relay-bench-river"

// riverDir is the River sender's module, from the repository root.
var riverDir = filepath.Join("bench", "river")

func runRiver(ctx context.Context, e *env, r *Result) error {
	s := e.h.size
	r.Description = fmt.Sprintf("a River webhook sender (bench/river): %d jobs already inserted, and %d jobs/s for %s, 1 endpoint; a fresh database each run",
		s.DrainEvents, s.SteadyRate, s.SteadyFor)
	rs := &riverStats{River: riverVersion(filepath.Join(riverDir, "go.mod"))}
	r.River = rs
	r.Complete = true
	bin, err := e.h.riverSender(ctx)
	if err != nil {
		return err
	}
	for i, spec := range riverRuns {
		run := e
		if i > 0 {
			name := fmt.Sprintf("river_%s_%s", spec.mode, spec.setting.Name)
			progress("%s: setting up for %s/%s", e.name, spec.mode, spec.setting.Name)
			if run, err = e.h.newEnv(ctx, name); err != nil {
				return fmt.Errorf("%s/%s: %w", spec.mode, spec.setting.Name, err)
			}
		}
		rr, err := riverOnce(ctx, run, bin, spec)
		run.close()
		rr.Result.derive()
		if err != nil {
			return fmt.Errorf("%s: %w", rr.Result.Scenario, err)
		}
		rs.Runs = append(rs.Runs, rr)
		r.tally(rr.Result)
	}
	for i := range riverPairs {
		for _, p := range []struct {
			mode  string
			relay func(context.Context, *env, *Result) error
			river riverSetting
			into  *[]Result
		}{
			{"drain", runDrain, riverTuned128, &rs.RelayDrain},
			{"steady", runSteady, riverFast, &rs.RelaySteady},
		} {
			pair := fmt.Sprintf("(%d)", i+2)
			progress("%s: %s pair %s: the relay", e.name, p.mode, pair)
			relay := Result{Scenario: p.mode + " " + pair}
			run, err := e.h.newEnv(ctx, fmt.Sprintf("river_pair%d_%s_relay", i+2, p.mode))
			if err == nil {
				err = p.relay(ctx, run, &relay)
				run.close()
			}
			relay.derive()
			if err != nil {
				return fmt.Errorf("%s: %w", relay.Scenario, err)
			}
			*p.into = append(*p.into, relay)
			progress("%s: %s pair %s: River", e.name, p.mode, pair)
			if run, err = e.h.newEnv(ctx, fmt.Sprintf("river_pair%d_%s_river", i+2, p.mode)); err != nil {
				return err
			}
			rr, err := riverOnce(ctx, run, bin, riverRunSpec{p.mode, p.river})
			run.close()
			rr.Result.Scenario += " " + pair
			rr.Result.derive()
			if err != nil {
				return fmt.Errorf("%s: %w", rr.Result.Scenario, err)
			}
			rs.Runs = append(rs.Runs, rr)
			r.tally(relay)
			r.tally(rr.Result)
		}
	}
	return nil
}

// tally adds one run's counts to the scenario's, which is complete only if every run was.
func (r *Result) tally(run Result) {
	r.Events += run.Events
	r.Expected += run.Expected
	r.Delivered += run.Delivered
	r.Duplicates += run.Duplicates
	r.Complete = r.Complete && run.Complete
}

// riverOnce runs one mode with one setting in e.
func riverOnce(ctx context.Context, e *env, bin string, spec riverRunSpec) (riverRun, error) {
	const path = "/hook/river"
	s := e.h.size
	rr := riverRun{Mode: spec.mode, Setting: spec.setting}
	r := &rr.Result
	r.Scenario = "river-" + spec.mode + "/" + spec.setting.Name
	r.Process = "River sender"
	r.Subscriptions = 1
	secret, err := newSecret()
	if err != nil {
		return rr, err
	}
	if err := e.riverCommand(ctx, bin, "migrate", "-database-url", e.dbURL); err != nil {
		return rr, fmt.Errorf("River's migrations: %w", err)
	}
	switch spec.mode {
	case "drain":
		n := s.DrainEvents
		r.Description = fmt.Sprintf("%d jobs already inserted (InsertManyFast, up to 5,000 per transaction), 1 endpoint; %s", n, spec.setting)
		r.Events, r.Expected = n, n
		progress("%s: inserting %d River jobs", e.name, n)
		if err := e.riverCommand(ctx, bin, "insert", "-database-url", e.dbURL, "-n", strconv.Itoa(n), "-batch", "5000"); err != nil {
			return rr, fmt.Errorf("inserting jobs: %w", err)
		}
		progress("%s: starting the River sender (%s)", e.name, spec.setting)
		if err := e.startRiverSender(ctx, bin, spec.setting, e.recv.URL(path), secret); err != nil {
			return rr, err
		}
		before := e.probe()
		complete, err := e.waitDelivered(ctx, want{prefix: path, paths: 1, each: n})
		if err != nil {
			return rr, err
		}
		after := e.probe()
		r.Complete = complete
		e.measure(r, before, after)
		got, _, err := e.receivedOn(ctx, r, path)
		if err != nil {
			return rr, err
		}
		lastAt := time.Unix(0, got.last)
		r.StartToLast = lastAt.Sub(e.startedAt).Seconds()
		r.RateWindowS = lastAt.Sub(e.readyAt).Seconds()
	case "steady":
		r.Description = fmt.Sprintf("%d jobs/s for %s (client.Insert, one transaction each, from %d connections), 1 endpoint; %s",
			s.SteadyRate, s.SteadyFor, publishers, spec.setting)
		progress("%s: starting the River sender (%s)", e.name, spec.setting)
		if err := e.startRiverSender(ctx, bin, spec.setting, e.recv.URL(path), secret); err != nil {
			return rr, err
		}
		progress("%s: publishing %d jobs/s for %s", e.name, s.SteadyRate, s.SteadyFor)
		before := e.probe()
		pub, pubTx, pubCPU, err := e.riverPublish(ctx, bin, spec.setting, s.SteadyRate, s.SteadyFor)
		if err != nil {
			return rr, err
		}
		e.harnessTx += pubTx
		r.Publish = &pub
		r.Events, r.Expected = pub.Events, pub.Events
		complete, err := e.waitDelivered(ctx, want{prefix: path, paths: 1, each: pub.Events})
		if err != nil {
			return rr, err
		}
		after := e.probe()
		r.Complete = complete
		e.measure(r, before, after)
		// The publisher is the application, in a process of its own: its CPU is the
		// harness's (as the relay scenarios' publisher is), not the machine's other work.
		r.HarnessCPUSeconds += pubCPU
		r.OtherCPUSeconds -= pubCPU
		got, _, err := e.receivedOn(ctx, r, path)
		if err != nil {
			return rr, err
		}
		r.RateWindowS = time.Unix(0, got.last).Sub(time.Unix(0, pub.FirstCommitNs)).Seconds()
	default:
		return rr, fmt.Errorf("unknown mode %q", spec.mode)
	}
	if r.RateWindowS > 0 {
		r.DeliveriesPerSec = float64(r.Delivered) / r.RateWindowS
	}
	if !r.Complete {
		r.Notes = append(r.Notes, fmt.Sprintf("timed out after %s: %d of %d delivered", e.h.opts.timeout, r.Delivered, r.Expected))
	}
	return rr, e.finishRiver(ctx, r)
}

// riverSender returns the River sender binary: -river-bin, or built once with go build in
// bench/river (its own module: the relay's module never sees River).
func (h *harness) riverSender(ctx context.Context) (string, error) {
	h.riverOnce.Do(func() {
		if h.opts.riverBin != "" {
			h.riverBin, h.riverErr = filepath.Abs(h.opts.riverBin)
			return
		}
		out := filepath.Join(h.logDir, "river-sender")
		progress("building the River sender (go build in %s, its own module)", riverDir)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
		cmd.Dir = riverDir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			h.riverErr = fmt.Errorf("building the River sender in %s: %w", riverDir, err)
			return
		}
		h.riverBin = out
	})
	return h.riverBin, h.riverErr
}

// riverCommand runs one of the sender's set-up commands (migrate, insert) to the end.
func (e *env) riverCommand(ctx context.Context, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("river-sender %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startRiverSender closes the harness's own connections, takes the statistics snapshot,
// starts the sender through the counting proxy and waits until it says it is ready. The
// sender then counts as the env's one relay: probes, peak RSS, stop and exit checks.
func (e *env) startRiverSender(ctx context.Context, bin string, s riverSetting, target, secret string) error {
	if e.setup != nil {
		e.setup.Close()
		e.setup = nil
	}
	var err error
	if e.xactBefore, err = e.h.settledXact(ctx, e.dbName); err != nil {
		return err
	}
	logPath := filepath.Join(e.h.logDir, e.name+"-river.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	e.startedAt = time.Now()
	cmd := exec.Command(bin, "run",
		"-database-url", withAppName(e.relayURL, riverAppName).String(),
		"-url", target, "-secret", secret,
		"-workers", strconv.Itoa(s.MaxWorkers),
		"-fetch-cooldown", s.FetchCooldown.String(),
		"-fetch-poll-interval", s.FetchPollInterval.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return err
	}
	cmd.Stderr = logFile
	c, err := startChild(cmd, "River sender", logFile)
	if err != nil {
		return err
	}
	e.relays = append(e.relays, &relayProc{child: c, logPath: logPath})
	got := make(chan string, 1)
	go func() {
		lines := bufio.NewReader(stdout)
		line, _ := lines.ReadString('\n')
		got <- line
		_, _ = io.Copy(io.Discard, lines)
	}()
	select {
	case line := <-got:
		if strings.TrimSpace(line) != "ready" {
			<-c.done
			return fmt.Errorf("the River sender did not start (%v); its log:\n%s", c.err, tail(logPath, 20))
		}
	case <-time.After(60 * time.Second):
		return fmt.Errorf("the River sender not ready after 60s; its log:\n%s", tail(logPath, 20))
	case <-ctx.Done():
		return ctx.Err()
	}
	e.readyAt = time.Now()
	e.allReadyAt = e.readyAt
	return nil
}

// riverPublish runs the sender's publisher to the end: rate jobs/s for d, each its own
// transaction, with the setting's FetchCooldown (River paces its insert notifications by
// it). It returns the publisher's figures, the transactions it ran and its CPU seconds.
func (e *env) riverPublish(ctx context.Context, bin string, s riverSetting, rate int, d time.Duration) (publishStats, int64, float64, error) {
	cmd := exec.CommandContext(ctx, bin, "publish", "-database-url", e.dbURL,
		"-rate", strconv.Itoa(rate), "-for", d.String(), "-fetch-cooldown", s.FetchCooldown.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var cpu float64
	if cmd.ProcessState != nil {
		cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if err != nil {
		return publishStats{}, 0, cpu, fmt.Errorf("river-sender publish: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	pub, tx, err := parsePublishReport(stdout.Bytes())
	return pub, tx, cpu, err
}

// riverPublishReport is what "river-sender publish" prints (bench/river/main.go).
type riverPublishReport struct {
	Events        int       `json:"events"`
	Publishers    int       `json:"publishers"`
	FirstCommitNs int64     `json:"first_commit_unix_ns"`
	AchievedRate  float64   `json:"achieved_events_per_sec"`
	MaxLagMs      float64   `json:"max_schedule_lag_ms"`
	InsertMs      []float64 `json:"insert_ms"`
	Transactions  int64     `json:"transactions"`
}

// parsePublishReport reads the publisher's report: its last line of output, a JSON object.
func parsePublishReport(out []byte) (publishStats, int64, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var rep riverPublishReport
	if !strings.HasPrefix(last, "{") {
		return publishStats{}, 0, fmt.Errorf("the River publisher printed no report: %q", truncate(last, 200))
	}
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		return publishStats{}, 0, fmt.Errorf("reading the River publisher's report: %w", err)
	}
	if rep.Events <= 0 || len(rep.InsertMs) != rep.Events || rep.FirstCommitNs <= 0 || rep.Transactions < int64(rep.Events) {
		return publishStats{}, 0, fmt.Errorf("the River publisher's report does not add up: %d events, %d insert times, first commit %d, %d transactions",
			rep.Events, len(rep.InsertMs), rep.FirstCommitNs, rep.Transactions)
	}
	return publishStats{
		Events: rep.Events, Publishers: rep.Publishers, FirstCommitNs: rep.FirstCommitNs,
		AchievedRate: rep.AchievedRate, MaxLagMs: rep.MaxLagMs, Insert: Summarize(rep.InsertMs),
	}, rep.Transactions, nil
}

// finishRiver stops the sender and gathers what only exists after it is gone: the final
// transaction count, the jobs' states and attempts, and its log.
func (e *env) finishRiver(ctx context.Context, r *Result) error {
	if err := e.stopAndCount(ctx, r); err != nil {
		return err
	}
	db, err := e.db()
	if err != nil {
		return err
	}
	r.DeliveryStates = map[string]int{}
	rows, err := db.QueryContext(ctx, riverJobStates)
	if err != nil {
		return fmt.Errorf("reading River's jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n, attempts, errs int
		if err := rows.Scan(&state, &n, &attempts, &errs); err != nil {
			return err
		}
		r.DeliveryStates[state] = n
		r.Attempts += attempts
		r.FailedAttempts += errs
	}
	return rows.Err()
}

// riverJobStates counts River's jobs by state, with their attempts and recorded errors.
const riverJobStates = `
SELECT state::text, count(*)::int, coalesce(sum(attempt), 0)::int, coalesce(sum(cardinality(errors)), 0)::int
FROM river_job GROUP BY 1 ORDER BY 1`

// riverVersion is the River version a go.mod requires ("" when it cannot tell).
func riverVersion(goMod string) string {
	b, err := os.ReadFile(goMod)
	if err != nil {
		return ""
	}
	return requiredVersion(b, "github.com/riverqueue/river")
}

// requiredVersion finds module's version in the text of a go.mod: a "require" line, alone or
// in a block.
func requiredVersion(goMod []byte, module string) string {
	sc := bufio.NewScanner(bytes.NewReader(goMod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	return ""
}

// riverOnceState is the harness's River sender, built at most once.
type riverOnceState struct {
	riverOnce sync.Once
	riverBin  string
	riverErr  error
}
