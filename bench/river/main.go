// Command river-sender is the bench's baseline: the webhook sender a Go team would write
// with River (github.com/riverqueue/river) instead of running outbox-relay. It lives in a
// module of its own, so that the relay's module never depends on River; the bench harness
// (bench/river.go in the relay's module) builds it with `go build` in this directory and
// runs it as a separate process, as it runs the relay.
//
// Sub-commands, each against -database-url:
//
//	migrate    River's migrations (rivermigrate), up to the latest
//	insert     -n jobs with InsertManyFast, -batch per transaction (the drain backlog)
//	publish    -rate jobs/s for -for, one client.Insert (one transaction) each, from 4
//	           connections on an absolute schedule; prints a JSON report on stdout
//	run        the sender: a River client working the "webhook" jobs; prints "ready" on
//	           stdout once started, and stops on SIGTERM or SIGINT
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: river-sender migrate|insert|publish|run [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "migrate":
		err = runMigrate(ctx, args)
	case "insert":
		err = runInsert(ctx, args)
	case "publish":
		err = runPublish(ctx, args, os.Stdout)
	case "run":
		err = runSender(ctx, args, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		logger().Error("river-sender "+os.Args[1]+" failed", "error", err.Error())
		os.Exit(1)
	}
}

// logger writes JSON lines to stderr at warn and above, with the field names the bench
// harness reads in the relay's logs ("level" in lower case, "message").
func logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.MessageKey:
				a.Key = "message"
			case slog.LevelKey:
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			}
			return a
		},
	}))
}

func openPool(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, errors.New("-database-url is required")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing -database-url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

func runMigrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	url := fs.String("database-url", "", "PostgreSQL URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := openPool(ctx, *url, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger()})
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}

// insertClient is a River client that only inserts (no queues): what an application that
// enqueues the jobs holds. cooldown is the FetchCooldown the sender runs with: River sends
// at most one insert notification per queue per FetchCooldown, from the inserting client.
func insertClient(pool *pgxpool.Pool, cooldown time.Duration) (*river.Client[pgx.Tx], error) {
	cfg := &river.Config{Logger: logger(), FetchCooldown: cooldown}
	if cooldown > river.FetchPollIntervalDefault {
		cfg.FetchPollInterval = cooldown
	}
	return river.NewClient(riverpgxv5.New(pool), cfg)
}

func runInsert(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("insert", flag.ContinueOnError)
	url := fs.String("database-url", "", "PostgreSQL URL")
	n := fs.Int("n", 20000, "jobs to insert")
	batch := fs.Int("batch", 5000, "jobs per InsertManyFast (one transaction each)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := openPool(ctx, *url, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := insertClient(pool, 0)
	if err != nil {
		return err
	}
	for from := 1; from <= *n; from += *batch {
		to := min(from+*batch-1, *n)
		commitNs := time.Now().UnixNano()
		params := make([]river.InsertManyParams, 0, to-from+1)
		for seq := from; seq <= to; seq++ {
			params = append(params, river.InsertManyParams{Args: newArgs(seq, commitNs)})
		}
		if _, err := client.InsertManyFast(ctx, params); err != nil {
			return fmt.Errorf("inserting jobs %d-%d: %w", from, to, err)
		}
	}
	return nil
}

// publishReport is what "publish" prints: the harness reads it (bench/river.go).
type publishReport struct {
	Events        int       `json:"events"`
	Publishers    int       `json:"publishers"`
	FirstCommitNs int64     `json:"first_commit_unix_ns"`
	AchievedRate  float64   `json:"achieved_events_per_sec"`
	MaxLagMs      float64   `json:"max_schedule_lag_ms"`
	InsertMs      []float64 `json:"insert_ms"`
	// Transactions is what the publisher cost pg_stat_database: one per new connection, one
	// per warm-up SELECT, and one per job (client.Insert runs BEGIN, the INSERT and the
	// insert notification, and COMMIT: one transaction).
	Transactions int64 `json:"transactions"`
}

// publishers is the steady publisher's connections, as in the relay's scenarios.
const publishers = 4

func runPublish(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	url := fs.String("database-url", "", "PostgreSQL URL")
	rate := fs.Int("rate", 500, "jobs per second")
	d := fs.Duration("for", 20*time.Second, "how long to publish")
	cooldown := fs.Duration("fetch-cooldown", 0, "the sender's FetchCooldown (River paces insert notifications by it); 0: River's default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := openPool(ctx, *url, publishers)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := insertClient(pool, *cooldown)
	if err != nil {
		return err
	}
	// Open every connection before the clock starts.
	var conns []*pgxpool.Conn
	for range publishers {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			return err
		}
	}
	for _, c := range conns {
		c.Release()
	}

	n := int(float64(*rate) * d.Seconds())
	rep := publishReport{Events: n, Publishers: publishers, InsertMs: make([]float64, n)}
	commits := make([]int64, n)
	jobs := make(chan int, 1024)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range publishers {
		wg.Go(func() {
			for i := range jobs {
				commitNs := time.Now().UnixNano()
				_, err := client.Insert(ctx, newArgs(i+1, commitNs), nil)
				rep.InsertMs[i] = float64(time.Now().UnixNano()-commitNs) / 1e6
				commits[i] = commitNs
				if err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	interval := time.Second / time.Duration(*rate)
	start := time.Now()
	var lag time.Duration
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		} else {
			lag = max(lag, -wait)
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return fmt.Errorf("publishing: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.FirstCommitNs = slices.Min(commits)
	rep.AchievedRate = float64(n) / elapsed.Seconds()
	rep.MaxLagMs = float64(lag) / 1e6
	rep.Transactions = pool.Stat().NewConnsCount() + publishers + int64(n)
	return json.NewEncoder(stdout).Encode(rep)
}

// senderConfig is the River client the "run" command starts.
type senderConfig struct {
	databaseURL       string
	targetURL         string
	secret            string
	workers           int
	fetchCooldown     time.Duration
	fetchPollInterval time.Duration
	requestTimeout    time.Duration
	stopTimeout       time.Duration
}

func runSender(ctx context.Context, args []string, stdout io.Writer) error {
	var c senderConfig
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL")
	fs.StringVar(&c.targetURL, "url", "", "the endpoint every webhook goes to")
	fs.StringVar(&c.secret, "secret", "", "the endpoint's whsec_ signing secret")
	fs.IntVar(&c.workers, "workers", 100, "MaxWorkers of the default queue (River has no default; its documentation uses 100)")
	fs.DurationVar(&c.fetchCooldown, "fetch-cooldown", river.FetchCooldownDefault, "River FetchCooldown")
	fs.DurationVar(&c.fetchPollInterval, "fetch-poll-interval", river.FetchPollIntervalDefault, "River FetchPollInterval")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 5*time.Second, "one attempt, connect to last byte (the relay's RELAY_DELIVERY_TIMEOUT)")
	fs.DurationVar(&c.stopTimeout, "stop-timeout", 25*time.Second, "how long a SIGTERM waits for running jobs (the relay's RELAY_SHUTDOWN_GRACE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.targetURL == "" {
		return errors.New("-url is required")
	}
	key, err := SecretKey(c.secret)
	if err != nil {
		return err
	}
	// pgxpool's default size (4 on two cores, the relay's RELAY_DB_MAX_CONNS): River's
	// LISTEN connection comes from it too.
	pool, err := openPool(ctx, c.databaseURL, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	workers := river.NewWorkers()
	river.AddWorker(workers, &WebhookWorker{
		URL: c.targetURL, Key: key, Client: newHTTPClient(c.workers),
		UserAgent: "river-sender/bench", RequestTimeout: c.requestTimeout,
	})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c.workers}},
		Workers:           workers,
		FetchCooldown:     c.fetchCooldown,
		FetchPollInterval: c.fetchPollInterval,
		Logger:            logger(),
	})
	if err != nil {
		return err
	}
	// Start's context is the client's for its whole life: a background one, so that a
	// SIGTERM stops it through Stop (finishing running jobs), not by cancellation.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("starting the River client: %w", err)
	}
	// The harness starts its clock here.
	fmt.Fprintln(stdout, "ready")
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), c.stopTimeout)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		return fmt.Errorf("stopping the River client: %w", err)
	}
	return nil
}
