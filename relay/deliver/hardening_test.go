package deliver_test

import (
	"bytes"
	"context"

	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgerr"
	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// problems records what the deliverer reports; the real one is relay/keycheck.
type problems struct {
	mu  sync.Mutex
	got map[string]error
}

func (p *problems) Report(id string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.got == nil {
		p.got = map[string]error{}
	}
	p.got[id] = err
}

func (p *problems) Blocked() []string { return nil }

func (p *problems) reported(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[id]
}

func testBox(t *testing.T, b byte) *secrets.Box {
	t.Helper()
	box, err := secrets.New(bytes.Repeat([]byte{b}, secrets.KeySize), nil)
	require.NoError(t, err)
	return box
}

// A subscription whose secret no configured key opens is a fault of this relay's
// configuration: nothing is sent, no attempt is charged to the receiver, the delivery waits
// with its attempt number given back, and goes out once a relay with the right key runs.
func TestUnopenableSecretWaitsUnsent(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	sealer, other := testBox(t, 1), testBox(t, 2)
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	sealed, err := sealer.Seal(secret)
	require.NoError(t, err)
	lost := ids.NewSubscriptionID()
	_, err = db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ($1, $2, '{*}', $3)`,
		lost, b.receiver.URL+"/lost", sealed)
	require.NoError(t, err)
	b.subscribe(t, b.receiver.URL+"/healthy", nil, false)

	var p problems
	stop := b.start(t, options{openSecret: other.Open, keyProblems: &p})
	b.publish(t, outbox.Event{})
	reqs := b.receiver.WaitFor(t, 1, 10*time.Second)
	require.Equal(t, "/healthy", reqs[0].Path)
	relaytest.Eventually(t, 10*time.Second, func() bool { return p.reported(lost) != nil }, "the unopenable secret was never reported")
	require.ErrorIs(t, p.reported(lost), secrets.ErrUnknownKey)
	time.Sleep(300 * time.Millisecond) // thirty polls: a claim would have sent or failed it by now

	var d deliveryRow
	require.NoError(t, db.Get(&d, `SELECT id, status, attempt_count, next_attempt_at, lease_owner FROM relay.deliveries WHERE subscription_id = $1`, lost))
	require.Equal(t, "pending", d.Status)
	require.Zero(t, d.AttemptCount, "the attempt number is given back")
	require.Nil(t, d.LeaseOwner)
	var attempts int
	require.NoError(t, db.Get(&attempts, `SELECT count(*) FROM relay.attempts WHERE delivery_id = $1`, d.ID))
	require.Zero(t, attempts, "nothing is charged to the receiver")
	require.Len(t, b.receiver.Requests(), 1, "nothing is sent unsigned or wrongly signed")
	stop()

	// With the key that sealed it the waiting delivery goes out by itself, signed.
	b.start(t, options{openSecret: sealer.Open})
	reqs = b.receiver.WaitFor(t, 2, 10*time.Second)
	require.Equal(t, "/lost", reqs[1].Path)
	v, err := signature.NewVerifier(secret)
	require.NoError(t, err)
	require.NoError(t, v.Verify(reqs[1].Header, reqs[1].Body))
	relaytest.Eventually(t, 10*time.Second, func() bool {
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE subscription_id = $1 AND status = 'succeeded' AND attempt_count = 1`, lost))
		return n == 1
	}, "the waiting delivery was not recorded as its first attempt")
}

// A request that fails for a reason of this process (here: no file descriptor left) is not
// an attempt against the receiver: the delivery waits, Trouble says why, and once the fault
// is gone the delivery goes out as attempt 1.
func TestLocalFaultIsNotAnAttempt(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	b := bundle{db: db, receiver: relaytest.NewReceiver(t)}
	var exhausted atomic.Bool
	exhausted.Store(true)
	dialer := &net.Dialer{Timeout: time.Second}
	client, err := egress.New(egress.Config{Workers: 8, Policy: targets.Policy{AllowPrivate: true}})
	require.NoError(t, err)
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if exhausted.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
		return dialer.DialContext(ctx, network, addr)
	}
	var del *deliver.Deliverer
	b.subscribe(t, b.receiver.URL+"/hook", nil, false)
	b.start(t, options{client: client, deliverer: &del})
	eventID := b.publish(t, outbox.Event{})

	relaytest.Eventually(t, 10*time.Second, func() bool { return del.Trouble() != "" }, "the local fault was never reported")
	require.Contains(t, del.Trouble(), "too many open files")
	// Given back: no lease, its attempt number returned, due again a little later.
	relaytest.Eventually(t, 5*time.Second, func() bool {
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'pending'
			AND lease_owner IS NULL AND attempt_count = 0 AND next_attempt_at > now() + interval '1 second'`, eventID))
		return n == 1
	}, "the delivery was not given back to wait")
	_, attempts := b.delivery(t, eventID)
	require.Empty(t, attempts, "no attempt is recorded against the receiver")

	exhausted.Store(false)
	_, attempts = b.waitStatus(t, eventID, "succeeded")
	require.Len(t, attempts, 1)
	require.Equal(t, 1, attempts[0].Attempt, "the fault used up no attempt")
	require.Len(t, b.receiver.Requests(), 1)
}

// The outbox refuses a created_at that is no time; a row written before that rule fails
// its own deliveries, with the reason, and nothing else.
func TestNonFiniteCreatedAtFailsOnlyItsOwnDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.subscribe(t, b.receiver.URL+"/hook", nil, false)

	_, err := b.db.Exec(`INSERT INTO relay.outbox (event_type, payload, created_at) VALUES ('signup.created', '{}', 'infinity')`)
	require.Error(t, err)
	require.Equal(t, "23514", pgerr.Code(err), "check_violation: %v", err)

	// As if written before the check existed: one bad row beside a good one, one claim.
	bad, good := outbox.NewEventID(), outbox.NewEventID()
	_, err = b.db.Exec(`
		ALTER TABLE relay.outbox DROP CONSTRAINT outbox_created_at_check;
		INSERT INTO relay.outbox (event_id, event_type, payload, created_at)
		VALUES ('` + bad + `', 'signup.created', '{}', '-infinity'), ('` + good + `', 'signup.created', '{}', now());
		ALTER TABLE relay.outbox ADD CONSTRAINT outbox_created_at_check CHECK (isfinite(created_at) OR dispatched_at IS NOT NULL) NOT VALID;`)
	require.NoError(t, err)

	_, attempts := b.waitStatus(t, bad, "failed")
	require.Len(t, attempts, 1)
	require.Nil(t, attempts[0].StatusCode, "no request was made")
	require.Contains(t, *attempts[0].Error, "created_at is not a finite time")
	b.waitStatus(t, good, "succeeded")
	reqs := b.receiver.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, good, reqs[0].Header.Get("webhook-id"))
}

// Results that cannot be written (here: the record function is gone) are retried, not
// given up, and after a few seconds Trouble says so; once the database takes them again
// the delivery is recorded and Trouble clears.
func TestRecorderStallIsTrouble(t *testing.T) {
	t.Parallel()
	var del *deliver.Deliverer
	b := setup(t, options{deliverer: &del})
	b.subscribe(t, b.receiver.URL+"/hook", nil, false)
	_, err := b.db.Exec(`ALTER FUNCTION relay.record_attempts RENAME TO record_attempts_away`)
	require.NoError(t, err)
	eventID := b.publish(t, outbox.Event{})
	b.receiver.WaitFor(t, 1, 10*time.Second)
	require.Empty(t, del.Trouble(), "a moment's trouble is not yet a reason to stop traffic")
	relaytest.Eventually(t, 15*time.Second, func() bool { return del.Trouble() != "" }, "the stalled recorder was never reported")
	// Reported by whichever rule comes first: failing for 5s, or failing more than succeeding.
	require.Contains(t, del.Trouble(), "recording attempt results")
	require.Contains(t, del.Trouble(), "record_attempts")

	_, err = b.db.Exec(`ALTER FUNCTION relay.record_attempts_away RENAME TO record_attempts`)
	require.NoError(t, err)
	b.waitStatus(t, eventID, "succeeded")
	relaytest.Eventually(t, 5*time.Second, func() bool { return del.Trouble() == "" }, "trouble did not clear: %s", del.Trouble())
}
