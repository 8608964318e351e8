package deliver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/metrics"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// Config configures a Deliverer.
type Config struct {
	// DB is the relay's database; required.
	DB *sqlx.DB
	// Schema holds the relay's tables; outbox.DefaultSchema when empty.
	Schema string
	// Owner names this replica in leases; required and unique per process.
	Owner string
	// Workers is the number of concurrent requests; 64 when zero.
	Workers int
	// BatchSize caps the deliveries one claim takes; 100 when zero.
	BatchSize int
	// PollInterval is how often due deliveries (retries) are looked for; 1s when zero.
	PollInterval time.Duration
	// DeliveryTimeout bounds one attempt, connection to last byte; 5s when zero.
	DeliveryTimeout time.Duration
	// LeaseMargin is added to DeliveryTimeout to form the lease; 5s when zero. A claim whose
	// owner died is free again after the lease.
	LeaseMargin time.Duration
	// RetrySchedule holds the delays before attempts 2, 3, ...; empty means no retries.
	RetrySchedule []time.Duration
	// MaxPayloadBytes: larger payloads fail without a request; 256 KiB when zero.
	MaxPayloadBytes int
	// DisableAfter disables a subscription whose attempts have all failed for this long;
	// 120h when zero.
	DisableAfter time.Duration
	// MaxInFlightPerSubscription caps concurrent requests per subscription across replicas;
	// 16 when zero.
	MaxInFlightPerSubscription int
	// MaxLeasedPerSubscription caps the leases one subscription may hold, queued here ahead
	// of its requests; 8 x MaxInFlightPerSubscription when zero. A slow subscription gets no
	// more than MaxInFlightPerSubscription.
	MaxLeasedPerSubscription int
	// MaxClaimed caps the deliveries this replica holds at once (queued, on the wire or
	// awaiting their record); 4 x Workers when zero.
	MaxClaimed int
	// ShutdownGrace is how long requests in flight may finish after Run's context ends;
	// zero cuts them at once.
	ShutdownGrace time.Duration
	// UserAgent is sent with every request; required.
	UserAgent string
	// Client sends the requests; NewHTTPClient(Workers, nil) when nil.
	Client *http.Client
	// OpenSecret turns a stored secret into "whsec_..."; nil means stored in clear.
	OpenSecret func(stored string) (string, error)
	// Tracer makes one client span per attempt, whose context goes to the receiver in the
	// traceparent header; nil means no tracing.
	Tracer trace.Tracer
	// Metrics, optional, counts attempts and outcomes.
	Metrics *metrics.Metrics
	// Now is the clock for attempt timestamps; time.Now when nil.
	Now func() time.Time
	// Logger is the component's logger.
	Logger zerolog.Logger
}

// Deliverer claims due deliveries and sends them. Safe for several replicas at once.
type Deliverer struct {
	cfg     Config
	db      *sqlx.DB
	client  *http.Client
	now     func() time.Time
	log     zerolog.Logger
	claimQ  *pgstmt.Stmt
	recordQ string
	recordP *pgstmt.Stmt
	// recordClaimP records a batch and claims for the room it frees in one round trip.
	recordClaimP *pgstmt.Stmt
	goneQ        string
	releaseQ     string
	opEvQ        string

	// lanes queues claimed jobs per subscription and hands them to the workers.
	lanes *lanes
	// sendWithin is how long after its claim a job may still be sent: the rest of the lease
	// covers the request.
	sendWithin time.Duration

	wake     chan struct{} // something may be due
	roomFree chan struct{} // leases ended: there is room to claim more
	// kicks counts Kick calls. A record that claims stores in claimedKicks the count read
	// before its statement: every kick up to it is covered by that claim, whose snapshot
	// sees what the kicker committed. recording is set while results are being gathered
	// or written, and recordDone signalled after each write. Together they let the claim
	// loop leave a kick to the record about to claim anyway, instead of a second statement.
	kicks        atomic.Uint64
	claimedKicks atomic.Uint64
	recording    atomic.Bool
	recordDone   chan struct{}
	healthy      atomic.Bool
	inFlight     atomic.Int64 // requests on the wire, for metrics
	// quickInFlight counts the requests on the wire expected to end soon (job.quick).
	quickInFlight atomic.Int64
	stopped       atomic.Bool // shutdown has begun: no more claims
}

// New returns a Deliverer for cfg.
func New(cfg Config) (*Deliverer, error) {
	if cfg.DB == nil {
		return nil, errors.New("deliver: DB is required")
	}
	if cfg.Owner == "" || cfg.UserAgent == "" {
		return nil, errors.New("deliver: Owner and UserAgent are required")
	}
	if cfg.Schema == "" {
		cfg.Schema = outbox.DefaultSchema
	}
	setDefault(&cfg.Workers, 64)
	setDefault(&cfg.BatchSize, 100)
	setDefault(&cfg.MaxPayloadBytes, 256<<10)
	setDefault(&cfg.MaxInFlightPerSubscription, 16)
	setDefault(&cfg.MaxLeasedPerSubscription, 8*cfg.MaxInFlightPerSubscription)
	setDefault(&cfg.MaxClaimed, 4*cfg.Workers)
	cfg.MaxLeasedPerSubscription = max(cfg.MaxLeasedPerSubscription, cfg.MaxInFlightPerSubscription)
	setDefault(&cfg.PollInterval, time.Second)
	setDefault(&cfg.DeliveryTimeout, 5*time.Second)
	setDefault(&cfg.LeaseMargin, 5*time.Second)
	setDefault(&cfg.DisableAfter, 120*time.Hour)
	if cfg.Client == nil {
		cfg.Client = NewHTTPClient(cfg.Workers, nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// A queued job may wait for half the lease's margin; a lane whose waves take longer than
	// that spread over its queue is slow and gets no leases ahead.
	sendWithin := cfg.LeaseMargin / 2
	waves := max(1, cfg.MaxLeasedPerSubscription/cfg.MaxInFlightPerSubscription)
	return &Deliverer{
		lanes:        newLanes(cfg.MaxInFlightPerSubscription, sendWithin/time.Duration(2*waves), time.Minute),
		sendWithin:   sendWithin,
		cfg:          cfg,
		db:           cfg.DB,
		client:       cfg.Client,
		now:          cfg.Now,
		log:          cfg.Logger,
		claimQ:       pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, claimDue)),
		recordQ:      outbox.Qualify(cfg.Schema, recordResults),
		recordP:      pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, recordResults)),
		recordClaimP: pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, recordAndClaim)),
		goneQ:        outbox.Qualify(cfg.Schema, disableGone),
		releaseQ:     outbox.Qualify(cfg.Schema, releaseClaims),
		opEvQ:        outbox.Qualify(cfg.Schema, insertOperationalEvents),
		wake:         make(chan struct{}, 1),
		roomFree:     make(chan struct{}, 1),
		recordDone:   make(chan struct{}, 1),
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Kick asks the deliverer to look for due deliveries now. It never blocks; kicks coalesce.
func (d *Deliverer) Kick() {
	d.kicks.Add(1)
	signal(d.wake)
}

// Healthy reports whether the last claim reached the database.
func (d *Deliverer) Healthy() bool { return d.healthy.Load() }

// InFlight is the number of requests on the wire right now.
func (d *Deliverer) InFlight() int64 { return d.inFlight.Load() }

// Queued is the number of claimed deliveries waiting for a free worker or for a free slot
// of their subscription.
func (d *Deliverer) Queued() int {
	q, _ := d.lanes.counts()
	return q
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// dbTimeout bounds one claim or record statement. These run on a context that shutdown does
// not cancel: cutting a claim short could commit a lease whose rows we never learn about.
const dbTimeout = 15 * time.Second

// Run delivers until ctx ends, then drains as the package documentation describes. It
// returns nil; database trouble is retried, never returned.
func (d *Deliverer) Run(ctx context.Context) error {
	// Requests use hard, which outlives ctx by ShutdownGrace: in-flight attempts may finish.
	hard, cutRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cutRequests()

	results := make(chan result, d.cfg.Workers)
	var workers sync.WaitGroup
	for range d.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			d.work(hard, results)
		}()
	}
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.recordLoop(results)
	}()

	d.claimLoop(ctx)
	d.stopped.Store(true)
	d.healthy.Store(false)

	// Workers finish what they are sending; what is still queued goes back at once.
	d.release(d.lanes.close())
	grace := time.AfterFunc(d.cfg.ShutdownGrace, cutRequests)
	workers.Wait()
	grace.Stop()
	close(results)
	<-recorded
	return nil
}

// work sends jobs from the lanes until they close. A job that waited in its lane so long
// that its lease could end during the request is not sent but released, so that no other
// replica takes it while it is on the wire.
func (d *Deliverer) work(ctx context.Context, results chan<- result) {
	for {
		j := d.lanes.next()
		if j == nil {
			return
		}
		if time.Now().After(j.sendBy) {
			d.lanes.finished(j, 0, true)
			results <- result{job: j, aborted: true}
			continue
		}
		d.inFlight.Add(1)
		if j.quick {
			d.quickInFlight.Add(1)
		}
		res := d.send(ctx, j)
		d.inFlight.Add(-1)
		if j.quick {
			d.quickInFlight.Add(-1)
		}
		d.lanes.finished(j, res.duration, false)
		results <- res
	}
}

// claimLoop claims due deliveries into the lanes until ctx ends.
func (d *Deliverer) claimLoop(ctx context.Context) {
	bo := newBackoff()
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	// Claim again without waiting while the last claim came back full: more may be due.
	more := true
	for {
		if !more {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
				if d.coveredByRecord(ctx, d.kicks.Load()) {
					continue
				}
			case <-poll.C:
				// Claims that waited too long in a hanging lane go back, and their room
				// with them. Once per poll is enough: they may wait half a lease margin.
				d.release(d.lanes.expire(time.Now()))
			}
		}
		if !d.awaitRoom(ctx) {
			return
		}
		n := d.claimRoom(0)
		claimed, err := d.claim(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.healthy.Store(false)
			wait := bo.NextBackOff()
			d.log.Warn().Err(err).Dur("retry_in", wait).Msg("claiming deliveries")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			more = true
			continue
		}
		bo.Reset()
		d.healthy.Store(true)
		more = len(claimed) == n
		d.queue(claimed)
	}
}

// recordWait bounds how long a kick waits for the record in progress to claim for it.
const recordWait = 20 * time.Millisecond

// coveredByRecord reports whether a record that claims has covered (or, while results
// are being recorded, soon covers) every kick up to kick, so the claim loop need not claim.
func (d *Deliverer) coveredByRecord(ctx context.Context, kick uint64) bool {
	timeout := time.NewTimer(recordWait)
	defer timeout.Stop()
	for d.claimedKicks.Load() < kick {
		if !d.recording.Load() {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-timeout.C:
			return false
		case <-d.recordDone:
		}
	}
	return true
}

// queue hands claimed jobs to the lanes, or releases them once the lanes are closed.
func (d *Deliverer) queue(js []*job) {
	if refused := d.lanes.add(js); len(refused) > 0 {
		d.release(refused)
	}
}

// claimGather bounds how long a claim waits for more room once there is some.
const claimGather = 2 * time.Millisecond

// awaitRoom waits until a claim is worth making: room for three quarters of a batch, so
// that claims stay batched under load instead of one query per recorded result; or, once
// there is any room, claimGather has passed. It reports false when ctx ended.
func (d *Deliverer) awaitRoom(ctx context.Context) bool {
	want := max(1, min(d.cfg.BatchSize, d.cfg.MaxClaimed)*3/4)
	var gather <-chan time.Time
	for {
		room := d.claimRoom(0)
		if room >= want {
			return true
		}
		if room > 0 && gather == nil {
			gather = time.After(claimGather)
		}
		select {
		case <-ctx.Done():
			return false
		case <-d.roomFree:
		case <-gather:
			return true
		}
	}
}

// claimRoom is how many deliveries a claim made now may take once freeing more leases end:
// at most a batch, within MaxClaimed, none once shutdown has begun.
func (d *Deliverer) claimRoom(freeing int) int {
	if d.stopping() {
		return 0
	}
	return min(d.cfg.BatchSize, d.lanes.room(d.cfg.MaxClaimed)+freeing)
}

// leasesEnded accounts for n jobs whose leases ended (recorded or released).
func (d *Deliverer) leasesEnded(n int) {
	if n > 0 {
		d.lanes.ended(n)
		signal(d.roomFree)
	}
}

func newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = 0 // never give up: the database comes back or the process stops
	return bo
}

// claim leases up to n due deliveries and turns them into jobs.
func (d *Deliverer) claim(ctx context.Context, n int) ([]*job, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	start := time.Now()
	rows, err := d.claimQ.QueryContext(qctx, append([]any{n, d.cfg.Owner}, d.leaseArgs()...)...)
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	return d.scanJobs(rows, start)
}

// leaseArgs are the arguments a claim takes after its limit (and, for lease_deliveries, the
// owner): lease length in ms, MaxPayloadBytes, MaxInFlightPerSubscription,
// MaxLeasedPerSubscription and the fast lanes, which may lease that many.
func (d *Deliverer) leaseArgs() []any {
	lease := d.cfg.DeliveryTimeout + d.cfg.LeaseMargin
	return []any{lease.Milliseconds(), d.cfg.MaxPayloadBytes, d.cfg.MaxInFlightPerSubscription,
		d.cfg.MaxLeasedPerSubscription, pq.StringArray(d.lanes.fast())}
}

// scanJobs turns the rows of a claim made at start into jobs, and closes them.
func (d *Deliverer) scanJobs(rows *sql.Rows, start time.Time) ([]*job, error) {
	defer rows.Close()
	var out []*job
	for rows.Next() {
		var (
			j                         job
			tenantID, headers, secret string
			createdAt                 time.Time
			payload, previousSecret   sql.NullString
			payloadSize               int
		)
		if err := rows.Scan(&j.deliveryID, &j.attempt, &j.eventID, &j.eventType, &tenantID, &createdAt,
			&payload, &payloadSize, &j.ordered, &j.subscriptionID, &j.targetURL, &headers, &secret, &previousSecret, &j.subscriptionTenant); err != nil {
			return nil, fmt.Errorf("reading claimed delivery: %w", err)
		}
		j.createdAt = createdAt
		j.tenantID = tenantID
		j.sendBy = start.Add(d.sendWithin)
		if payload.Valid {
			j.body = appendBody(make([]byte, 0, len(payload.String)+160), j.eventID, j.eventType, createdAt, tenantID, payload.String)
		} else {
			j.payloadSize = payloadSize
		}
		var err error
		if j.headers, err = decodeHeaders(headers); err != nil {
			j.badSecret = err
		}
		if j.keys, err = d.keys(secret, previousSecret); err != nil {
			j.badSecret = err
		}
		out = append(out, &j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading claimed deliveries: %w", err)
	}
	return out, nil
}

// keys opens and decodes the current secret and, during a rotation, the previous one.
func (d *Deliverer) keys(current string, previous sql.NullString) ([][]byte, error) {
	stored := []string{current}
	if previous.Valid && previous.String != "" {
		stored = append(stored, previous.String)
	}
	keys := make([][]byte, 0, len(stored))
	for _, s := range stored {
		if d.cfg.OpenSecret != nil {
			plain, err := d.cfg.OpenSecret(s)
			if err != nil {
				return nil, fmt.Errorf("opening secret: %w", err)
			}
			s = plain
		}
		k, err := signature.DecodeSecret(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// release gives back claims that were never sent.
func (d *Deliverer) release(jobs []*job) {
	if len(jobs) == 0 {
		return
	}
	defer d.leasesEnded(len(jobs))
	idList := make(pq.Int64Array, len(jobs))
	attempts := make(pq.Int64Array, len(jobs))
	for i, j := range jobs {
		idList[i], attempts[i] = j.deliveryID, int64(j.attempt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if _, err := d.db.ExecContext(ctx, d.releaseQ, idList, attempts, d.cfg.Owner); err != nil {
		// Not fatal: the leases expire and another replica takes them then.
		d.log.Warn().Err(err).Int("deliveries", len(jobs)).Msg("releasing unsent claims")
		return
	}
	d.log.Info().Int("deliveries", len(jobs)).Msg("released unsent claims")
}

// logAttempt writes one line per attempt: debug for success, warn for failure.
func (d *Deliverer) logAttempt(r *result) {
	ev := d.log.Debug()
	if r.outcome != outcomeSucceeded {
		ev = d.log.Warn()
	}
	ev = ev.Str("event_id", r.job.eventID).
		Str("delivery_id", ids.FormatDelivery(r.job.deliveryID)).
		Str("subscription_id", r.job.subscriptionID).
		Int("attempt", r.job.attempt).
		Int("status", r.statusCode).
		Dur("duration", r.duration).
		Str("outcome", string(r.outcome))
	if r.err != "" {
		ev = ev.Str("error", r.err)
	}
	if r.outcome == outcomeRetry {
		ev = ev.Dur("retry_in", r.delay)
	}
	ev.Msg("attempt")
}
