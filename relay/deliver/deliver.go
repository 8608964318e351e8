package deliver

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/referralloop/outbox-relay/internal/defaults"
	"github.com/referralloop/outbox-relay/internal/health"
	"github.com/referralloop/outbox-relay/internal/pgstmt"
	"github.com/referralloop/outbox-relay/internal/poll"
	"github.com/referralloop/outbox-relay/internal/retry"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/metrics"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// Config configures a Deliverer.
type Config struct {
	// DB is the relay's database; required.
	DB *sqlx.DB
	// Schema holds the relay's tables; outbox.DefaultSchema when empty.
	Schema string
	// DeliveryIDs formats delivery IDs for logs, spans and operational events (ids.Load);
	// required. It may be loaded after New, before Run.
	DeliveryIDs *ids.Deliveries
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
	// of its requests; 16 x MaxInFlightPerSubscription when zero. A slow subscription gets no
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
	// Client sends the requests. Optional: nil means egress.New with no address guard; the
	// relay passes the client egress.New made from its configuration.
	Client *http.Client
	// ClientWithCertificate makes the client for a subscription with a client certificate
	// (mTLS): Client's settings, presenting cert. Optional: nil means egress.New with no
	// address guard and the certificate; the relay passes one from its egress settings.
	ClientWithCertificate func(cert tls.Certificate) (*http.Client, error)
	// OpenSecret turns a stored secret (or a sealed header value) into its plain value; nil
	// means stored in clear.
	OpenSecret func(stored string) (string, error)
	// KeyProblems, optional, is told about every subscription whose secret or sealed
	// headers no configured key opens, and names those this replica must not claim for.
	KeyProblems KeyProblems
	// Tracer makes one client span per attempt, whose context goes to the receiver in the
	// traceparent header; nil means no tracing.
	Tracer trace.Tracer
	// Metrics, optional, counts attempts and outcomes.
	Metrics *metrics.Metrics
	// Active, optional, says whether this replica is the active relay (relay/leader). While
	// it is not, the deliverer claims nothing; what it holds it still sends and records.
	// Nil means always active.
	Active Gate
	// Backlog is called when a fan-out made with a claim (NewEvents) came back full: more
	// new events wait, for the dispatcher to fan out in growing batches. Optional.
	Backlog func()
	// Now is the clock for attempt timestamps; time.Now when nil.
	Now func() time.Time
	// Logger is the component's logger.
	Logger zerolog.Logger
}

// KeyProblems keeps the subscriptions whose secrets cannot be opened with the configured
// keys. Their deliveries wait, unsent and with their attempts untouched, until a relay
// with the right key (or a new secret) takes them.
type KeyProblems interface {
	// Report says that subscriptionID's secret or sealed headers could not be opened.
	Report(subscriptionID string, err error)
	// Blocked lists the subscriptions not to claim for.
	Blocked() []string
}

// Gate says whether claims may be made now, and signals when that changes.
type Gate interface {
	// Watch answers whether claims may be made, and a channel closed at the next change.
	Watch() (open bool, changed <-chan struct{})
}

// Deliverer claims due deliveries and sends them. Safe for several replicas at once.
type Deliverer struct {
	cfg    Config
	db     *sqlx.DB
	client *http.Client
	now    func() time.Time
	log    zerolog.Logger
	claimQ *pgstmt.Stmt
	// fanOutQ fans out new events and claims in one round trip (NewEvents).
	fanOutQ *pgstmt.Stmt
	recordQ string
	recordP *pgstmt.Stmt
	// recordClaimP records a batch and claims for the room it frees in one round trip.
	recordClaimP *pgstmt.Stmt
	goneQ        string
	releaseQ     string
	opEvQ        string
	certsQ       string

	// certs holds the subscriptions' client certificates and their clients (clientcert.go).
	certs *certClients

	// lanes queues claimed jobs per subscription and hands them to the workers.
	lanes *lanes
	// skipped are the subscriptions whose secrets this replica could not open lately.
	skipped skipList
	// sendWithin is how long after its claim a job may still be sent: the rest of the lease
	// covers the request.
	sendWithin time.Duration

	wake     chan struct{} // something may be due
	roomFree chan struct{} // leases ended: there is room to claim more
	// cover lets the claim loop leave a kick to a record that claims anyway (cover.go).
	cover *claimCover
	// claims and records tell readiness whether claims, and writing results, keep failing.
	claims, records health.Tracker
	// localFaultAt is when a request last failed for a reason of this process (Unix ns),
	// and localFaultErr what happened.
	localFaultAt  atomic.Int64
	localFaultErr atomic.Pointer[string]
	inFlight      atomic.Int64 // requests on the wire, for metrics
	// quickInFlight counts the requests on the wire expected to end soon (job.quick).
	quickInFlight atomic.Int64
	stopped       atomic.Bool // shutdown has begun: no more claims
	// newEvents says outbox rows were written since the last claim: the next claim fans
	// them out first (NewEvents).
	newEvents atomic.Bool
	// fanOutPausedTill is when claims may fan out again after one that did failed (Unix ns).
	fanOutPausedTill atomic.Int64
	// backlog says the latest claim came back full: more was due than it could take, so
	// the room a record frees is worth a claim at once.
	backlog atomic.Bool
	// sweepSet says a sweep (kickLater) is scheduled.
	sweepSet atomic.Bool
	// sweep says the next claim is to look for every due delivery (lease_due), not only
	// lease what a notification's fan-out makes: set by kicks and polls.
	sweep atomic.Bool
	// deadline is when shutdown must be over (Unix ns; 0 while running): statements and
	// retries of records stop by then.
	deadline atomic.Int64
}

// New returns a Deliverer for cfg.
func New(cfg Config) (*Deliverer, error) {
	if cfg.DB == nil {
		return nil, errors.New("deliver: DB is required")
	}
	if cfg.Owner == "" || cfg.UserAgent == "" || cfg.DeliveryIDs == nil {
		return nil, errors.New("deliver: Owner, UserAgent and DeliveryIDs are required")
	}
	if cfg.Schema == "" {
		cfg.Schema = outbox.DefaultSchema
	}
	setDefault(&cfg.Workers, defaults.Workers)
	setDefault(&cfg.BatchSize, defaults.BatchSize)
	setDefault(&cfg.MaxPayloadBytes, defaults.MaxPayloadBytes)
	setDefault(&cfg.MaxInFlightPerSubscription, defaults.MaxInFlightPerSubscription)
	setDefault(&cfg.MaxLeasedPerSubscription, 16*cfg.MaxInFlightPerSubscription)
	setDefault(&cfg.MaxClaimed, 4*cfg.Workers)
	cfg.MaxLeasedPerSubscription = max(cfg.MaxLeasedPerSubscription, cfg.MaxInFlightPerSubscription)
	setDefault(&cfg.PollInterval, defaults.PollInterval)
	setDefault(&cfg.DeliveryTimeout, defaults.DeliveryTimeout)
	setDefault(&cfg.LeaseMargin, 5*time.Second)
	setDefault(&cfg.DisableAfter, defaults.DisableAfter)
	if cfg.Client == nil {
		var err error
		if cfg.Client, err = egress.New(egress.Config{Workers: cfg.Workers, Policy: targets.Policy{AllowPrivate: true}}); err != nil {
			return nil, err
		}
	}
	if cfg.ClientWithCertificate == nil {
		workers := cfg.Workers
		cfg.ClientWithCertificate = func(cert tls.Certificate) (*http.Client, error) {
			return egress.New(egress.Config{Workers: workers, Policy: targets.Policy{AllowPrivate: true}, ClientCertificate: &cert})
		}
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
		fanOutQ:      pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, fanOutAndClaim)),
		recordQ:      outbox.Qualify(cfg.Schema, recordResults),
		recordP:      pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, recordResults)),
		recordClaimP: pgstmt.New(cfg.DB.DB, outbox.Qualify(cfg.Schema, recordAndClaim)),
		goneQ:        outbox.Qualify(cfg.Schema, disableGone),
		releaseQ:     outbox.Qualify(cfg.Schema, releaseClaims),
		opEvQ:        outbox.Qualify(cfg.Schema, insertOperationalEvents),
		certsQ:       outbox.Qualify(cfg.Schema, selectClientCerts),
		certs:        newCertClients(),
		wake:         make(chan struct{}, 1),
		roomFree:     make(chan struct{}, 1),
		cover:        newClaimCover(),
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Kick asks the deliverer to look for due deliveries now. It never blocks; kicks coalesce.
// A batch of results being gathered is written at once, so that the claim made with it
// takes the new deliveries without waiting out the gathering (see cover.go).
func (d *Deliverer) Kick() {
	d.kick()
	signal(d.cover.hurry)
}

// NewEvents says new outbox rows were written (a notification): the next claim fans them
// out and leases in the same round trip, so a new event reaches its receiver one statement
// after its notification. It answers false when this deliverer makes no claims now (not
// the active relay, or stopping) or a fan-out it made lately failed: the caller leaves the
// fan-out to the dispatcher.
func (d *Deliverer) NewEvents() bool {
	if active, _ := d.watchActive(); d.stopping() || !active || time.Now().UnixNano() < d.fanOutPausedTill.Load() {
		return false
	}
	d.newEvents.Store(true)
	signal(d.wake)
	return true
}

// fanOutPause is how long new events are left to the dispatcher after a claim that fanned
// out failed.
const fanOutPause = 5 * time.Second

// kick is Kick from within: more may be due, but nothing new is waiting on the recorder.
// The next claim sweeps (lease_due), even one made for new events.
func (d *Deliverer) kick() {
	d.sweep.Store(true)
	d.cover.kick()
	signal(d.wake)
}

// sweepAfter is how long after a record that freed room no claim was known to want the
// claim loop looks anyway (kickLater).
const sweepAfter = 25 * time.Millisecond

// kickLater kicks the claim loop after sweepAfter, once however often it is called
// meanwhile. A record claims at once only when a claim is known to want the room it frees
// (Deliverer.claimWanted); otherwise a claim now would most likely find nothing, and under a
// steady flow of new events it would only delay the claims that fan them out, one claim
// per record. But a claim that came back short is no proof that nothing else is due:
// lease_due walks a bounded number of subscriptions. The sweep covers that.
func (d *Deliverer) kickLater() {
	if d.sweepSet.CompareAndSwap(false, true) {
		time.AfterFunc(sweepAfter, func() {
			d.sweepSet.Store(false)
			d.kick()
		})
	}
}

// claimWanted reports whether the end of j's lease is worth a claim at once: the latest
// claim came back full (a backlog), j's subscription holds its cap of leases (a claim left
// its due deliveries behind), or j was ordered (the next of its line is due now).
func (d *Deliverer) claimWanted(j *job) bool {
	return d.backlog.Load() || j.ordered || d.lanes.atCap(j.subscriptionID)
}

// Readiness thresholds: how long results may fail to be written, and how long after a
// local fault the deliverer still reports it, before Trouble says so.
const (
	recordStallLimit = 5 * time.Second
	localFaultMemory = 10 * time.Second
)

// Trouble says why the deliverer cannot do its work right now, or "" when it can: claims
// that keep failing (health.FailingLimit), results that could not be written for longer
// than recordStallLimit, or a request that failed for a reason of this process within
// localFaultMemory.
func (d *Deliverer) Trouble() string {
	if why := d.claims.Trouble("claiming deliveries", health.FailingLimit); why != "" {
		return why
	}
	if why := d.records.Trouble("recording attempt results", recordStallLimit); why != "" {
		return why
	}
	now := time.Now()
	if at := d.localFaultAt.Load(); at != 0 && now.Sub(time.Unix(0, at)) < localFaultMemory {
		return "requests fail for a reason of this process: " + derefOr(d.localFaultErr.Load(), "local fault")
	}
	return ""
}

func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

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

// Run delivers until ctx ends, then drains as the package documentation describes.
// Database trouble is retried, never returned.
func (d *Deliverer) Run(ctx context.Context) {
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
	// From here on everything, the last records included, ends within ShutdownGrace, so
	// that the process exits before an orchestrator's kill (Kubernetes waits 30s by
	// default; RELAY_SHUTDOWN_GRACE is 25s).
	deadline := time.Now().Add(d.cfg.ShutdownGrace)
	d.deadline.Store(deadline.UnixNano())
	d.stopped.Store(true)

	// Workers finish what they are sending; what is still queued goes back at once.
	d.release(d.lanes.close())
	// Requests are cut early enough to leave their results time to be written.
	reserve := min(recordReserve, d.cfg.ShutdownGrace/4)
	grace := time.AfterFunc(time.Until(deadline.Add(-reserve)), cutRequests)
	workers.Wait()
	grace.Stop()
	close(results)
	<-recorded
	return
}

// recordReserve is how long before the shutdown deadline requests still on the wire are
// cut, so that their results (and those waiting) can be written in time.
const recordReserve = 2 * time.Second

// dbContext bounds one statement by dbTimeout and, once shutdown has begun, by its deadline.
func (d *Deliverer) dbContext() (context.Context, context.CancelFunc) {
	timeout := dbTimeout
	if dl := d.deadline.Load(); dl != 0 {
		timeout = max(min(timeout, time.Until(time.Unix(0, dl))), 100*time.Millisecond)
	}
	return context.WithTimeout(context.Background(), timeout)
}

// pastDeadline reports whether shutdown has begun and its deadline has passed.
func (d *Deliverer) pastDeadline() bool {
	dl := d.deadline.Load()
	return dl != 0 && time.Now().UnixNano() > dl
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
	bo := retry.NewBackoff()
	poll := poll.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	// Claim again without waiting while the last claim came back full: more may be due.
	more := true
	for {
		ok, waited := d.awaitActive(ctx)
		if !ok {
			return
		}
		if waited {
			// Just became the active relay: whatever is due is ours now.
			more = true
		}
		if !more {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
				// New events are fanned out by this loop's claim; a record's claim does
				// not fan out, so it covers only deliveries already made.
				if !d.newEvents.Load() && d.cover.covered(ctx, d.cover.latest()) {
					continue
				}
			case <-poll.C:
				// Claims that waited too long in a hanging lane go back, and their room
				// with them. Once per poll is enough: they may wait half a lease margin.
				d.release(d.lanes.expire(time.Now()))
				d.sweep.Store(true) // retries come due with time
			}
		}
		if !d.awaitRoom(ctx) {
			return
		}
		n := d.claimRoom(0)
		if n == 0 {
			continue // this replica stopped being the active relay meanwhile
		}
		fanOut := d.newEvents.Swap(false)
		sweep := d.sweep.Swap(false) || more
		var claimed []*job
		var err error
		if fanOut {
			claimed, err = d.fanOutAndClaim(ctx, n, sweep)
		} else {
			claimed, err = d.claim(ctx, n)
		}
		if err != nil && fanOut && ctx.Err() == nil {
			// The fan-out may be what failed: claims of deliveries already made must not
			// wait for it. The dispatcher takes new events over for a while, retrying and
			// reporting on its own, and this loop claims again at once without fanning out.
			d.fanOutPausedTill.Store(time.Now().Add(fanOutPause).UnixNano())
			d.log.Warn().Err(err).Dur("for", fanOutPause).Msg("fanning out with the claim failed; leaving new events to the dispatcher")
			if d.cfg.Backlog != nil {
				d.cfg.Backlog()
			}
			more = true
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.claims.Fail(err)
			d.cfg.Metrics.LocalFault(metrics.FaultDatabase, 1)
			wait := bo.NextBackOff()
			d.log.Warn().Err(err).Dur("retry_in", wait.Round(time.Millisecond)).Msg("claiming deliveries")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			more = true
			continue
		}
		bo.Reset()
		d.claims.OK()
		more = len(claimed) == n
		d.backlog.Store(more)
		d.queue(claimed)
	}
}

// queue hands claimed jobs to the lanes, or releases them once the lanes are closed. Jobs
// whose subscription's secret cannot be opened go back at once, unsent: the subscription
// is reported, and the next claims pass it over.
func (d *Deliverer) queue(js []*job) {
	if unknown := d.resolveCertificates(js); len(unknown) > 0 {
		// Whether they need a client certificate is not known: not sent now. Given back in the
		// background: the database is away, and the give-back's retries (up to the lease
		// margin) must not hold the claim loop, nor a shutdown that begins meanwhile.
		go d.releaseAfter(unknown, time.Second)
		skip := make(map[*job]bool, len(unknown))
		for _, j := range unknown {
			skip[j] = true
		}
		js = slices.DeleteFunc(slices.Clone(js), func(j *job) bool { return skip[j] })
	}
	var blocked []*job
	sendable := js[:0:0]
	for _, j := range js {
		if j.keyProblem != nil || j.badHeaders != nil {
			blocked = append(blocked, j)
			continue
		}
		sendable = append(sendable, j)
	}
	if len(blocked) > 0 {
		d.blocked(blocked)
	}
	if refused := d.lanes.add(sendable); len(refused) > 0 {
		d.release(refused)
	}
	d.paceRateLimited(sendable)
}

// paceRateLimited schedules a claim for when each rate-limited subscription in js has
// earned its next token. A claim takes only the whole tokens a subscription's bucket holds
// (lease_due), and spends them, so after it the bucket holds less than one; one interval
// (1/rate_limit) later it holds at least one, and the claim made then takes it. Each claim
// that leases for the subscription schedules the next, so a backlog goes out at the rate,
// evenly, and stops scheduling once it is empty; the poll catches up after a hand-over or
// a restart. Nothing is claimed before it may be sent, so nothing waits in a lane for
// tokens: no worker, lease or slot is held by a subscription that may not send yet.
func (d *Deliverer) paceRateLimited(js []*job) {
	var seen map[string]bool
	for _, j := range js {
		if j.rateLimit <= 0 || seen[j.subscriptionID] {
			continue
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		seen[j.subscriptionID] = true
		time.AfterFunc(tokenInterval(j.rateLimit), d.kick)
	}
}

// tokenInterval is how long a bucket filling at rate tokens per second takes to earn one,
// with a millisecond to spare for the database's clock running ahead of this process's.
func tokenInterval(rate float64) time.Duration {
	return time.Duration(float64(time.Second)/rate) + time.Millisecond
}

// keyProblemRecheck is how long this replica passes over a subscription whose secret it
// could not open before it claims for it again, to see whether it was rotated meanwhile.
const keyProblemRecheck = 30 * time.Second

// skipList holds subscriptions not to claim for until a given time.
type skipList struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// add skips id until t; it reports whether id was not skipped already.
func (s *skipList) add(id string, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[string]time.Time{}
	}
	_, had := s.until[id]
	s.until[id] = t
	return !had
}

// list answers the subscriptions skipped at now, forgetting those whose time has come.
func (s *skipList) list(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for id, t := range s.until {
		if now.After(t) {
			delete(s.until, id)
			continue
		}
		out = append(out, id)
	}
	return out
}

// blocked gives back jobs whose subscription's secret or sealed headers no configured key
// opens (or whose headers are not in the stored form), and reports their subscriptions. Nothing is sent unsigned, and no attempt is
// charged to the receiver: the deliveries wait until a relay with the right key takes them.
func (d *Deliverer) blocked(js []*job) {
	seen := map[string]bool{}
	for _, j := range js {
		if seen[j.subscriptionID] {
			continue
		}
		seen[j.subscriptionID] = true
		problem := errors.Join(j.keyProblem, j.badHeaders)
		if d.skipped.add(j.subscriptionID, time.Now().Add(keyProblemRecheck)) {
			d.log.Warn().Str("subscription_id", j.subscriptionID).Str("error", problem.Error()).
				Msg("subscription's deliveries wait: its secret, custom headers or client certificate cannot be used as stored (a missing RELAY_ENCRYPTION_KEY or RELAY_ENCRYPTION_KEY_PREVIOUS, or values written by hand)")
		}
		if d.cfg.KeyProblems != nil {
			d.cfg.KeyProblems.Report(j.subscriptionID, problem)
		}
	}
	d.cfg.Metrics.LocalFault(metrics.FaultSecret, len(js))
	d.releaseAfter(js, 0)
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
		active, changed := d.watchActive()
		if !active {
			return true // the caller finds no room and waits for the role
		}
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
		case <-changed:
		}
	}
}

// watchActive answers whether this replica may claim, and a channel closed when that
// changes (nil, never closed, without a gate).
func (d *Deliverer) watchActive() (bool, <-chan struct{}) {
	if d.cfg.Active == nil {
		return true, nil
	}
	return d.cfg.Active.Watch()
}

// awaitActive waits until this replica may claim. ok is false when ctx ended first; waited
// is true when it had to wait.
func (d *Deliverer) awaitActive(ctx context.Context) (ok, waited bool) {
	for {
		active, changed := d.watchActive()
		if active {
			return true, waited
		}
		waited = true
		select {
		case <-ctx.Done():
			return false, waited
		case <-changed:
		}
	}
}

// claimRoom is how many deliveries a claim made now may take once freeing more leases end:
// within MaxClaimed and defaults.BacklogBatches batches, none once shutdown has begun or while this replica is
// not the active relay.
func (d *Deliverer) claimRoom(freeing int) int {
	if active, _ := d.watchActive(); d.stopping() || !active {
		return 0
	}
	return min(defaults.BacklogBatches*d.cfg.BatchSize, d.lanes.room(d.cfg.MaxClaimed)+freeing)
}

// leasesEnded accounts for jobs whose leases ended (recorded or released).
func (d *Deliverer) leasesEnded(js []*job) {
	if len(js) > 0 {
		d.lanes.ended(js)
		signal(d.roomFree)
	}
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

// fanOutAndClaim fans out up to a batch of new outbox rows and leases up to n deliveries in
// one statement: the new ones first, as they are inserted, and with sweep (or when some new
// one could not be leased so) any other due. A full fan-out leaves the rest of the backlog
// to Config.Backlog (the dispatcher, whose batches grow).
func (d *Deliverer) fanOutAndClaim(ctx context.Context, n int, sweep bool) ([]*job, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	start := time.Now()
	rows, err := d.fanOutQ.QueryContext(qctx, append([]any{d.cfg.BatchSize, sweep, n, d.cfg.Owner}, d.leaseArgs()...)...)
	if err != nil {
		return nil, fmt.Errorf("fanning out and claiming deliveries: %w", err)
	}
	var events, deliveries sql.NullInt64
	if !rows.Next() {
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("fanning out and claiming deliveries: %w", err)
		}
		return nil, errors.New("fanning out and claiming deliveries: no counts row")
	}
	var ignore any
	dest := make([]any, 0, 19)
	for range 17 {
		dest = append(dest, &ignore)
	}
	if err := rows.Scan(append(dest, &events, &deliveries)...); err != nil {
		rows.Close()
		return nil, fmt.Errorf("fanning out and claiming deliveries: %w", err)
	}
	d.cfg.Metrics.Dispatched(int(events.Int64), int(deliveries.Int64))
	if events.Int64 > 0 {
		d.log.Debug().Int64("events", events.Int64).Int64("deliveries", deliveries.Int64).Msg("dispatched")
	}
	if int(events.Int64) >= d.cfg.BatchSize && d.cfg.Backlog != nil {
		d.cfg.Backlog()
	}
	return d.scanJobs(rows, start, &ignore, &ignore)
}

// leaseArgs are the arguments a claim takes after its limit and owner: lease length in ms,
// MaxPayloadBytes, MaxInFlightPerSubscription, MaxLeasedPerSubscription, the fast lanes
// (which may lease that many) and the subscriptions not to claim for (no key opens their
// secret here).
func (d *Deliverer) leaseArgs() []any {
	lease := d.cfg.DeliveryTimeout + d.cfg.LeaseMargin
	skip := d.skipped.list(time.Now())
	if d.cfg.KeyProblems != nil {
		skip = append(skip, d.cfg.KeyProblems.Blocked()...)
	}
	return []any{lease.Milliseconds(), d.cfg.MaxPayloadBytes, d.cfg.MaxInFlightPerSubscription,
		d.cfg.MaxLeasedPerSubscription, pq.StringArray(d.lanes.fast(maxAheadLanes)), pq.StringArray(skip)}
}

// maxAheadLanes caps the fast lanes a claim names: the busiest, those that gain from
// leases queued ahead. With thousands of subscriptions a claim's share of each is small
// anyway, and the list goes with every claim.
const maxAheadLanes = 64

// claimedColumns is what lease_due answers for each claimed delivery.
type claimedColumns struct {
	deliveryID                int64
	attempt                   int
	eventID, eventType        string
	tenantID                  string
	createdAt                 sql.NullTime
	payload                   sql.NullString
	payloadSize               int
	ordered                   bool
	subscriptionID, targetURL string
	headers, secret           string
	previousSecret            sql.NullString
	subscriptionTenant        string
	// timeoutMs is the subscription's own timeout (null: DeliveryTimeout), rateLimit its
	// requests per second (null: none).
	timeoutMs sql.NullInt64
	rateLimit sql.NullFloat64
}

// scanJobs turns the rows of a claim made at start into jobs, and closes them. A row that
// cannot be read becomes a job that fails alone, with the reason: the rest of the claim is
// sent as usual.
// Columns past the claimed ones (a fan-out's counts) are scanned into extra.
func (d *Deliverer) scanJobs(rows *sql.Rows, start time.Time, extra ...any) ([]*job, error) {
	defer rows.Close()
	var out []*job
	for rows.Next() {
		var c claimedColumns
		err := rows.Scan(append([]any{&c.deliveryID, &c.attempt, &c.eventID, &c.eventType, &c.tenantID, &c.createdAt,
			&c.payload, &c.payloadSize, &c.ordered, &c.subscriptionID, &c.targetURL, &c.headers, &c.secret,
			&c.previousSecret, &c.subscriptionTenant, &c.timeoutMs, &c.rateLimit}, extra...)...)
		if err != nil {
			// database/sql scans the same row again: at least which delivery it is.
			var ignore any
			if err2 := rows.Scan(append([]any{&c.deliveryID, &c.attempt, &ignore, &ignore, &ignore, &ignore, &ignore, &ignore,
				&ignore, &c.subscriptionID, &ignore, &ignore, &ignore, &ignore, &ignore, &ignore, &ignore}, extra...)...); err2 != nil {
				return nil, fmt.Errorf("reading claimed delivery: %w", err)
			}
			d.cfg.Metrics.LocalFault(metrics.FaultRowUnreadable, 1)
			out = append(out, &job{deliveryID: c.deliveryID, attempt: c.attempt, subscriptionID: c.subscriptionID,
				sendBy: start.Add(d.sendWithin), unreadable: "the delivery's row could not be read: " + err.Error()})
			continue
		}
		out = append(out, d.newJob(c, start))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading claimed deliveries: %w", err)
	}
	return out, nil
}

// newJob builds the job for one claimed delivery.
func (d *Deliverer) newJob(c claimedColumns, claimedAt time.Time) *job {
	j := &job{
		deliveryID: c.deliveryID, attempt: c.attempt, eventID: c.eventID, eventType: c.eventType,
		tenantID: c.tenantID, ordered: c.ordered, subscriptionID: c.subscriptionID, targetURL: c.targetURL,
		subscriptionTenant: c.subscriptionTenant, sendBy: claimedAt.Add(d.sendWithin),
		timeout: d.cfg.DeliveryTimeout, rateLimit: c.rateLimit.Float64,
	}
	// The claim leased this delivery for its own timeout on top of the usual lease
	// (lease_due), so sendBy stands: the rest of the lease still covers the request.
	if c.timeoutMs.Valid && c.timeoutMs.Int64 > 0 {
		j.timeout = time.Duration(c.timeoutMs.Int64) * time.Millisecond
	}
	var err error
	if c.headers != "" && c.headers != "{}" {
		j.headers, err = secrets.OpenHeaders([]byte(c.headers), d.openSecret)
		switch {
		case errors.Is(err, secrets.ErrMalformedHeaders):
			j.badHeaders = fmt.Errorf("custom headers: %w", err)
		case err != nil:
			j.keyProblem = fmt.Errorf("custom headers: %w", err)
		}
	}
	if j.signers, err = d.signers(c.secret, c.previousSecret); err != nil {
		j.keyProblem = err
	}
	switch {
	case !c.createdAt.Valid:
		// Only a row written before the outbox's CHECK on created_at can get here.
		j.unreadable = "the event's created_at is not a finite time, so no webhook timestamp can be made from it"
	case c.payload.Valid:
		j.createdAt = c.createdAt.Time
		j.body = appendBody(make([]byte, 0, len(c.payload.String)+160), j.eventID, j.eventType, j.createdAt, j.tenantID, c.payload.String)
	default:
		j.createdAt = c.createdAt.Time
		j.payloadSize = c.payloadSize
	}
	return j
}

// openSecret opens a sealed value with OpenSecret; without it nothing can be opened.
func (d *Deliverer) openSecret(stored string) (string, error) {
	if d.cfg.OpenSecret == nil {
		return "", secrets.ErrNoKey
	}
	return d.cfg.OpenSecret(stored)
}

// signers opens and decodes the current secret and, during a rotation, the previous one,
// once per job, so sending parses nothing. The stored text says the scheme (whsec_ HMAC,
// whsk_ ed25519), so the claim needs no column for it.
func (d *Deliverer) signers(current string, previous sql.NullString) ([]signature.Signer, error) {
	s, err := secrets.SigningKey(current, d.cfg.OpenSecret)
	if err != nil {
		return nil, err
	}
	signers := []signature.Signer{s}
	if previous.Valid && previous.String != "" {
		if s, err = secrets.SigningKey(previous.String, d.cfg.OpenSecret); err != nil {
			return nil, fmt.Errorf("previous secret: %w", err)
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// release gives back claims that were never sent.
func (d *Deliverer) release(jobs []*job) { d.releaseAfter(jobs, 0) }

// releaseAfter gives back claims that were never sent, not to be due again before delay
// has passed.
func (d *Deliverer) releaseAfter(jobs []*job, delay time.Duration) {
	if len(jobs) == 0 {
		return
	}
	defer d.leasesEnded(jobs)
	idList := make(pq.Int64Array, len(jobs))
	attempts := make(pq.Int64Array, len(jobs))
	for i, j := range jobs {
		idList[i], attempts[i] = j.deliveryID, int64(j.attempt)
	}
	// Retried for up to the lease margin: a claim that is not given back keeps its attempt
	// number and waits for its lease to run out, so it goes out later and as attempt 2. The
	// cause is often passing (out of file descriptors while hanging requests hold them, as
	// in the local faults that led here). Past the margin the leases are nearly over anyway.
	giveUp := time.Now().Add(d.cfg.LeaseMargin)
	if dl := d.deadline.Load(); dl != 0 {
		giveUp = time.Unix(0, dl)
	}
	bo := retry.NewBackoff()
	for {
		ctx, cancel := d.dbContext()
		_, err := d.db.ExecContext(ctx, d.releaseQ, idList, attempts, d.cfg.Owner, delay.Milliseconds())
		cancel()
		if err == nil {
			d.log.Info().Int("deliveries", len(jobs)).Dur("due_in", delay).Msg("released unsent claims")
			return
		}
		wait := bo.NextBackOff()
		if time.Until(giveUp) < wait {
			// Not fatal: the leases expire and the deliveries are claimed again then.
			d.log.Warn().Err(err).Int("deliveries", len(jobs)).Msg("giving up releasing unsent claims; their leases will expire")
			return
		}
		d.log.Warn().Err(err).Int("deliveries", len(jobs)).Dur("retry_in", wait.Round(time.Millisecond)).Msg("releasing unsent claims")
		time.Sleep(wait)
	}
}

// logAttempt writes one line per attempt: debug for success, warn for failure.
func (d *Deliverer) logAttempt(r *result) {
	ev := d.log.Debug()
	if r.outcome != outcomeSucceeded {
		ev = d.log.Warn()
	}
	ev = ev.Str("event_id", r.job.eventID).
		Str("delivery_id", d.cfg.DeliveryIDs.Format(r.job.deliveryID)).
		Str("subscription_id", r.job.subscriptionID).
		Int("attempt", r.job.attempt).
		Int("status", r.statusCode).
		Dur("duration", r.duration).
		Str("outcome", string(r.outcome))
	if r.err != "" {
		ev = ev.Str("error", r.err)
	}
	if r.outcome == outcomeRetry {
		ev = ev.Dur("retry_in", r.delay.Round(time.Millisecond))
	}
	ev.Msg("attempt")
}
