package retention_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/retention"
)

func TestPassDeletesOnlyWhatIsPastRetention(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	_, err := db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ('sub_a', 'https://example.com', '{*}', 'whsec_x')`)
	require.NoError(t, err)
	// 30 old events: 25 delivered (old), 3 with a pending delivery, 2 never dispatched.
	// 10 new events, delivered recently.
	_, err = db.Exec(`
		INSERT INTO relay.outbox (event_type, payload, created_at, dispatched_at)
		SELECT 'old.event', '{}', now() - interval '10 days', CASE WHEN g <= 28 THEN now() - interval '10 days' END
		FROM generate_series(1, 30) g;
		INSERT INTO relay.outbox (event_type, payload, dispatched_at)
		SELECT 'new.event', '{}', now() FROM generate_series(1, 10);
		INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, status, attempt_count, updated_at)
		SELECT event_id, id, 'sub_a',
		       CASE WHEN event_type = 'old.event' AND id > 25 THEN 'pending' ELSE 'succeeded' END, 1,
		       CASE WHEN event_type = 'old.event' THEN now() - interval '9 days' ELSE now() END
		FROM relay.outbox WHERE dispatched_at IS NOT NULL;
		INSERT INTO relay.attempts (delivery_id, attempt, started_at, duration_ms, status_code)
		SELECT id, 1, now(), 5, 200 FROM relay.deliveries;`)
	require.NoError(t, err)

	c, err := retention.New(retention.Config{DB: db, Retention: 7 * 24 * time.Hour, BatchSize: 7, Logger: zerolog.Nop()})
	require.NoError(t, err)
	deliveries, events, err := c.Pass(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(25), deliveries)
	require.Equal(t, int64(25), events)

	count := func(q string) int {
		var n int
		require.NoError(t, db.Get(&n, q))
		return n
	}
	require.Equal(t, 15, count(`SELECT count(*) FROM relay.outbox`), "3 with pending deliveries, 2 undispatched, 10 new")
	require.Equal(t, 13, count(`SELECT count(*) FROM relay.deliveries`))
	require.Equal(t, 13, count(`SELECT count(*) FROM relay.attempts`), "attempts go with their deliveries")
	require.Equal(t, 2, count(`SELECT count(*) FROM relay.outbox WHERE dispatched_at IS NULL`))

	deliveries, events, err = c.Pass(context.Background())
	require.NoError(t, err)
	require.Zero(t, deliveries+events, "a second pass finds nothing")
}

func TestPassCancelsDeliveriesOfDeletedSubscriptions(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	_, err := db.Exec(`
		INSERT INTO relay.subscriptions (id, target_url, event_types, secret, deleted_at) VALUES ('sub_gone', 'https://example.com/a', '{*}', 'whsec_x', now());
		INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ('sub_live', 'https://example.com/b', '{*}', 'whsec_x');
		INSERT INTO relay.outbox (event_type, payload, dispatched_at) VALUES ('a.b', '{}', now());
		INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, next_attempt_at)
		SELECT event_id, id, s, now() FROM relay.outbox, unnest(ARRAY['sub_gone', 'sub_live']) s;`)
	require.NoError(t, err)
	c, err := retention.New(retention.Config{DB: db, Retention: time.Hour, Logger: zerolog.Nop()})
	require.NoError(t, err)
	_, _, err = c.Pass(context.Background())
	require.NoError(t, err)
	var statuses []string
	require.NoError(t, db.Select(&statuses, `SELECT subscription_id || ':' || status FROM relay.deliveries ORDER BY subscription_id`))
	require.Equal(t, []string{"sub_gone:cancelled", "sub_live:pending"}, statuses)
}
