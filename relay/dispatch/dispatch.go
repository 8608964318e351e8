package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/internal/defaults"
	"github.com/referralloop/outbox-relay/internal/health"
	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/internal/poll"
	"github.com/referralloop/outbox-relay/internal/retry"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/metrics"
)

// Config configures a Dispatcher.
type Config struct {
	// DB is the relay's database; required.
	DB *sqlx.DB
	// Schema holds the relay's tables; outbox.DefaultSchema when empty.
	Schema string
	// BatchSize is how many outbox rows one claim takes; defaults.BatchSize when zero.
	BatchSize int
	// PollInterval is the safety-net poll; defaults.PollInterval when zero.
	PollInterval time.Duration
	// Dispatched is called after each committed batch that created deliveries, with their
	// number, to wake the deliverer. Optional; must not block.
	Dispatched func(deliveries int)
	// Metrics, optional, counts dispatched events and created deliveries.
	Metrics *metrics.Metrics
	// Logger is the component's logger.
	Logger zerolog.Logger
}

// Dispatcher claims outbox rows and fans them out. Safe for several replicas at once.
type Dispatcher struct {
	cfg   Config
	claim *pgstmt.Stmt
	wake  chan struct{}
	// claims tells readiness whether claims keep failing.
	claims health.Tracker
}

// Result counts what one claim did.
type Result struct {
	// Events is the number of outbox rows marked dispatched.
	Events int
	// Deliveries is the number of deliveries created.
	Deliveries int
}

// New returns a Dispatcher for cfg.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.DB == nil {
		return nil, errors.New("dispatch: DB is required")
	}
	if cfg.Schema == "" {
		cfg.Schema = outbox.DefaultSchema
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = defaults.BatchSize
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = defaults.PollInterval
	}
	return &Dispatcher{
		cfg:   cfg,
		claim: pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, claimAndFanOut)),
		wake:  make(chan struct{}, 1),
	}, nil
}

// Kick asks the dispatcher to claim now. It never blocks; kicks coalesce.
func (d *Dispatcher) Kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Trouble says why the dispatcher cannot do its work (claims keep failing), or "" when it
// can.
func (d *Dispatcher) Trouble() string {
	return d.claims.Trouble("dispatching outbox rows", health.FailingLimit)
}

// Run claims and fans out until ctx ends, then returns nil. A batch in progress at that
// moment commits or rolls back whole.
func (d *Dispatcher) Run(ctx context.Context) {
	log := d.cfg.Logger
	bo := retry.NewBackoff()

	poll := poll.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	for {
		if err := d.drain(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			d.claims.Fail(err)
			d.cfg.Metrics.LocalFault(metrics.FaultDatabase, 1)
			wait := bo.NextBackOff()
			log.Warn().Err(err).Dur("retry_in", wait.Round(time.Millisecond)).Msg("dispatching outbox rows")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		bo.Reset()
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-poll.C:
		}
	}
}

// drain claims batches until one comes back short. Each full batch doubles the next, up to
// defaults.BacklogBatches times BatchSize.
func (d *Dispatcher) drain(ctx context.Context) error {
	size := d.cfg.BatchSize
	for {
		res, err := d.dispatch(ctx, size)
		if err != nil {
			return err
		}
		if res.Events < size {
			return nil
		}
		size = min(2*size, defaults.BacklogBatches*d.cfg.BatchSize)
	}
}

// DispatchOnce claims one batch of outbox rows and creates their deliveries, in one
// statement and so in one transaction.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (Result, error) {
	return d.dispatch(ctx, d.cfg.BatchSize)
}

// dispatch claims up to size outbox rows and creates their deliveries.
func (d *Dispatcher) dispatch(ctx context.Context, size int) (Result, error) {
	var res Result
	if err := d.claim.QueryRow(ctx, []any{size}, &res.Events, &res.Deliveries); err != nil {
		return Result{}, fmt.Errorf("claiming outbox rows: %w", err)
	}
	d.claims.OK()
	d.cfg.Metrics.Dispatched(res.Events, res.Deliveries)
	if res.Events > 0 {
		d.cfg.Logger.Debug().Int("events", res.Events).Int("deliveries", res.Deliveries).Msg("dispatched")
	}
	if res.Deliveries > 0 && d.cfg.Dispatched != nil {
		d.cfg.Dispatched(res.Deliveries)
	}
	return res, nil
}
