package deliver_test

import (
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// setLimits gives a subscription a rate limit and a timeout (nil: none).
func setLimits(t *testing.T, db *sqlx.DB, sub string, rate *float64, timeout *int) {
	t.Helper()
	_, err := db.Exec(`UPDATE relay.subscriptions SET rate_limit = $2, timeout_seconds = $3 WHERE id = $1`, sub, rate, timeout)
	require.NoError(t, err)
}

// giveBack ends every live lease, as records or releases do, so that only the bucket
// decides what the next claim may take.
func giveBack(t *testing.T, db *sqlx.DB) {
	t.Helper()
	_, err := db.Exec(`UPDATE relay.deliveries SET lease_owner = NULL, lease_until = NULL, status = 'succeeded'
		WHERE lease_owner IS NOT NULL`)
	require.NoError(t, err)
}

// The token bucket: a full bucket holds one second's worth, each lease spends a token, a
// subscription without a whole token is passed over (others are served in its place), the
// bucket refills at the rate, and whoever claims next (another relay after a hand-over)
// continues the same bucket.
func TestRateLimitBucket(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	subs := subscriptionsOf(t, db, "", 2)
	limited, free := subs[0], subs[1]
	rate := 4.0
	setLimits(t, db, limited, &rate, nil)
	pending(t, db, "", subs, 20)

	// Full bucket: 4 tokens, so 4 leases; the unlimited one takes what its cap allows.
	got := claimTurn(t, db, "relay-a", 100)
	require.Equal(t, 4, count(t, got, limited), "a full bucket is one second's worth: %v", got)
	require.Equal(t, 16, count(t, got, free), "the unlimited subscription is served as usual")
	giveBack(t, db)

	// Empty bucket, at once and from another relay (a hand-over): nothing for the limited
	// one, and the claim is not spent on it.
	got = claimTurn(t, db, "relay-b", 100)
	require.Zero(t, count(t, got, limited), "no burst after a hand-over: %v", got)
	require.Equal(t, 4, count(t, got, free))
	giveBack(t, db)

	// Refilled at 4/s: 550ms after it was emptied, 2 whole tokens (2.2, and what the
	// statements between take).
	bucketAt := func(tokens float64, ago time.Duration) {
		t.Helper()
		_, err := db.Exec(`UPDATE relay.rate_buckets SET tokens = $1, at = now() - $2 * interval '1 millisecond'`, tokens, ago.Milliseconds())
		require.NoError(t, err)
	}
	bucketAt(0, 550*time.Millisecond)
	got = claimTurn(t, db, "relay-a", 100)
	require.Equal(t, 2, count(t, got, limited), "%v", got)
	giveBack(t, db)
	var tokens float64
	require.NoError(t, db.Get(&tokens, `SELECT tokens FROM relay.rate_buckets WHERE subscription_id = $1`, limited))
	require.InDelta(t, 0.2, tokens, 0.4, "the fraction left over is kept")
	// 0.9 of a token: nothing.
	bucketAt(0.5, 100*time.Millisecond)
	require.Zero(t, count(t, claimTurn(t, db, "relay-b", 100), limited))

	// A long idle time fills the bucket only up to one second's worth.
	_, err := db.Exec(`UPDATE relay.rate_buckets SET at = at - interval '1 hour'`)
	require.NoError(t, err)
	got = claimTurn(t, db, "relay-a", 100)
	require.Equal(t, 4, count(t, got, limited), "%v", got)
}

// A rate below one per second still holds one token: 0.5/s sends one now, then one every
// two seconds.
func TestRateLimitBelowOnePerSecond(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	sub := subscriptionsOf(t, db, "", 1)[0]
	rate := 0.5
	setLimits(t, db, sub, &rate, nil)
	pending(t, db, "", []string{sub}, 5)

	require.Len(t, claimTurn(t, db, "r", 10), 1)
	giveBack(t, db)
	require.Empty(t, claimTurn(t, db, "r", 10))
	_, err := db.Exec(`UPDATE relay.rate_buckets SET tokens = 0, at = now() - interval '1700 milliseconds'`)
	require.NoError(t, err)
	require.Empty(t, claimTurn(t, db, "r", 10), "0.85 of a token")
	_, err = db.Exec(`UPDATE relay.rate_buckets SET tokens = 0, at = now() - interval '2000 milliseconds'`)
	require.NoError(t, err)
	require.Len(t, claimTurn(t, db, "r", 10), 1)
}

// The notification's claim never leases a rate-limited subscription's new deliveries as
// it fans them out: they go through lease_due, which spends the bucket.
func TestRateLimitedFanOutSpendsTheBucket(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	subs := subscriptionsOf(t, db, "", 2)
	rate := 2.0
	setLimits(t, db, subs[0], &rate, nil)
	publish(t, db, 10, "")
	_, _, leased := fanOutLease(t, db, "r", false, 100, nil, nil)
	require.Equal(t, 2, count(t, leased, subs[0]), "one second's worth: %v", leased)
	require.Equal(t, 4, count(t, leased, subs[1]), "the cap of the unlimited one")
}

// A subscription's own timeout lengthens its leases by that much, whoever leases: the
// lease outlasts the request however much longer than the default it may take.
func TestTimeoutLengthensTheLease(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	subs := subscriptionsOf(t, db, "", 2)
	timeout := 30
	setLimits(t, db, subs[0], nil, &timeout)

	leaseOf := func(sub string) time.Duration {
		t.Helper()
		var ms float64
		require.NoError(t, db.Get(&ms, `SELECT extract(epoch FROM max(lease_until) - max(updated_at)) * 1000
			FROM relay.deliveries WHERE subscription_id = $1 AND lease_owner IS NOT NULL`, sub))
		return time.Duration(ms) * time.Millisecond
	}
	pending(t, db, "", subs, 1)
	got := claimTurn(t, db, "r", 10) // p_lease_ms 60s
	require.Len(t, got, 2)
	require.Equal(t, 90*time.Second, leaseOf(subs[0]))
	require.Equal(t, 60*time.Second, leaseOf(subs[1]))
	giveBack(t, db)

	// So does the notification's claim, which leases new deliveries as it inserts them.
	publish(t, db, 1, "")
	_, _, leased := fanOutLease(t, db, "r", false, 10, nil, nil)
	require.Len(t, leased, 2)
	require.Equal(t, 90*time.Second, leaseOf(subs[0]))
	require.Equal(t, 60*time.Second, leaseOf(subs[1]))
}
