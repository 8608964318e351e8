// Package retention deletes what the relay no longer needs: finished deliveries (with their
// attempts) and dispatched outbox rows older than RELAY_RETENTION.
//
// It also cancels orphans: a fan-out that read a subscription just before it was deleted can
// commit a delivery after the DELETE cancelled the others, and that delivery would otherwise
// stay pending for ever (the claim skips deleted subscriptions). Locking the subscription in
// every fan-out would close that window at a cost on the hot path; a sweep closes it for free.
//
// It runs on every replica. Each pass deletes in small batches (BatchSize rows per statement,
// rows locked by another replica are skipped), so it never holds long locks, never blocks
// dispatch, and gives autovacuum small, regular work instead of one huge dead range. An
// outbox row is kept while any of its deliveries is unfinished, since sending needs the
// payload.
package retention

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/outbox"
)

// Config configures a Cleaner.
type Config struct {
	// DB is the relay's database; required.
	DB *sqlx.DB
	// Schema holds the relay's tables; outbox.DefaultSchema when empty.
	Schema string
	// Retention is how long finished rows are kept; required, positive.
	Retention time.Duration
	// Interval is the time between passes; 1m when zero. Each pass waits a random extra of up
	// to 10% so replicas do not line up.
	Interval time.Duration
	// BatchSize is the number of rows one statement deletes; 1000 when zero.
	BatchSize int
	// Logger is the component's logger.
	Logger zerolog.Logger
}

// Cleaner deletes old rows on a schedule.
type Cleaner struct {
	cfg              Config
	cancelOrphans    string
	deleteDeliveries string
	deleteOutbox     string
}

const deleteFinishedDeliveries = `
DELETE FROM {{schema}}.deliveries
WHERE id IN (
    SELECT id FROM {{schema}}.deliveries
    WHERE status <> 'pending' AND updated_at < now() - $1 * interval '1 millisecond'
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)`

const cancelOrphans = `
UPDATE {{schema}}.deliveries d
SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
FROM {{schema}}.subscriptions s
WHERE s.id = d.subscription_id AND s.deleted_at IS NOT NULL AND d.status = 'pending'`

const deleteDispatchedOutbox = `
DELETE FROM {{schema}}.outbox
WHERE id IN (
    SELECT o.id FROM {{schema}}.outbox o
    WHERE o.dispatched_at < now() - $1 * interval '1 millisecond'
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.deliveries d WHERE d.event_id = o.event_id)
    ORDER BY o.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)`

// New returns a Cleaner for cfg.
func New(cfg Config) (*Cleaner, error) {
	if cfg.DB == nil || cfg.Retention <= 0 {
		return nil, errors.New("retention: DB and a positive Retention are required")
	}
	if cfg.Schema == "" {
		cfg.Schema = outbox.DefaultSchema
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	return &Cleaner{
		cfg:              cfg,
		cancelOrphans:    outbox.Qualify(cfg.Schema, cancelOrphans),
		deleteDeliveries: outbox.Qualify(cfg.Schema, deleteFinishedDeliveries),
		deleteOutbox:     outbox.Qualify(cfg.Schema, deleteDispatchedOutbox),
	}, nil
}

// Run makes a pass every Interval until ctx ends; errors are logged and retried next pass.
func (c *Cleaner) Run(ctx context.Context) {
	for {
		wait := c.cfg.Interval + time.Duration(rand.Int64N(int64(c.cfg.Interval/10)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		deliveries, events, err := c.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn().Err(err).Msg("retention pass")
		}
		if deliveries+events > 0 {
			c.cfg.Logger.Info().Int64("deliveries", deliveries).Int64("events", events).Msg("deleted rows past retention")
		}
	}
}

// Pass deletes every row past retention, batch by batch, and reports how many deliveries
// and outbox rows it deleted.
func (c *Cleaner) Pass(ctx context.Context) (deliveries, events int64, err error) {
	if _, err := c.cfg.DB.ExecContext(ctx, c.cancelOrphans); err != nil {
		return 0, 0, fmt.Errorf("cancelling deliveries of deleted subscriptions: %w", err)
	}
	ms := c.cfg.Retention.Milliseconds()
	deliveries, err = c.drain(ctx, c.deleteDeliveries, ms)
	if err != nil {
		return deliveries, 0, fmt.Errorf("deleting finished deliveries: %w", err)
	}
	events, err = c.drain(ctx, c.deleteOutbox, ms)
	if err != nil {
		return deliveries, events, fmt.Errorf("deleting dispatched outbox rows: %w", err)
	}
	return deliveries, events, nil
}

func (c *Cleaner) drain(ctx context.Context, query string, retentionMS int64) (int64, error) {
	var total int64
	for {
		res, err := c.cfg.DB.ExecContext(ctx, query, retentionMS, c.cfg.BatchSize)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(c.cfg.BatchSize) {
			return total, nil
		}
		// A breath between batches leaves room for the hot path's statements.
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
