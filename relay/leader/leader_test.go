package leader_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/leader"
)

// Short timings keep the tests quick; the rules are the same at 1s/5s.
const (
	interval = 100 * time.Millisecond
	ttl      = 600 * time.Millisecond
)

type candidate struct {
	name   string
	db     *sqlx.DB
	e      *leader.Elector
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs an elector named name on its own connection pool (so that closing it stands
// for the process dying).
func start(t *testing.T, dsn, name string) *candidate {
	t.Helper()
	db, err := sqlx.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	e, err := leader.New(leader.Config{DB: db, Owner: name, Interval: interval, TTL: ttl, Logger: zerolog.Nop()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{name: name, db: db, e: e, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(c.done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

// leaders answers the names of the candidates that think they lead.
func leaders(cs ...*candidate) []string {
	var out []string
	for _, c := range cs {
		if c.e.Leading() {
			out = append(out, c.name)
		}
	}
	return out
}

func holder(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	var owner string
	require.NoError(t, db.Get(&owner, `SELECT owner FROM relay.leader WHERE role = 'relay'`))
	return owner
}

func TestOneOfManyLeads(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.NewDB(t)
	cs := []*candidate{start(t, dsn, "a"), start(t, dsn, "b"), start(t, dsn, "c")}
	relaytest.Eventually(t, 5*time.Second, func() bool { return len(leaders(cs...)) == 1 }, "no single leader")
	// And it stays that way over many heartbeats.
	for range 20 {
		time.Sleep(interval / 2)
		l := leaders(cs...)
		require.Len(t, l, 1, "leaders: %v", l)
		require.Equal(t, holder(t, db), l[0], "the row names the leader")
	}
	for _, c := range cs {
		if !c.e.Leading() {
			require.Equal(t, leaders(cs...)[0], c.e.Holder(), "standbys know who leads")
		}
	}
}

func TestResignHandsOverAtTheNextLook(t *testing.T) {
	t.Parallel()
	_, dsn := relaytest.NewDB(t)
	a := start(t, dsn, "a")
	relaytest.Eventually(t, 5*time.Second, a.e.Leading, "a never led")
	b := start(t, dsn, "b")
	leading, changed := b.e.Watch()
	require.False(t, leading)

	a.cancel()
	<-a.done
	require.False(t, a.e.Leading(), "a stopped leading when it stopped")
	stopped := time.Now()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("b was never told of a change")
	}
	require.True(t, b.e.Leading())
	require.Less(t, time.Since(stopped), ttl, "b took over at its next look, not when a's lease expired")
}

func TestDeadLeaderIsReplacedAfterItsLease(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.NewDB(t)
	a := start(t, dsn, "a")
	relaytest.Eventually(t, 5*time.Second, a.e.Leading, "a never led")
	b := start(t, dsn, "b")
	time.Sleep(3 * interval)
	require.Equal(t, []string{"a"}, leaders(a, b))

	// a's process "dies": its connections go, so it can neither renew nor resign.
	var term0 int64
	require.NoError(t, db.Get(&term0, `SELECT term FROM relay.leader`))
	require.NoError(t, a.db.Close())
	died := time.Now()

	// a gives up before its lease could expire in the database, so the two never overlap.
	for !b.e.Leading() {
		if a.e.Leading() {
			require.Less(t, time.Since(died), ttl, "a still led after its lease")
		}
		require.Less(t, time.Since(died), 5*time.Second, "b never took over")
		time.Sleep(interval / 5)
	}
	require.False(t, a.e.Leading(), "a and b both led")
	took := time.Since(died)
	t.Logf("took over %s after the leader died (TTL %s, interval %s)", took, ttl, interval)
	require.Less(t, took, ttl+3*interval)
	require.Equal(t, "b", holder(t, db))
	var term1 int64
	require.NoError(t, db.Get(&term1, `SELECT term FROM relay.leader`))
	require.Equal(t, term0+1, term1, "a hand-over is a new term")
	require.Contains(t, a.e.Trouble(), "checking the active-relay lease", "a reports that it cannot follow the election")
}

func TestLeaderThatCannotRenewStandsDown(t *testing.T) {
	t.Parallel()
	db, dsn := relaytest.NewDB(t)
	a := start(t, dsn, "a")
	relaytest.Eventually(t, 5*time.Second, a.e.Leading, "a never led")
	_, changed := a.e.Watch()

	// Another process holds the row's lock, so a's renewals hang (as with a stuck database).
	tx, err := db.Beginx()
	require.NoError(t, err)
	defer tx.Rollback() //nolint:errcheck
	_, err = tx.Exec(`SELECT 1 FROM relay.leader FOR UPDATE`)
	require.NoError(t, err)
	blocked := time.Now()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("a kept leading without renewing")
	}
	require.False(t, a.e.Leading())
	require.Less(t, time.Since(blocked), ttl, "a stood down before its lease ended")

	// Once the database answers again, a takes the role back (nobody else wanted it).
	require.NoError(t, tx.Rollback())
	relaytest.Eventually(t, 5*time.Second, a.e.Leading, "a never led again")
}

func TestNewRefusesATTLThatCannotCoverTwoHeartbeats(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	_, err := leader.New(leader.Config{DB: db, Owner: "a", Interval: time.Second, TTL: 2 * time.Second})
	require.ErrorContains(t, err, "must exceed twice the interval")
}
