package deliver_test

import (
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// claimTurn calls the claim function as the deliverer does, for owner, and answers the
// subscriptions of the deliveries it leased, in the order returned.
func claimTurn(t *testing.T, db *sqlx.DB, owner string, limit int) []string {
	t.Helper()
	var subs []string
	require.NoError(t, db.Select(&subs, `SELECT subscription_id FROM relay.lease_due(
		p_limit => $1, p_owner => $2, p_lease_ms => 60000, p_max_payload => 262144,
		p_max_in_flight => 16, p_max_leased => 128, p_ahead => '{}', p_skip => '{}')`, limit, owner))
	return subs
}

// pending makes n pending deliveries of one event for each subscription in subs.
func pending(t *testing.T, db *sqlx.DB, tenant string, subs []string, n int) {
	t.Helper()
	for range n {
		_, err := db.Exec(`WITH ev AS (
				INSERT INTO relay.outbox (event_type, tenant_id, payload, dispatched_at)
				VALUES ('signup.created', nullif($1, ''), '{}', now()) RETURNING id, event_id)
			INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, tenant_key, next_attempt_at)
			SELECT ev.event_id, ev.id, s, $1, now() FROM ev, unnest($2::text[]) s`, tenant, subs)
		require.NoError(t, err)
	}
}

func subscriptionsOf(t *testing.T, db *sqlx.DB, tenant string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("sub_%s%04d", tenant, i)
		_, err := db.Exec(`INSERT INTO relay.subscriptions (id, tenant_id, target_url, event_types, secret)
			VALUES ($1, nullif($2, ''), 'https://example.com/' || $1, '{*}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')`, id, tenant)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	return ids
}

// Claims take turns between tenants, then between a tenant's subscriptions: another
// tenant's new delivery is in the very next claim however deep one tenant's backlog, and
// successive claims go round every subscription of a tenant before serving one again.
func TestClaimsTakeTurns(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	a := subscriptionsOf(t, db, "a", 50)
	b := subscriptionsOf(t, db, "b", 1)
	none := subscriptionsOf(t, db, "", 1) // no tenant: a turn of its own
	pending(t, db, "a", a, 4)             // 200 deliveries for tenant a
	pending(t, db, "b", b, 1)
	pending(t, db, "", none, 1)

	first := claimTurn(t, db, "r1", 12)
	require.Len(t, first, 12)
	require.Contains(t, first, b[0], "tenant b's delivery is in the first claim: %v", first)
	require.Contains(t, first, none[0], "so is the delivery of the subscription without a tenant")

	// Tenant a's subscriptions take turns: claim after claim, the ones served go on from
	// where the last claim stopped, and every one of the 50 is served before any is served
	// again. (A subscription served may give several deliveries when the claim has room
	// that the other tenants do not use.)
	served := map[string]bool{}
	round := first
	for claims := 0; len(served) < len(a); claims++ {
		require.Less(t, claims, 50, "never went round: %d of %d served", len(served), len(a))
		seen := map[string]bool{}
		for _, s := range round {
			if s == b[0] || s == none[0] || seen[s] || len(served) == len(a) {
				continue
			}
			seen[s] = true
			require.False(t, served[s], "%s served again before every subscription of its tenant had a turn", s)
			served[s] = true
		}
		round = claimTurn(t, db, "r1", 12)
	}

	// Another replica: the subscriptions r1 holds are left to it, the others are served.
	var held int
	require.NoError(t, db.Get(&held, `SELECT count(DISTINCT subscription_id) FROM relay.deliveries WHERE lease_owner = 'r1'`))
	require.Equal(t, 52, held)
	require.Empty(t, claimTurn(t, db, "r2", 50), "every subscription with work is held by r1")
	late := subscriptionsOf(t, db, "c", 1)
	pending(t, db, "c", late, 1)
	require.Equal(t, late, claimTurn(t, db, "r2", 50), "a subscription nobody holds is served by the other replica")
}
