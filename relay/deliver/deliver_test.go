package deliver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/dispatch"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener lives as long as its *sql.DB, closed in t.Cleanup.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// bundle is what a delivery test works with.
type bundle struct {
	db       *sqlx.DB
	receiver *relaytest.Receiver
}

type options struct {
	schedule        []time.Duration
	maxPayload      int
	timeout         time.Duration
	maxInFlight     int
	workers         int
	shutdownGrace   time.Duration
	pollInterval    time.Duration
	leaseMargin     time.Duration
	disableDispatch bool
	disableAfter    time.Duration
	openSecret      func(string) (string, error)
	client          *http.Client
	keyProblems     deliver.KeyProblems
	deliverer       **deliver.Deliverer // set to the deliverer started
}

// setup starts a migrated database, a receiver, and a dispatcher plus deliverer that run
// until the test ends.
func setup(t *testing.T, opts options) bundle {
	t.Helper()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	b.start(t, opts)
	return b
}

func (b bundle) start(t *testing.T, opts options) context.CancelFunc {
	t.Helper()
	if opts.timeout == 0 {
		opts.timeout = 2 * time.Second
	}
	if opts.pollInterval == 0 {
		opts.pollInterval = 10 * time.Millisecond
	}
	del, err := deliver.New(deliver.Config{
		DB:                         b.db,
		DeliveryIDs:                relaytest.DeliveryIDs(t, b.db),
		Owner:                      "test-" + ids.NewSubscriptionID(),
		Workers:                    max(opts.workers, 8),
		PollInterval:               opts.pollInterval,
		DeliveryTimeout:            opts.timeout,
		LeaseMargin:                opts.leaseMargin,
		RetrySchedule:              opts.schedule,
		MaxPayloadBytes:            opts.maxPayload,
		MaxInFlightPerSubscription: opts.maxInFlight,
		DisableAfter:               opts.disableAfter,
		ShutdownGrace:              opts.shutdownGrace,
		UserAgent:                  "outbox-relay/test",
		OpenSecret:                 opts.openSecret,
		Client:                     opts.client,
		KeyProblems:                opts.keyProblems,
		Logger:                     zerolog.Nop(),
	})
	require.NoError(t, err)
	if opts.deliverer != nil {
		*opts.deliverer = del
	}
	disp, err := dispatch.New(dispatch.Config{DB: b.db, PollInterval: opts.pollInterval, Dispatched: func(int) { del.Kick() }, Logger: zerolog.Nop()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); del.Run(ctx) }()
	if !opts.disableDispatch {
		wg.Add(1)
		go func() { defer wg.Done(); disp.Run(ctx) }()
	}
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

type subscription struct {
	id, secret string
}

func (b bundle) subscribe(t *testing.T, url string, headers map[string]string, ordered bool) subscription {
	t.Helper()
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	h, err := json.Marshal(headers)
	require.NoError(t, err)
	id := ids.NewSubscriptionID()
	_, err = b.db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, headers, ordered, secret) VALUES ($1, $2, '{*}', $3, $4, $5)`,
		id, url, string(h), ordered, secret)
	require.NoError(t, err)
	return subscription{id: id, secret: secret}
}

func (b bundle) publish(t *testing.T, ev outbox.Event) string {
	t.Helper()
	if ev.ID == "" {
		ev.ID = outbox.NewEventID()
	}
	if ev.Type == "" {
		ev.Type = "signup.created"
	}
	if ev.Payload == nil {
		ev.Payload = json.RawMessage(`{"signup": {"id": "su_1"}}`)
	}
	require.NoError(t, outbox.Publish(context.Background(), b.db, ev))
	return ev.ID
}

type attemptRow struct {
	Attempt    int     `db:"attempt"`
	StatusCode *int    `db:"status_code"`
	Error      *string `db:"error"`
	Response   *string `db:"response_body"`
	DurationMS int     `db:"duration_ms"`
}

type deliveryRow struct {
	ID           int64      `db:"id"`
	Status       string     `db:"status"`
	AttemptCount int        `db:"attempt_count"`
	NextAttempt  *time.Time `db:"next_attempt_at"`
	LeaseOwner   *string    `db:"lease_owner"`
}

func (b bundle) delivery(t *testing.T, eventID string) (deliveryRow, []attemptRow) {
	t.Helper()
	var d deliveryRow
	require.NoError(t, b.db.Get(&d, `SELECT id, status, attempt_count, next_attempt_at, lease_owner FROM relay.deliveries WHERE event_id = $1`, eventID))
	var as []attemptRow
	require.NoError(t, b.db.Select(&as, `SELECT attempt, status_code, error, response_body, duration_ms FROM relay.attempts WHERE delivery_id = $1 ORDER BY attempt`, d.ID))
	return d, as
}

func (b bundle) waitStatus(t *testing.T, eventID, status string) (deliveryRow, []attemptRow) {
	t.Helper()
	var d deliveryRow
	var as []attemptRow
	relaytest.Eventually(t, 15*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = $2`, eventID, status))
		if n == 0 {
			return false
		}
		d, as = b.delivery(t, eventID)
		return true
	}, "delivery of %s never became %s", eventID, status)
	return d, as
}

func TestDeliversSignedRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	sub := b.subscribe(t, b.receiver.URL+"/hooks", map[string]string{"Authorization": "Bearer receiver-token", "X-Custom": "yes"}, false)
	eventID := b.publish(t, outbox.Event{Type: "signup.created", TenantID: "wl_42", Payload: json.RawMessage(`{"signup": {"id": "su_1", "email": "a@example.com", "position": 17}}`)})

	req := b.receiver.WaitFor(t, 1, 10*time.Second)[0]
	var createdAt time.Time
	require.NoError(t, b.db.Get(&createdAt, `SELECT created_at FROM relay.outbox WHERE event_id = $1`, eventID))

	wantBody := fmt.Sprintf(`{"id":"%s","event_type":"signup.created","timestamp":"%s","tenant_id":"wl_42","data":{"signup": {"id": "su_1", "email": "a@example.com", "position": 17}}}`,
		eventID, createdAt.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z"))
	require.Equal(t, wantBody, string(req.Body))
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.Equal(t, "outbox-relay/test", req.Header.Get("User-Agent"))
	require.Equal(t, eventID, req.Header.Get("webhook-id"))
	require.Equal(t, "signup.created", req.Header.Get("X-Webhook-Event"))
	require.Equal(t, "1", req.Header.Get("X-Webhook-Attempt"))
	require.Equal(t, req.Header.Get("webhook-signature"), req.Header.Get("X-Webhook-Signature"))
	require.True(t, strings.HasPrefix(req.Header.Get("webhook-signature"), "v1,"))
	require.Equal(t, "Bearer receiver-token", req.Header.Get("Authorization"))
	require.Equal(t, "yes", req.Header.Get("X-Custom"))

	v, err := signature.NewVerifier(sub.secret)
	require.NoError(t, err)
	require.NoError(t, v.Verify(req.Header, req.Body), "the receiver can verify with the subscription's secret")

	d, attempts := b.waitStatus(t, eventID, "succeeded")
	require.Equal(t, 1, d.AttemptCount)
	require.Nil(t, d.NextAttempt)
	require.Nil(t, d.LeaseOwner)
	require.Len(t, attempts, 1)
	require.Equal(t, 204, *attempts[0].StatusCode)
	require.Nil(t, attempts[0].Error)
}

func TestRetriesOnScheduleWithIdenticalBody(t *testing.T) {
	t.Parallel()
	b := setup(t, options{schedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond}})
	var calls atomic.Int32
	b.receiver.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("database is sad"))
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	b.subscribe(t, b.receiver.URL, nil, false)
	eventID := b.publish(t, outbox.Event{})

	reqs := b.receiver.WaitFor(t, 3, 10*time.Second)
	for i, r := range reqs {
		require.Equal(t, string(reqs[0].Body), string(r.Body), "body bytes identical on every attempt")
		require.Equal(t, eventID, r.Header.Get("webhook-id"))
		require.Equal(t, fmt.Sprint(i+1), r.Header.Get("X-Webhook-Attempt"))
	}
	require.GreaterOrEqual(t, reqs[1].At.Sub(reqs[0].At), 50*time.Millisecond)
	require.GreaterOrEqual(t, reqs[2].At.Sub(reqs[1].At), 100*time.Millisecond)

	d, attempts := b.waitStatus(t, eventID, "succeeded")
	require.Equal(t, 3, d.AttemptCount)
	require.Len(t, attempts, 3)
	for i, a := range attempts {
		require.Equal(t, i+1, a.Attempt)
	}
	require.Equal(t, 500, *attempts[0].StatusCode)
	require.Equal(t, "HTTP 500", *attempts[0].Error)
	require.Equal(t, "database is sad", *attempts[0].Response)
	require.Equal(t, 200, *attempts[2].StatusCode)
	require.Nil(t, attempts[2].Error)
}

func TestFailsAfterScheduleEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, options{schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}})
	b.receiver.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusBadGateway) }
	b.subscribe(t, b.receiver.URL, nil, false)
	eventID := b.publish(t, outbox.Event{})
	d, attempts := b.waitStatus(t, eventID, "failed")
	require.Equal(t, 3, d.AttemptCount)
	require.Len(t, attempts, 3)
	require.Nil(t, d.NextAttempt)
	time.Sleep(100 * time.Millisecond)
	require.Len(t, b.receiver.Requests(), 3, "no attempt after the last")
}

func TestFailureKindsAreRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, options{timeout: 300 * time.Millisecond})
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 160 { // 10 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) { mux.ServeHTTP(w, r) }

	cases := []struct {
		path       string
		wantStatus string
		status     *int
		errPart    string
		response   string
	}{
		{path: "/redirect", wantStatus: "failed", status: ptr(302), errPart: "redirects are not followed"},
		{path: "/hang", wantStatus: "failed", errPart: "timeout: no answer within 300ms"},
		{path: "/close", wantStatus: "failed", errPart: "connection closed"},
		{path: "/big", wantStatus: "succeeded", status: ptr(200), response: strings.Repeat("x", 1024)},
	}
	// One event to a subscription per endpoint; deliveries are looked up by subscription URL.
	for _, c := range cases {
		b.subscribe(t, b.receiver.URL+c.path, nil, false)
	}
	eventID := b.publish(t, outbox.Event{})
	relaytest.Eventually(t, 15*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status <> 'pending'`, eventID))
		return n == len(cases)
	}, "not every delivery finished")

	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/"), func(t *testing.T) {
			var status string
			var a attemptRow
			require.NoError(t, b.db.Get(&status, `SELECT d.status FROM relay.deliveries d JOIN relay.subscriptions s ON s.id = d.subscription_id WHERE s.target_url = $1`, b.receiver.URL+c.path))
			require.NoError(t, b.db.Get(&a, `SELECT a.attempt, a.status_code, a.error, a.response_body, a.duration_ms FROM relay.attempts a
				JOIN relay.deliveries d ON d.id = a.delivery_id JOIN relay.subscriptions s ON s.id = d.subscription_id WHERE s.target_url = $1`, b.receiver.URL+c.path))
			require.Equal(t, c.wantStatus, status)
			require.Equal(t, c.status, a.StatusCode)
			if c.errPart != "" {
				require.NotNil(t, a.Error)
				require.Contains(t, *a.Error, c.errPart)
			} else {
				require.Nil(t, a.Error)
			}
			if c.response != "" {
				require.Equal(t, c.response, *a.Response, "the attempt log keeps the first 1 KiB")
			}
			if c.status == nil {
				require.Nil(t, a.Response, "no response body without an HTTP answer")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestGoneDisablesSubscriptionAndCancelsPending(t *testing.T) {
	t.Parallel()
	b := setup(t, options{schedule: []time.Duration{time.Hour}})
	b.receiver.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusGone) }
	sub := b.subscribe(t, b.receiver.URL, nil, false)
	// A delivery waiting for its retry must be cancelled too. It is made by hand while the
	// subscription is paused, so that the running dispatcher creates none for it.
	_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = 'paused' WHERE id = $1`, sub.id)
	require.NoError(t, err)
	waiting := b.publish(t, outbox.Event{})
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.outbox WHERE dispatched_at IS NULL`))
		return n == 0
	}, "outbox not dispatched")
	_, err = b.db.Exec(`INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, next_attempt_at)
		SELECT event_id, id, $1, now() + interval '1 hour' FROM relay.outbox WHERE event_id = $2`, sub.id, waiting)
	require.NoError(t, err)
	_, err = b.db.Exec(`UPDATE relay.subscriptions SET status = 'active' WHERE id = $1`, sub.id)
	require.NoError(t, err)

	gone := b.publish(t, outbox.Event{})
	d, attempts := b.waitStatus(t, gone, "failed")
	require.Equal(t, 1, d.AttemptCount)
	require.Equal(t, 410, *attempts[0].StatusCode)

	var status, reason string
	require.NoError(t, b.db.QueryRow(`SELECT status, disabled_reason FROM relay.subscriptions WHERE id = $1`, sub.id).Scan(&status, &reason))
	require.Equal(t, "disabled", status)
	require.Contains(t, reason, "410 Gone")
	w, _ := b.delivery(t, waiting)
	require.Equal(t, "cancelled", w.Status)
}

func TestOversizePayloadFailsWithoutRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxPayload: 100})
	b.subscribe(t, b.receiver.URL, nil, false)
	big := b.publish(t, outbox.Event{Payload: map[string]string{"blob": strings.Repeat("a", 200)}})
	small := b.publish(t, outbox.Event{})
	_, attempts := b.waitStatus(t, big, "failed")
	b.waitStatus(t, small, "succeeded")
	require.Len(t, attempts, 1)
	require.Nil(t, attempts[0].StatusCode)
	require.Contains(t, *attempts[0].Error, "payload too large")
	require.Contains(t, *attempts[0].Error, "limit of 100 bytes")
	for _, r := range b.receiver.Requests() {
		require.NotEqual(t, big, r.Header.Get("webhook-id"), "the oversize payload was never sent")
	}
}

func TestRetryAfterDelaysNextAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, options{schedule: []time.Duration{10 * time.Millisecond}})
	var calls atomic.Int32
	b.receiver.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	b.subscribe(t, b.receiver.URL, nil, false)
	eventID := b.publish(t, outbox.Event{})
	reqs := b.receiver.WaitFor(t, 2, 10*time.Second)
	require.GreaterOrEqual(t, reqs[1].At.Sub(reqs[0].At), 900*time.Millisecond, "Retry-After: 1 beats a 10ms schedule")
	b.waitStatus(t, eventID, "succeeded")
}

// TestExpiredLeaseIsTakenAgain plays a replica that claimed a delivery and died: once its
// lease has ended, the delivery is sent with the next attempt number.
func TestExpiredLeaseIsTakenAgain(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	b.subscribe(t, b.receiver.URL, nil, false)
	eventID := b.publish(t, outbox.Event{})
	d, err := dispatch.New(dispatch.Config{DB: db, Logger: zerolog.Nop()})
	require.NoError(t, err)
	_, err = d.DispatchOnce(context.Background())
	require.NoError(t, err)
	// The dead replica's claim: attempt 1 taken, lease still running for 300ms.
	_, err = db.Exec(`UPDATE relay.deliveries SET attempt_count = 1, lease_owner = 'dead', lease_until = now() + interval '300 milliseconds'`)
	require.NoError(t, err)

	start := time.Now()
	b.start(t, options{})
	req := b.receiver.WaitFor(t, 1, 10*time.Second)[0]
	require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "not taken while the lease ran")
	require.Equal(t, "2", req.Header.Get("X-Webhook-Attempt"))
	row, attempts := b.waitStatus(t, eventID, "succeeded")
	require.Equal(t, 2, row.AttemptCount)
	require.Len(t, attempts, 1)
	require.Equal(t, 2, attempts[0].Attempt)
}

// TestSubscriptionHeldByAnotherReplicaWaits: while another replica holds a live lease on a
// subscription, this one sends none of that subscription's deliveries, so the in-flight cap
// (which each replica keeps locally) holds across replicas.
func TestSubscriptionHeldByAnotherReplicaWaits(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	b.subscribe(t, b.receiver.URL, nil, false)
	held := b.publish(t, outbox.Event{})
	free := b.publish(t, outbox.Event{})
	d, err := dispatch.New(dispatch.Config{DB: db, Logger: zerolog.Nop()})
	require.NoError(t, err)
	_, err = d.DispatchOnce(context.Background())
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE relay.deliveries SET attempt_count = 1, lease_owner = 'other', lease_until = now() + interval '400 milliseconds'
		WHERE event_id = $1`, held)
	require.NoError(t, err)

	start := time.Now()
	b.start(t, options{})
	reqs := b.receiver.WaitFor(t, 2, 10*time.Second)
	require.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond, "sent while another replica held the subscription")
	got := map[string]string{}
	for _, r := range reqs {
		got[r.Header.Get("webhook-id")] = r.Header.Get("X-Webhook-Attempt")
	}
	require.Equal(t, map[string]string{held: "2", free: "1"}, got)
}

func TestInFlightCapPerSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxInFlight: 2, workers: 16})
	var now, peak atomic.Int32
	release := make(chan struct{})
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			now.Add(-1)
		}
		w.WriteHeader(http.StatusOK)
	}
	b.subscribe(t, b.receiver.URL+"/slow", nil, false)
	fast := b.subscribe(t, b.receiver.URL+"/fast", nil, false)
	var events []string
	for range 10 {
		events = append(events, b.publish(t, outbox.Event{}))
	}
	// The fast subscription gets all ten while the slow one is stuck at its cap.
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE subscription_id = $1 AND status = 'succeeded'`, fast.id))
		return n == 10
	}, "fast subscription starved by the slow one")
	require.Equal(t, int32(2), peak.Load(), "at most 2 concurrent requests to the slow subscription")
	close(release)
	for _, e := range events {
		relaytest.Eventually(t, 10*time.Second, func() bool {
			var n int
			require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'succeeded'`, e))
			return n == 2
		}, "event %s not delivered to both", e)
	}
	require.LessOrEqual(t, peak.Load(), int32(2))
}

func TestOrderedSubscriptionSendsOneAtATimePerKey(t *testing.T) {
	t.Parallel()
	b := setup(t, options{schedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}})
	var mu sync.Mutex
	seen := map[string][]int{}
	failedOnce := map[string]bool{}
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		var msg struct {
			Data struct {
				Key string `json:"key"`
				N   int    `json:"n"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &msg))
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("webhook-id")
		if msg.Data.N%3 == 0 && !failedOnce[id] { // every third event fails once
			failedOnce[id] = true
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		seen[msg.Data.Key] = append(seen[msg.Data.Key], msg.Data.N)
		w.WriteHeader(http.StatusOK)
	}
	b.subscribe(t, b.receiver.URL, nil, true)
	for n := range 8 {
		for _, key := range []string{"su_a", "su_b", "su_c"} {
			b.publish(t, outbox.Event{OrderingKey: key, Payload: map[string]any{"key": key, "n": n}})
		}
	}
	relaytest.Eventually(t, 20*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`))
		return n == 24
	}, "ordered deliveries did not finish")
	mu.Lock()
	defer mu.Unlock()
	for _, key := range []string{"su_a", "su_b", "su_c"} {
		require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, seen[key], "key %s out of order", key)
	}
}

func TestShutdownReleasesUnsentClaims(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
		w.WriteHeader(http.StatusOK)
	}
	b.subscribe(t, b.receiver.URL, nil, false)
	eventID := b.publish(t, outbox.Event{})
	stop := b.start(t, options{shutdownGrace: 100 * time.Millisecond})
	b.receiver.WaitFor(t, 1, 10*time.Second)
	stop() // the request outlives the grace: it is cut and the claim released

	d, attempts := b.delivery(t, eventID)
	require.Equal(t, "pending", d.Status)
	require.Equal(t, 0, d.AttemptCount, "the cut attempt is given back")
	require.Nil(t, d.LeaseOwner)
	require.Empty(t, attempts)
}

func TestEndpointFailingForDisableAfterIsDisabled(t *testing.T) {
	t.Parallel()
	// Retries every 100ms for 1s, then an hour: the 300ms window is passed well before.
	schedule := []time.Duration{}
	for range 10 {
		schedule = append(schedule, 100*time.Millisecond)
	}
	b := setup(t, options{disableAfter: 300 * time.Millisecond, schedule: append(schedule, time.Hour)})
	var failing atomic.Bool
	failing.Store(true)
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if failing.Load() && strings.HasSuffix(r.URL.Path, "/flaky") {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	broken := b.subscribe(t, b.receiver.URL+"/flaky", nil, false)
	healthy := b.subscribe(t, b.receiver.URL+"/fine", nil, false)
	first := b.publish(t, outbox.Event{})

	subStatus := func(id string) (status string, reason *string, failingSince *time.Time) {
		require.NoError(t, b.db.QueryRow(`SELECT status, disabled_reason, failing_since FROM relay.subscriptions WHERE id = $1`, id).Scan(&status, &reason, &failingSince))
		return
	}
	relaytest.Eventually(t, 10*time.Second, func() bool {
		s, _, _ := subStatus(broken.id)
		return s == "disabled"
	}, "a subscription failing for longer than RELAY_DISABLE_AFTER was not disabled")
	_, reason, _ := subStatus(broken.id)
	require.Contains(t, *reason, "RELAY_DISABLE_AFTER")
	var status string
	var attempts int
	require.NoError(t, b.db.QueryRow(`SELECT status, attempt_count FROM relay.deliveries WHERE subscription_id = $1 AND event_id = $2`, broken.id, first).Scan(&status, &attempts))
	require.Equal(t, "cancelled", status, "its pending delivery is cancelled")
	require.GreaterOrEqual(t, attempts, 3, "it was retried until the window ran out")

	s, _, since := subStatus(healthy.id)
	require.Equal(t, "active", s)
	require.Nil(t, since, "a healthy endpoint is never marked failing")

	// Back to active: a success clears the failure window.
	failing.Store(false)
	_, err := b.db.Exec(`UPDATE relay.subscriptions SET status = 'active', disabled_reason = NULL, failing_since = now() WHERE id = $1`, broken.id)
	require.NoError(t, err)
	next := b.publish(t, outbox.Event{})
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'succeeded'`, next))
		return n == 2
	}, "re-enabled subscription not delivered")
	_, _, since = subStatus(broken.id)
	require.Nil(t, since, "a success clears failing_since")
}

func TestOperationalEventsReachOnlySubscriptionsThatAskForThem(t *testing.T) {
	t.Parallel()
	b := setup(t, options{schedule: []time.Duration{10 * time.Millisecond}})
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		switch r.URL.Path {
		case "/gone":
			w.WriteHeader(http.StatusGone)
		case "/broken":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}
	gone := b.subscribe(t, b.receiver.URL+"/gone", nil, false)
	broken := b.subscribe(t, b.receiver.URL+"/broken", nil, false)
	everything := b.subscribe(t, b.receiver.URL+"/everything", nil, false)
	ops := ids.NewSubscriptionID()
	_, err := b.db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ($1, $2, '{delivery.failed,subscription.*}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')`,
		ops, b.receiver.URL+"/ops")
	require.NoError(t, err)
	eventID := b.publish(t, outbox.Event{})

	// Expected at /ops: delivery.failed for gone and broken, subscription.disabled for gone.
	type opEvent struct {
		EventType string         `json:"event_type"`
		Data      map[string]any `json:"data"`
	}
	var got []opEvent
	relaytest.Eventually(t, 15*time.Second, func() bool {
		got = got[:0]
		for _, r := range b.receiver.Requests() {
			if r.Header.Get("X-Webhook-Event") != "signup.created" {
				var e opEvent
				require.NoError(t, json.Unmarshal(r.Body, &e))
				got = append(got, e)
			}
		}
		return len(got) >= 3
	}, "operational events not delivered")
	time.Sleep(200 * time.Millisecond)
	for _, r := range b.receiver.Requests() {
		if typ := r.Header.Get("X-Webhook-Event"); typ != "signup.created" {
			require.Contains(t, r.Header.Get("webhook-id"), "-", "operational event ids are UUIDs")
		}
	}
	failedFor := map[string]map[string]any{}
	var disabled []map[string]any
	for _, e := range got {
		switch e.EventType {
		case "delivery.failed":
			failedFor[e.Data["subscription_id"].(string)] = e.Data
		case "subscription.disabled":
			disabled = append(disabled, e.Data)
		}
	}
	require.Len(t, failedFor, 2)
	require.Equal(t, eventID, failedFor[gone.id]["event_id"])
	require.Equal(t, 410.0, failedFor[gone.id]["last_status_code"])
	require.Equal(t, 2.0, failedFor[broken.id]["attempts"])
	require.Equal(t, "HTTP 500", failedFor[broken.id]["last_error"])
	require.Equal(t, "signup.created", failedFor[broken.id]["event_type"])
	var brokenDelivery int64
	require.NoError(t, b.db.Get(&brokenDelivery, `SELECT id FROM relay.deliveries WHERE subscription_id = $1 AND event_id = $2`, broken.id, eventID))
	require.Equal(t, relaytest.DeliveryIDs(t, b.db).Format(brokenDelivery), failedFor[broken.id]["delivery_id"], "the ID the API shows")
	require.Len(t, disabled, 1)
	require.Equal(t, gone.id, disabled[0]["subscription_id"])
	require.Contains(t, disabled[0]["reason"], "410 Gone")

	var toEverything int
	require.NoError(t, b.db.Get(&toEverything, `SELECT count(*) FROM relay.deliveries d JOIN relay.outbox o ON o.id = d.outbox_id
		WHERE d.subscription_id = $1 AND o.event_type <> 'signup.created'`, everything.id))
	require.Zero(t, toEverything, `"*" does not match the relay's operational events`)
}

// TestExpiredLeaseOnOrderedHeadSendsTheHeadAgain plays a replica that died while sending the
// head of an ordering line: the line waits for the lease, then the same head goes again, and
// only after it the next event.
func TestExpiredLeaseOnOrderedHeadSendsTheHeadAgain(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	b.subscribe(t, b.receiver.URL, nil, true)
	head := b.publish(t, outbox.Event{OrderingKey: "su_1"})
	next := b.publish(t, outbox.Event{OrderingKey: "su_1"})
	d, err := dispatch.New(dispatch.Config{DB: db, Logger: zerolog.Nop()})
	require.NoError(t, err)
	_, err = d.DispatchOnce(context.Background())
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE relay.deliveries SET attempt_count = 1, lease_owner = 'dead', lease_until = now() + interval '400 milliseconds' WHERE event_id = $1`, head)
	require.NoError(t, err)

	start := time.Now()
	b.start(t, options{})
	reqs := b.receiver.WaitFor(t, 2, 10*time.Second)
	require.GreaterOrEqual(t, reqs[0].At.Sub(start), 300*time.Millisecond, "the line waited for the dead replica's lease")
	require.Equal(t, head, reqs[0].Header.Get("webhook-id"), "the head goes again first")
	require.Equal(t, "2", reqs[0].Header.Get("X-Webhook-Attempt"))
	require.Equal(t, next, reqs[1].Header.Get("webhook-id"))
	require.Equal(t, "1", reqs[1].Header.Get("X-Webhook-Attempt"))
}

// TestWorkersHeldBySlowEndpointsDoNotHoldBackOthers fills most workers with requests that
// hang: the few left free must still be claimed for the healthy subscription at once.
func TestWorkersHeldBySlowEndpointsDoNotHoldBackOthers(t *testing.T) {
	t.Parallel()
	b := setup(t, options{workers: 8, maxInFlight: 3, timeout: 5 * time.Second})
	release := make(chan struct{})
	b.receiver.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if strings.HasPrefix(r.URL.Path, "/hang") {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusOK)
	}
	t.Cleanup(func() { close(release) })
	b.subscribe(t, b.receiver.URL+"/hang1", nil, false)
	b.subscribe(t, b.receiver.URL+"/hang2", nil, false)
	healthy := b.subscribe(t, b.receiver.URL+"/healthy", nil, false)
	for range 20 {
		b.publish(t, outbox.Event{})
	}
	start := time.Now()
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE subscription_id = $1 AND status = 'succeeded'`, healthy.id))
		return n == 20
	}, "the healthy subscription waited for the hanging ones")
	require.Less(t, time.Since(start), 3*time.Second, "six of eight workers hang for 5s; the other two carry on")
}

// NewEvents: the deliverer fans out new outbox rows with its claim, in one statement, so a
// new event is sent without the dispatcher; a full fan-out hands the rest to Backlog.
func TestNewEventsAreFannedOutWithTheClaim(t *testing.T) {
	t.Parallel()
	var del *deliver.Deliverer
	b := setup(t, options{disableDispatch: true, pollInterval: time.Hour, deliverer: &del})
	b.subscribe(t, b.receiver.URL+"/hook", nil, false)

	id := b.publish(t, outbox.Event{})
	require.True(t, del.NewEvents(), "an active deliverer takes the fan-out")
	b.waitStatus(t, id, "succeeded")
	reqs := b.receiver.WaitFor(t, 1, 5*time.Second)
	require.Equal(t, id, reqs[0].Header.Get("webhook-id"))
	var dispatched int
	require.NoError(t, b.db.Get(&dispatched, `SELECT count(*) FROM relay.outbox WHERE event_id = $1 AND dispatched_at IS NOT NULL`, id))
	require.Equal(t, 1, dispatched)
}

func TestAFullFanOutWithTheClaimCallsBacklog(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	rc := relaytest.NewReceiver(t)
	backlog := make(chan struct{}, 1)
	del, err := deliver.New(deliver.Config{DB: db, DeliveryIDs: relaytest.DeliveryIDs(t, db), Owner: "test", UserAgent: "outbox-relay/test", BatchSize: 5,
		PollInterval: time.Hour, Logger: zerolog.Nop(), Backlog: func() {
			select {
			case backlog <- struct{}{}:
			default:
			}
		}})
	require.NoError(t, err)
	b := bundle{db: db, receiver: rc}
	b.subscribe(t, rc.URL+"/hook", nil, false)
	_, err = db.Exec(`INSERT INTO relay.outbox (event_type, payload) SELECT 'a.b', '{}' FROM generate_series(1, 12)`)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); del.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.True(t, del.NewEvents())
	select {
	case <-backlog:
	case <-time.After(5 * time.Second):
		t.Fatal("a full fan-out did not hand the backlog on")
	}
	rc.WaitFor(t, 5, 5*time.Second)
	var left int
	require.NoError(t, db.Get(&left, `SELECT count(*) FROM relay.outbox WHERE dispatched_at IS NULL`))
	require.Equal(t, 7, left, "one batch fanned out with the claim; the rest is the dispatcher's")
}
