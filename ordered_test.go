package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// orderedReceiver checks, as requests arrive, that each key's events come one at a time and
// in order: event n of a key may only arrive after event n-1 of that key was answered 2xx.
type orderedReceiver struct {
	mu          sync.Mutex
	acked       map[string]int // key -> highest n answered 2xx (-1: none)
	failedOnce  map[string]bool
	violations  []string
	inFlight    int
	peak        int
	keysBusy    map[string]bool
	peakKeys    int
	headFailed  time.Time // when the stuck key's head got its last failure
	stuckAfter  []time.Time
	doneAt      map[string]time.Time
	ackedAt     []time.Time // when each event of the other keys was acknowledged
	eventsByKey int
}

func (o *orderedReceiver) handle(w http.ResponseWriter, r *http.Request, body []byte) {
	var msg struct {
		Data struct {
			Key string `json:"key"`
			N   int    `json:"n"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	key, n := msg.Data.Key, msg.Data.N
	id := r.Header.Get("webhook-id")

	o.mu.Lock()
	last, seen := o.acked[key]
	if !seen {
		last = -1
	}
	if n != last+1 && !(key == "stuck" && n == last+2 && last == -1) {
		// The stuck key's head (n=0) never succeeds: its line goes on with n=1 once it failed.
		o.violations = append(o.violations, fmt.Sprintf("key %s: event %d arrived after %d was acknowledged", key, n, last))
	}
	if o.keysBusy[key] {
		o.violations = append(o.violations, fmt.Sprintf("key %s: event %d arrived while another of its events was in flight", key, n))
	}
	o.keysBusy[key] = true
	o.inFlight++
	o.peak = max(o.peak, o.inFlight)
	o.peakKeys = max(o.peakKeys, len(o.keysBusy))
	if key == "stuck" && n > 0 {
		o.stuckAfter = append(o.stuckAfter, time.Now())
	}
	fail := false
	switch {
	case key == "stuck" && n == 0:
		fail = true
		o.headFailed = time.Now()
	case (n*7+len(key))%10 == 0 && !o.failedOnce[id]: // about 10% of first attempts fail
		o.failedOnce[id] = true
		fail = true
	}
	o.mu.Unlock()

	time.Sleep(3 * time.Millisecond)

	o.mu.Lock()
	o.inFlight--
	delete(o.keysBusy, key)
	if !fail {
		o.acked[key] = n
		if key != "stuck" {
			o.ackedAt = append(o.ackedAt, time.Now())
		}
		if n == o.eventsByKey-1 {
			o.doneAt[key] = time.Now()
		}
	}
	o.mu.Unlock()
	if fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func TestOrderedDeliveryAcrossReplicas(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	const keys, perKey = 50, 20
	o := &orderedReceiver{acked: map[string]int{}, failedOnce: map[string]bool{}, keysBusy: map[string]bool{}, doneAt: map[string]time.Time{}, eventsByKey: perKey}
	rc := relaytest.NewReceiver(t)
	rc.Respond = o.handle

	secret, err := signature.NewSecret()
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, ordered, secret) VALUES ($1, $2, '{*}', true, $3)`,
		ids.NewSubscriptionID(), rc.URL+"/ordered", secret)
	require.NoError(t, err)

	// Events of all keys interleaved, as a busy application writes them, plus a "stuck" key
	// whose first event always fails.
	_, err = db.Exec(`INSERT INTO relay.outbox (event_type, ordering_key, payload)
		SELECT 'signup.position_changed', k.key, jsonb_build_object('key', k.key, 'n', n)
		FROM generate_series(0, $2::int - 1) n,
		     LATERAL (SELECT 'su_' || g AS key FROM generate_series(1, $1::int) g
		              UNION ALL SELECT 'stuck' WHERE n < 5) k
		ORDER BY n, k.key`, keys, perKey)
	require.NoError(t, err)

	env := []string{"RELAY_RETRY_SCHEDULE=100ms,100ms,100ms", "RELAY_LOG_LEVEL=info"}
	start := time.Now()
	var procs [3]*relayProcess
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); procs[i] = startRelay(t, dsn, env...) }()
	}
	wg.Wait()

	total := keys*perKey + 5
	relaytest.Eventually(t, 3*time.Minute, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`) == total
	}, "ordered deliveries did not finish")
	took := time.Since(start)

	o.mu.Lock()
	defer o.mu.Unlock()
	require.Empty(t, o.violations)
	for k := 1; k <= keys; k++ {
		require.Equal(t, perKey-1, o.acked[fmt.Sprintf("su_%d", k)], "key su_%d incomplete", k)
	}
	require.Equal(t, 4, o.acked["stuck"], "the stuck key's later events followed once its head failed")
	require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'failed'`))
	require.Greater(t, o.peakKeys, 1, "several keys were in flight at the same moment")
	require.LessOrEqual(t, o.peak, 16, "RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION holds across the three replicas")
	for _, at := range o.stuckAfter {
		require.True(t, at.After(o.headFailed), "an event of the stuck key arrived before its head failed for good")
	}
	// The other keys did not wait for the stuck one: while its head was being retried, their
	// lines moved on by several events each.
	before, keysDone := 0, 0
	for _, at := range o.ackedAt {
		if at.Before(o.headFailed) {
			before++
		}
	}
	for _, at := range o.doneAt {
		if at.Before(o.headFailed) {
			keysDone++
		}
	}
	t.Logf("ordered: %d events over %d keys with 3 replicas in %s; peak %d requests / %d keys in flight; %d events of other keys (%d whole keys) done before the stuck head failed",
		total, keys+1, took.Round(time.Millisecond), o.peak, o.peakKeys, before, keysDone)
	require.Greater(t, before, 2*keys, "the other keys waited for the stuck key's head")
	for _, p := range procs {
		require.Equal(t, 0, p.stop(t))
	}
}
