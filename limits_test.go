package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// arrivals answers when the receiver got each request to path, in order.
func arrivals(rc *relaytest.Receiver, path string) []time.Time {
	var at []time.Time
	for _, r := range rc.Requests() {
		if r.Path == path {
			at = append(at, r.At)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at
}

// A subscription with rate_limit 5 receives its backlog at 5 a second, evenly, while an
// unlimited subscription to the same events gets them all at full speed.
func TestRateLimitEndToEnd(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := relaytest.NewReceiver(t)
	p := startRelay(t, dsn, "RELAY_LOG_LEVEL=info")

	for path, limit := range map[string]any{"/limited": 5.0, "/unlimited": nil} {
		status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{
			"target_url": rc.URL + path, "event_types": []string{"load.*"}, "rate_limit": limit,
		})
		require.Equal(t, http.StatusCreated, status, "%v", created)
		require.Equal(t, limit, created["rate_limit"], "%v", created)
	}

	const events = 60
	_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload)
		SELECT 'load.tick', jsonb_build_object('n', n) FROM generate_series(1, $1) n`, events)
	require.NoError(t, err)

	relaytest.Eventually(t, 25*time.Second, func() bool {
		return len(arrivals(rc, "/limited")) >= events
	}, "the limited subscription did not get its %d events", events)
	limited, unlimited := arrivals(rc, "/limited"), arrivals(rc, "/unlimited")
	require.Len(t, unlimited, events)
	time.Sleep(500 * time.Millisecond)
	require.Len(t, arrivals(rc, "/limited"), events, "each event once")

	// The unlimited one: all of them long before the limited one got a fifth of its own,
	// at far more than 5 a second.
	first := limited[0]
	unlimitedTook := unlimited[events-1].Sub(unlimited[0])
	t.Logf("unlimited: %d events in %s; limited: %d in %s", events, unlimitedTook, events, limited[events-1].Sub(limited[0]))
	require.True(t, unlimited[events-1].Before(limited[events/5]), "the unlimited subscription waited for the limited one")
	require.Less(t, unlimitedTook, 2*time.Second, "unlimited: %d events in %s", events, unlimitedTook)

	// The limited one: after its first second (a full bucket is one second's worth, so at
	// most 5 + 5 then), 5 a second within 10%, and never a burst.
	inFirst := 0
	for _, at := range limited {
		if at.Sub(limited[0]) <= time.Second {
			inFirst++
		}
	}
	require.LessOrEqual(t, inFirst, 11, "first second")
	var steady []time.Time
	for _, at := range limited {
		if at.Sub(limited[0]) > time.Second {
			steady = append(steady, at)
		}
	}
	window := steady[len(steady)-1].Sub(steady[0])
	require.Greater(t, window, 8*time.Second)
	rate := float64(len(steady)-1) / window.Seconds()
	t.Logf("limited: %.2f/s over %s after the first second (%d in the first second)", rate, window.Round(time.Millisecond), inFirst)
	require.InDelta(t, 5.0, rate, 0.5, "requests per second")
	for i, at := range steady {
		j := i
		for j < len(steady) && steady[j].Sub(at) < time.Second {
			j++
		}
		require.LessOrEqual(t, j-i, 7, "a burst: %d requests within a second, %s after the first", j-i, at.Sub(first))
	}
	require.Equal(t, 2*events, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`))
	require.Equal(t, 2*events, countWhere(t, db, `SELECT count(*) FROM relay.attempts`), "one attempt each: nothing sent twice")
}

// A subscription's timeout replaces RELAY_DELIVERY_TIMEOUT both ways: a receiver that
// answers after 2s fails with timeout 1 (the stored error says so, and the attempts follow
// the retry schedule), and succeeds with timeout 3 although the relay's default is 1.5s.
func TestSubscriptionTimeoutEndToEnd(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := relaytest.NewReceiver(t)
	rc.Respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-time.After(2 * time.Second):
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	}
	p := startRelay(t, dsn, "RELAY_LOG_LEVEL=info", "RELAY_DELIVERY_TIMEOUT=1500ms", "RELAY_RETRY_SCHEDULE=1s,1s")

	subs := map[string]string{}
	for path, timeout := range map[string]any{"/t1": 1, "/t3": 3, "/default": nil} {
		status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{
			"target_url": rc.URL + path, "event_types": []string{"slow.*"}, "timeout": timeout,
		})
		require.Equal(t, http.StatusCreated, status, "%v", created)
		subs[path] = created["id"].(string)
	}
	_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload) VALUES ('slow.one', '{}')`)
	require.NoError(t, err)

	relaytest.Eventually(t, 20*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`) == 3
	}, "the deliveries did not finish")

	type attempt struct {
		Attempt  int        `db:"attempt"`
		Started  time.Time  `db:"started_at"`
		Duration int        `db:"duration_ms"`
		Status   *int       `db:"status_code"`
		Error    *string    `db:"error"`
		State    string     `db:"state"`
		Ended    *time.Time `db:"ended"`
	}
	attemptsOf := func(path string) []attempt {
		var as []attempt
		require.NoError(t, db.Select(&as, `SELECT a.attempt, a.started_at, a.duration_ms, a.status_code, a.error, d.status AS state,
				a.started_at + a.duration_ms * interval '1 millisecond' AS ended
			FROM relay.attempts a JOIN relay.deliveries d ON d.id = a.delivery_id
			WHERE d.subscription_id = $1 ORDER BY a.attempt`, subs[path]))
		return as
	}

	// timeout 3: the 2s answer is a success, at the first attempt.
	t3 := attemptsOf("/t3")
	require.Len(t, t3, 1)
	require.Equal(t, "succeeded", t3[0].State)
	require.Equal(t, 200, *t3[0].Status)
	require.GreaterOrEqual(t, t3[0].Duration, 2000)

	// timeout 1: three attempts (the schedule has two retries), each cut after 1s and
	// recorded as a timeout, each retry a second after the previous failure; then failed.
	t1 := attemptsOf("/t1")
	require.Len(t, t1, 3)
	require.Equal(t, "failed", t1[0].State)
	for i, a := range t1 {
		require.Equal(t, i+1, a.Attempt)
		require.Nil(t, a.Status)
		require.NotNil(t, a.Error)
		require.Equal(t, "timeout: no answer within 1s", *a.Error)
		require.InDelta(t, 1000, a.Duration, 300, "attempt %d took %dms", a.Attempt, a.Duration)
		if i > 0 {
			gap := a.Started.Sub(*t1[i-1].Ended)
			require.GreaterOrEqual(t, gap, 900*time.Millisecond, "retry %d came %s after the failure", i, gap)
			require.Less(t, gap, 2500*time.Millisecond, "retry %d came %s after the failure", i, gap)
		}
	}

	// No timeout of its own: the relay's 1.5s.
	def := attemptsOf("/default")
	require.Len(t, def, 3)
	require.True(t, strings.HasPrefix(*def[0].Error, "timeout: no answer within 1.5s"), *def[0].Error)
}
