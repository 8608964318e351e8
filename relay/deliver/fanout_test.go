package deliver_test

import (
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// fanOutLease calls the claim made on a notification as the deliverer does (cap 4, or 8
// when ahead), and answers the subscriptions of what it leased, with its counts row.
func fanOutLease(t *testing.T, db *sqlx.DB, owner string, sweep bool, limit int, ahead, skip []string) (events, deliveries int64, leased []string) {
	t.Helper()
	rows, err := db.Query(`SELECT subscription_id, fanned_events, fanned_deliveries FROM relay.fan_out_and_lease_due(
		p_fan_out => 100, p_sweep => $1, p_limit => $2, p_owner => $3, p_lease_ms => 60000, p_max_payload => 262144,
		p_max_in_flight => 4, p_max_leased => 8, p_ahead => $4, p_skip => $5)`, sweep, limit, owner, pq.StringArray(ahead), pq.StringArray(skip))
	require.NoError(t, err)
	defer rows.Close()
	first := true
	for rows.Next() {
		var sub *string
		var ev, dl *int64
		require.NoError(t, rows.Scan(&sub, &ev, &dl))
		if first {
			require.Nil(t, sub, "the counts row comes first")
			events, deliveries, first = *ev, *dl, false
			continue
		}
		require.Nil(t, ev)
		leased = append(leased, *sub)
	}
	require.NoError(t, rows.Err())
	return events, deliveries, leased
}

func publish(t *testing.T, db *sqlx.DB, n int, orderingKey string) {
	t.Helper()
	_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload, ordering_key)
		SELECT 'signup.created', '{}', nullif($2, '') FROM generate_series(1, $1)`, n, orderingKey)
	require.NoError(t, err)
}

func count(t *testing.T, s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// A notification's claim leases the new deliveries as it inserts them, within each
// subscription's free leases, and leaves the rest pending: the cap stays exact whether a
// delivery was leased at its insert or by lease_due.
func TestFanOutLeasesNewDeliveriesWithinTheCap(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	subs := subscriptionsOf(t, db, "", 3)
	fast, skipped, plain := subs[0], subs[1], subs[2]
	publish(t, db, 6, "")

	events, deliveries, leased := fanOutLease(t, db, "r1", false, 100, []string{fast}, []string{skipped})
	require.Equal(t, int64(6), events)
	require.Equal(t, int64(18), deliveries)
	require.Equal(t, 6, count(t, leased, fast), "ahead: up to 8 leases")
	require.Equal(t, 4, count(t, leased, plain), "up to the cap of 4")
	require.Zero(t, count(t, leased, skipped), "no key opens its secret here")

	var attempts, owned int
	require.NoError(t, db.QueryRow(`SELECT count(*) FILTER (WHERE attempt_count = 1), count(*) FILTER (WHERE lease_owner = 'r1' AND lease_until > now())
		FROM relay.deliveries`).Scan(&attempts, &owned))
	require.Equal(t, 10, attempts, "a lease is attempt 1")
	require.Equal(t, 10, owned)

	// More events: plain has no free lease, fast has two; another replica gets none of them.
	publish(t, db, 3, "")
	_, _, leased = fanOutLease(t, db, "r2", false, 100, []string{fast}, []string{skipped})
	require.Empty(t, leased, "the subscriptions are r1's while it holds leases of them")
	publish(t, db, 3, "")
	_, _, leased = fanOutLease(t, db, "r1", false, 100, []string{fast}, []string{skipped})
	require.Equal(t, 2, count(t, leased, fast), "6 of 8 held")
	require.Zero(t, count(t, leased, plain), "4 of 4 held")
	require.Len(t, leased, 2)

	var maxHeld int
	require.NoError(t, db.Get(&maxHeld, `SELECT max(n) FROM (SELECT count(*) AS n FROM relay.deliveries
		WHERE lease_owner IS NOT NULL AND lease_until > now() AND subscription_id <> $1 GROUP BY subscription_id) x`, fast))
	require.LessOrEqual(t, maxHeld, 4, "never past the cap")
}

// Without a sweep only new deliveries are leased; with one, due deliveries made before
// (a retry, a dispatcher's fan-out) are too. Ordered deliveries go through lease_due, which
// leases only the oldest of each line.
func TestFanOutSweepsWhenAsked(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	subs := subscriptionsOf(t, db, "", 2)
	pending(t, db, "", subs[:1], 2) // made earlier, due now

	_, _, leased := fanOutLease(t, db, "r1", false, 100, nil, nil)
	require.Empty(t, leased, "nothing new, no sweep")
	_, _, leased = fanOutLease(t, db, "r1", true, 100, nil, nil)
	require.Equal(t, []string{subs[0], subs[0]}, leased)

	_, err := db.Exec(`UPDATE relay.subscriptions SET ordered = true WHERE id = $1`, subs[1])
	require.NoError(t, err)
	publish(t, db, 3, "line-1")
	_, deliveries, leased := fanOutLease(t, db, "r1", false, 100, nil, nil)
	require.Equal(t, int64(6), deliveries)
	require.Equal(t, 2, count(t, leased, subs[0]), "unordered: leased as inserted, 2 free of 4")
	require.Equal(t, 1, count(t, leased, subs[1]), "ordered: the head of the line only, by lease_due")
}
