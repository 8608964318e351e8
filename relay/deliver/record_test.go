package deliver

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/dispatch"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// claimedEvents publishes n events to one subscription, fans them out, and answers a
// deliverer (not running) holding their claims, as its claim loop would.
func claimedEvents(t *testing.T, n int) (*sqlx.DB, *Deliverer, []*job) {
	t.Helper()
	db, _ := relaytest.NewDB(t)
	ctx := context.Background()
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ($1, 'https://example.com/hook', '{*}', $2)`,
		ids.NewSubscriptionID(), secret)
	require.NoError(t, err)
	for range n {
		require.NoError(t, outbox.Publish(ctx, db, outbox.Event{Type: "signup.created", Payload: json.RawMessage(`{}`)}))
	}
	disp, err := dispatch.New(dispatch.Config{DB: db, Logger: zerolog.Nop()})
	require.NoError(t, err)
	_, err = disp.DispatchOnce(ctx)
	require.NoError(t, err)

	d, err := New(Config{DB: db, DeliveryIDs: relaytest.DeliveryIDs(t, db), Owner: "test", UserAgent: "outbox-relay/test", Logger: zerolog.Nop()})
	require.NoError(t, err)
	jobs, err := d.claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, jobs, n)
	require.Empty(t, d.lanes.add(jobs), "as queue would: their leases are this replica's")
	return db, d, jobs
}

// A batch the database refuses for one result's bytes is written row by row: the other
// results are recorded as they are, and the refused one with its texts replaced, never
// retried as it was. (send makes every text storable first; this is the net below it.)

func TestRefusedBatchIsWrittenRowByRow(t *testing.T) {
	db, d, jobs := claimedEvents(t, 2)

	now := time.Now()
	bad := result{job: jobs[0], startedAt: now, statusCode: 500, class: "5xx",
		err: "HTTP 500 \x00 and \xff\xfe", response: "body \x00 \xff"}
	good := result{job: jobs[1], startedAt: now, statusCode: 200, class: "2xx", response: "ok"}
	done := make(chan struct{})
	go func() { defer close(done); d.writeWithRetry([]result{bad, good}) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("writing a refused batch did not end: it is being retried as it is")
	}

	type row struct {
		Status   string  `db:"status"`
		Error    *string `db:"error"`
		Response *string `db:"response_body"`
	}
	read := func(id int64) row {
		var r row
		require.NoError(t, db.Get(&r, `SELECT d.status, a.error, a.response_body FROM relay.deliveries d
			JOIN relay.attempts a ON a.delivery_id = d.id WHERE d.id = $1`, id))
		return r
	}
	g := read(jobs[1].deliveryID)
	require.Equal(t, "succeeded", g.Status)
	require.Nil(t, g.Error)
	require.Equal(t, "ok", *g.Response, "recorded as it was")

	b := read(jobs[0].deliveryID)
	require.Equal(t, "failed", b.Status, "no retries configured: the attempt counts")
	require.NotNil(t, b.Error)
	require.Contains(t, *b.Error, "could not be stored (SQLSTATE 22")
	require.Contains(t, *b.Error, "status 500")
	require.Equal(t, "", *b.Response)
	require.False(t, d.records.Failing(), "the recorder is not stalled")
}

// A record claims in the same statement only when a claim is wanted: otherwise the claim's
// lock would be held until the record's commit reached the disk, and the claims that fan
// out new events would wait for it. Without a backlog, a subscription at its cap or an
// ordered line, a success is written alone: a broken claim is not even tried.
func TestRecordClaimsOnlyWhenAClaimIsWanted(t *testing.T) {
	db, d, jobs := claimedEvents(t, 1)
	j := jobs[0]
	require.False(t, d.claimWanted(j), "one lease of 16, no backlog, unordered")
	require.True(t, d.claimWanted(&job{subscriptionID: j.subscriptionID, ordered: true}), "the next of an ordered line is due")
	d.backlog.Store(true)
	require.True(t, d.claimWanted(j), "the latest claim came back full")
	d.backlog.Store(false)
	more := jobsFor(j.subscriptionID, d.cfg.MaxInFlightPerSubscription-1, time.Now().Add(time.Hour))
	require.Empty(t, d.lanes.add(more))
	require.True(t, d.claimWanted(j), "the subscription holds its cap of leases")
	d.lanes.ended(more)
	require.False(t, d.claimWanted(j))

	_, err := db.Exec(`ALTER FUNCTION relay.lease_due RENAME TO lease_due_broken`)
	require.NoError(t, err)
	ok := result{job: j, startedAt: time.Now(), statusCode: 200, class: "2xx", response: "ok"}
	d.decide(&ok)
	require.NoError(t, d.write([]result{ok}))
	var status string
	require.NoError(t, db.Get(&status, `SELECT status FROM relay.deliveries WHERE id = $1`, j.deliveryID))
	require.Equal(t, "succeeded", status)
	require.False(t, d.claims.Failing(), "no claim was made with the record")
}

// Results are recorded while claims fail: a success is normally written together with the
// next claim, and when lease_due is what fails, the record must not fail with it, or the
// delivery's lease runs out and the receiver gets the webhook twice.
func TestResultsAreRecordedWhileClaimsFail(t *testing.T) {
	db, d, jobs := claimedEvents(t, 1)
	require.Positive(t, d.claimRoom(1), "the batch would be recorded with the next claim")
	d.backlog.Store(true) // a backlog: the room the record frees is claimed with it

	_, err := db.Exec(`ALTER FUNCTION relay.lease_due RENAME TO lease_due_broken`)
	require.NoError(t, err)
	ok := result{job: jobs[0], startedAt: time.Now(), statusCode: 200, class: "2xx", response: "ok"}
	d.decide(&ok)
	require.NoError(t, d.write([]result{ok}))
	var status string
	require.NoError(t, db.Get(&status, `SELECT status FROM relay.deliveries WHERE id = $1`, jobs[0].deliveryID))
	require.Equal(t, "succeeded", status)
	require.True(t, d.claims.Failing(), "the failed claim is reported as the claim's trouble")
	require.False(t, d.records.Failing())
}
