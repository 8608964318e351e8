package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/dispatch"
	"github.com/referralloop/outbox-relay/relay/ids"
)

type bundle struct {
	db *sqlx.DB
	d  *dispatch.Dispatcher
}

func setup(t *testing.T) bundle {
	t.Helper()
	db, _ := relaytest.NewDB(t)
	d, err := dispatch.New(dispatch.Config{DB: db, BatchSize: 10, PollInterval: 20 * time.Millisecond, Logger: zerolog.Nop()})
	require.NoError(t, err)
	return bundle{db: db, d: d}
}

type sub struct {
	tenant  string
	types   []string
	filter  string
	status  string
	ordered bool
	deleted bool
}

func (b bundle) subscribe(t *testing.T, s sub) string {
	t.Helper()
	id := ids.NewSubscriptionID()
	if s.status == "" {
		s.status = "active"
	}
	var tenant, filter any
	if s.tenant != "" {
		tenant = s.tenant
	}
	if s.filter != "" {
		filter = s.filter
	}
	_, err := b.db.Exec(`INSERT INTO relay.subscriptions (id, tenant_id, target_url, event_types, filter, status, ordered, secret, deleted_at)
		VALUES ($1, $2, 'https://example.com/hook/' || $1, $3, $4::jsonb, $5, $6, 'whsec_x', CASE WHEN $7 THEN now() END)`,
		id, tenant, pq.StringArray(s.types), filter, s.status, s.ordered, s.deleted)
	require.NoError(t, err)
	return id
}

func (b bundle) publish(t *testing.T, ev outbox.Event) string {
	t.Helper()
	if ev.ID == "" {
		ev.ID = outbox.NewEventID()
	}
	if ev.Payload == nil {
		ev.Payload = json.RawMessage(`{}`)
	}
	require.NoError(t, outbox.Publish(context.Background(), b.db, ev))
	return ev.ID
}

// deliveredTo answers the subscriptions that got a delivery of the event.
func (b bundle) deliveredTo(t *testing.T, eventID string) []string {
	t.Helper()
	var out []string
	require.NoError(t, b.db.Select(&out, `SELECT subscription_id FROM relay.deliveries WHERE event_id = $1 ORDER BY subscription_id`, eventID))
	return out
}

func sorted(s ...string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func TestMatching(t *testing.T) {
	t.Parallel()
	b := setup(t)
	all := b.subscribe(t, sub{types: []string{"*"}})
	exact := b.subscribe(t, sub{types: []string{"signup.created"}})
	prefix := b.subscribe(t, sub{types: []string{"signup.*"}})
	several := b.subscribe(t, sub{types: []string{"other.thing", "signup.deleted"}})
	tenant42 := b.subscribe(t, sub{tenant: "wl_42", types: []string{"*"}})
	tenant7 := b.subscribe(t, sub{tenant: "wl_7", types: []string{"*"}})
	filtered := b.subscribe(t, sub{types: []string{"*"}, filter: `{"waitlist_id": "wl_42"}`})
	b.subscribe(t, sub{types: []string{"*"}, status: "paused"})
	b.subscribe(t, sub{types: []string{"*"}, status: "disabled"})
	b.subscribe(t, sub{types: []string{"*"}, deleted: true})

	cases := []struct {
		name string
		ev   outbox.Event
		want []string
	}{
		{"ExactAndPrefix", outbox.Event{Type: "signup.created"}, sorted(all, exact, prefix)},
		{"PrefixMatchesDeeperTypes", outbox.Event{Type: "signup.a.b"}, sorted(all, prefix)},
		{"PrefixDoesNotMatchItsStem", outbox.Event{Type: "signup"}, sorted(all)},
		{"PrefixDoesNotMatchLongerWord", outbox.Event{Type: "signupx.created"}, sorted(all)},
		{"OneOfSeveralTypes", outbox.Event{Type: "signup.deleted"}, sorted(all, prefix, several)},
		{"TenantEventReachesItsTenantAndOperators", outbox.Event{Type: "x.y", TenantID: "wl_42"}, sorted(all, tenant42)},
		{"NullTenantNeverReachesTenantSubscriptions", outbox.Event{Type: "x.y"}, sorted(all)},
		{"FilterContained", outbox.Event{Type: "x.y", TenantID: "wl_7", Payload: json.RawMessage(`{"waitlist_id": "wl_42", "more": [1]}`)}, sorted(all, tenant7, filtered)},
		{"FilterNotContained", outbox.Event{Type: "x.y", Payload: json.RawMessage(`{"waitlist_id": "wl_1"}`)}, sorted(all)},
	}
	eventIDs := make([]string, len(cases))
	for i, c := range cases {
		eventIDs[i] = b.publish(t, c.ev)
	}
	for {
		res, err := b.d.DispatchOnce(context.Background())
		require.NoError(t, err)
		if res.Events == 0 {
			break
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, b.deliveredTo(t, eventIDs[i]))
		})
	}

	var undispatched int
	require.NoError(t, b.db.Get(&undispatched, `SELECT count(*) FROM relay.outbox WHERE dispatched_at IS NULL`))
	require.Zero(t, undispatched)
	var pending int
	require.NoError(t, b.db.Get(&pending, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending' AND attempt_count = 0 AND next_attempt_at IS NOT NULL`))
	var total int
	require.NoError(t, b.db.Get(&total, `SELECT count(*) FROM relay.deliveries`))
	require.Equal(t, total, pending, "new deliveries are pending and due")
}

func TestOrderingKeyIsKeptOnlyForOrderedSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ordered := b.subscribe(t, sub{types: []string{"*"}, ordered: true})
	plain := b.subscribe(t, sub{types: []string{"*"}})
	b.publish(t, outbox.Event{Type: "signup.position_changed", OrderingKey: "su_1"})
	_, err := b.d.DispatchOnce(context.Background())
	require.NoError(t, err)
	var keys map[string]*string = map[string]*string{}
	rows, err := b.db.Query(`SELECT subscription_id, ordering_key FROM relay.deliveries`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id string
		var key *string
		require.NoError(t, rows.Scan(&id, &key))
		keys[id] = key
	}
	require.NotNil(t, keys[ordered])
	require.Equal(t, "su_1", *keys[ordered])
	require.Nil(t, keys[plain])
}

// TestReplicasCreateExactlyOneDeliveryPerPair runs several dispatchers on one database while
// events are being written, then replays every row (as after a crash between fan-out and
// commit): each (event, subscription) pair has exactly one delivery.
func TestReplicasCreateExactlyOneDeliveryPerPair(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subs := []string{b.subscribe(t, sub{types: []string{"*"}}), b.subscribe(t, sub{types: []string{"signup.*"}})}
	const events = 400

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		d, err := dispatch.New(dispatch.Config{DB: b.db, BatchSize: 7, PollInterval: 5 * time.Millisecond, Logger: zerolog.Nop()})
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(ctx) }()
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range events / 4 {
				b.publish(t, outbox.Event{Type: "signup.created", Payload: json.RawMessage(fmt.Sprintf(`{"w": %d, "i": %d}`, w, i))})
			}
		}()
	}
	writers.Wait()
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM relay.outbox WHERE dispatched_at IS NULL`))
		return n == 0
	}, "outbox not drained")
	cancel()
	wg.Wait()

	// Replay every row: the unique key turns the second fan-out into nothing.
	_, err := b.db.Exec(`UPDATE relay.outbox SET dispatched_at = NULL`)
	require.NoError(t, err)
	for {
		res, err := b.d.DispatchOnce(context.Background())
		require.NoError(t, err)
		require.Zero(t, res.Deliveries)
		if res.Events == 0 {
			break
		}
	}

	var pairs, distinct int
	require.NoError(t, b.db.Get(&pairs, `SELECT count(*) FROM relay.deliveries`))
	require.NoError(t, b.db.Get(&distinct, `SELECT count(DISTINCT (event_id, subscription_id)) FROM relay.deliveries`))
	require.Equal(t, events*len(subs), pairs)
	require.Equal(t, pairs, distinct)
}

func TestRunWakesOnKickAndReportsToDeliverer(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	dispatched := make(chan int, 10)
	d, err := dispatch.New(dispatch.Config{DB: db, PollInterval: time.Hour, Logger: zerolog.Nop(),
		Dispatched: func(n int) { dispatched <- n }})
	require.NoError(t, err)
	b := bundle{db: db, d: d}
	b.subscribe(t, sub{types: []string{"*"}})

	// The first row is dispatched by Run's first pass, so the second can only come by a kick.
	b.publish(t, outbox.Event{Type: "a.b"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	select {
	case n := <-dispatched:
		require.Equal(t, 1, n)
	case <-time.After(5 * time.Second):
		t.Fatal("Run's first pass did not dispatch the waiting row")
	}
	require.Empty(t, d.Trouble())

	b.publish(t, outbox.Event{Type: "a.b"})
	d.Kick()
	select {
	case n := <-dispatched:
		require.Equal(t, 1, n)
	case <-time.After(5 * time.Second):
		t.Fatal("a kick did not dispatch the new row (poll interval is an hour)")
	}
	cancel()
	<-done
}

// A backlog is fanned out in growing statements: each full batch doubles the next, up to ten
// batches, so 250 rows at a batch of 10 take five statements rather than 25.
func TestBacklogIsFannedOutInGrowingBatches(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	var mu sync.Mutex
	var sizes []int
	d, err := dispatch.New(dispatch.Config{DB: db, BatchSize: 10, PollInterval: time.Hour, Logger: zerolog.Nop(),
		Dispatched: func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() }})
	require.NoError(t, err)
	b := bundle{db: db, d: d}
	b.subscribe(t, sub{types: []string{"*"}})
	_, err = db.Exec(`INSERT INTO relay.outbox (event_type, payload) SELECT 'a.b', '{}' FROM generate_series(1, 250)`)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	relaytest.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, n := range sizes {
			total += n
		}
		return total == 250
	}, "the backlog was not fanned out")
	cancel()
	<-done
	mu.Lock()
	got := slices.Clone(sizes)
	mu.Unlock()
	require.Equal(t, []int{10, 20, 40, 80, 100}, got)

	// The next fan-out starts from one batch again.
	b.publish(t, outbox.Event{Type: "a.b"})
	res, err := d.DispatchOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, res.Events)
}
