// Package leader elects the active relay: of all the relays that share a schema, the one
// that claims outbox rows, sends webhooks and deletes old rows. The others stand by. Why one,
// and what happens when it fails, is in the relay package's documentation.
//
// The election is a row in <schema>.leader with an expiry. The holder renews it every
// Interval (a heartbeat); a standby reads it every Interval and takes it over once it has
// expired. Every time in the row comes from the database's clock, so relays whose clocks
// disagree still agree on who holds it; the holder's own idea of how long it holds it is
// measured on its own clock from before it sent the renewal, so it always gives up before
// the database would let anyone else take over.
//
// Nothing here is session state: no advisory lock, no LISTEN, so the election works through
// a connection pooler in transaction mode, and a standby holds at most one (idle)
// connection.
package leader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/internal/health"
	"github.com/referralloop/outbox-relay/internal/poll"
	"github.com/referralloop/outbox-relay/outbox"
)

// Timing of the election. A killed holder is replaced within TTL + Interval; a holder that
// shuts down resigns and is replaced within Interval.
const (
	// DefaultInterval is how often the holder renews and a standby looks.
	DefaultInterval = time.Second
	// DefaultTTL is how long a renewal holds. Five heartbeats: a holder that misses a few
	// (a slow database, a pause of the process) keeps its place.
	DefaultTTL = 5 * time.Second
	// troubleAfter is how long the lease checks may fail before Trouble says so.
	troubleAfter = 3 * time.Second
)

// Role is the row's key: the one role there is.
const Role = "relay"

// Config configures an Elector.
type Config struct {
	// DB is the relay's database; required.
	DB *sqlx.DB
	// Schema holds the leader table; outbox.DefaultSchema when empty.
	Schema string
	// Owner names this relay, as in delivery leases; required.
	Owner string
	// Interval and TTL default to DefaultInterval and DefaultTTL; TTL must exceed
	// 2 x Interval.
	Interval, TTL time.Duration
	// Logger is the component's logger.
	Logger zerolog.Logger
}

// Elector campaigns for, holds and gives up the active role for one relay.
type Elector struct {
	cfg             Config
	readQ, takeQ    string
	renewQ, resignQ string
	checks          health.Tracker
	mu              sync.Mutex
	leading         bool
	validUntil      time.Time     // while leading: when to give up unless renewed (local clock)
	expiry          *time.Timer   // gives up at validUntil even while a renewal hangs
	changed         chan struct{} // closed, and replaced, at every change of leading
	holder          string        // the owner of the row as last read ("" when none)
	term            int64         // the row's term as last read or written
	stopped         bool          // Run has returned: never leading again
}

// New returns an Elector for cfg.
func New(cfg Config) (*Elector, error) {
	if cfg.DB == nil || cfg.Owner == "" {
		return nil, errors.New("leader: DB and Owner are required")
	}
	if cfg.Schema == "" {
		cfg.Schema = outbox.DefaultSchema
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL <= 2*cfg.Interval {
		return nil, fmt.Errorf("leader: TTL %s must exceed twice the interval %s", cfg.TTL, cfg.Interval)
	}
	q := func(s string) string { return outbox.Qualify(cfg.Schema, s) }
	return &Elector{
		cfg:     cfg,
		readQ:   q(readLeader),
		takeQ:   q(takeLeader),
		renewQ:  q(renewLeader),
		resignQ: q(resignLeader),
		changed: make(chan struct{}),
	}, nil
}

// A standby reads; only when the row is missing or expired does it write. Reads take no
// transaction ID and write no WAL, so a standby costs the database one short read a second.
const readLeader = `SELECT owner, term, expires_at <= now() FROM {{schema}}.leader WHERE role = $1`

// takeLeader takes the row if it is missing, expired, or already ours; it answers nothing
// when another relay took it first.
const takeLeader = `INSERT INTO {{schema}}.leader AS l (role, owner, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3 / 1000.0))
ON CONFLICT (role) DO UPDATE SET owner = EXCLUDED.owner, term = l.term + 1, elected_at = now(),
    renewed_at = now(), expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= now() OR l.owner = EXCLUDED.owner
RETURNING term`

// renewLeader extends our hold; it answers nothing once another relay holds the row.
const renewLeader = `UPDATE {{schema}}.leader SET renewed_at = now(), expires_at = now() + make_interval(secs => $3 / 1000.0)
WHERE role = $1 AND owner = $2 RETURNING term`

// resignLeader ends our hold now, so that a standby takes over at its next look.
const resignLeader = `UPDATE {{schema}}.leader SET expires_at = now() WHERE role = $1 AND owner = $2`

// Watch answers whether this relay is the active one now, and a channel closed at the next
// change of that.
func (e *Elector) Watch() (leading bool, changed <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(time.Now())
	return e.leading, e.changed
}

// Leading reports whether this relay is the active one now.
func (e *Elector) Leading() bool {
	leading, _ := e.Watch()
	return leading
}

// Holder answers the active relay's owner as last read ("" if unknown or none).
func (e *Elector) Holder() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Trouble says why the election cannot be followed (its reads or renewals keep failing),
// or "" when it can.
func (e *Elector) Trouble() string {
	return e.checks.Trouble("checking the active-relay lease", troubleAfter)
}

// Run campaigns and heartbeats until ctx ends, then resigns if it holds the role. A
// database that cannot be reached is retried at every interval; while it cannot renew, the
// holder gives the role up before its lease could expire in the database.
func (e *Elector) Run(ctx context.Context) {
	tick := poll.NewTicker(e.cfg.Interval)
	defer tick.Stop()
	for {
		e.step(ctx)
		select {
		case <-ctx.Done():
			e.stop()
			return
		case <-tick.C:
		}
	}
}

// step renews (holder) or looks and maybe takes over (standby), once.
func (e *Elector) step(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, e.cfg.TTL/2)
	defer cancel()
	sent := time.Now()
	var err error
	if e.Leading() {
		err = e.renew(qctx, sent)
	} else {
		err = e.campaign(qctx, sent)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if !e.checks.Failing() {
			e.cfg.Logger.Warn().Err(err).Msg("checking the active-relay lease")
		}
		e.checks.Fail(err)
		return
	}
	e.checks.OK()
}

func (e *Elector) renew(ctx context.Context, sent time.Time) error {
	var term int64
	err := e.cfg.DB.QueryRowContext(ctx, e.renewQ, Role, e.cfg.Owner, e.cfg.TTL.Milliseconds()).Scan(&term)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		e.set(false, sent, "", 0, "another relay took over the active role")
		return nil
	case err != nil:
		return fmt.Errorf("renewing: %w", err)
	}
	e.set(true, sent, e.cfg.Owner, term, "")
	return nil
}

func (e *Elector) campaign(ctx context.Context, sent time.Time) error {
	var holder string
	var term int64
	var expired bool
	err := e.cfg.DB.QueryRowContext(ctx, e.readQ, Role).Scan(&holder, &term, &expired)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		expired = true
	case err != nil:
		return fmt.Errorf("reading: %w", err)
	}
	if !expired && holder != e.cfg.Owner {
		e.set(false, sent, holder, term, "")
		return nil
	}
	err = e.cfg.DB.QueryRowContext(ctx, e.takeQ, Role, e.cfg.Owner, e.cfg.TTL.Milliseconds()).Scan(&term)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Another standby was quicker; the next look learns which.
		return nil
	case err != nil:
		return fmt.Errorf("taking over: %w", err)
	}
	previous := holder
	if previous == "" {
		previous = "none"
	}
	e.set(true, sent, e.cfg.Owner, term, "became the active relay (previous: "+previous+")")
	return nil
}

// set records the outcome of a renewal or a look; why, when not empty, is logged with a
// change of role.
func (e *Elector) set(leading bool, sent time.Time, holder string, term int64, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		leading = false
	}
	e.holder, e.term = holder, term
	if leading {
		// Measured from before the statement was sent: the database's expiry is later.
		e.validUntil = sent.Add(e.cfg.TTL - e.cfg.Interval)
		if e.expiry != nil {
			e.expiry.Stop()
		}
		e.expiry = time.AfterFunc(time.Until(e.validUntil), func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.expireLocked(time.Now())
		})
	}
	e.change(leading, why)
}

// expireLocked gives the role up once the last renewal no longer covers now. Call with mu
// held.
func (e *Elector) expireLocked(now time.Time) {
	if e.leading && !now.Before(e.validUntil) {
		e.change(false, "could not renew the active-relay lease in time: standing by")
	}
}

// change switches leading and wakes the watchers. Call with mu held.
func (e *Elector) change(leading bool, why string) {
	if leading == e.leading {
		return
	}
	e.leading = leading
	close(e.changed)
	e.changed = make(chan struct{})
	ev := e.cfg.Logger.Info()
	if !leading {
		ev = e.cfg.Logger.Warn()
	}
	if why == "" {
		why = "standing by"
	}
	ev.Bool("active", leading).Int64("term", e.term).Str("holder", e.holder).Msg(why)
}

// stop ends leading for good and, if this relay held the role, resigns it in the database
// so that a standby takes over at its next look instead of when the lease expires.
func (e *Elector) stop() {
	e.mu.Lock()
	held := e.leading || e.holder == e.cfg.Owner
	e.stopped = true
	if e.expiry != nil {
		e.expiry.Stop()
	}
	e.change(false, "shutting down: gave up the active role")
	e.mu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.cfg.DB.ExecContext(ctx, e.resignQ, Role, e.cfg.Owner); err != nil {
		e.cfg.Logger.Warn().Err(err).Msg("resigning the active role: a standby takes over when the lease expires")
	}
}
