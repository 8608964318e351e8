package console

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkPages times every page with real volumes: 100,000 deliveries of the last day
// (one attempt each, 3% failed with a second attempt), over 40 subscriptions of 4 tenants and
// the operator's own, against a real database. Each sub-benchmark is one page, as the
// operator and as a tenant through the portal; ns/op is one page, rendered and read.
//
//	scripts/with-postgres.sh go test -run '^$' -bench Pages -benchtime 20x ./relay/console
//
// The target: every page under 100 ms (100,000,000 ns/op) on the development machine.
func BenchmarkPages(b *testing.B) {
	op := newSite(b, Operator)
	seed(b, op)
	portal := newSiteOn(b, op.db, Tenant)
	c := op.signIn(b)
	var sub, dlv, event, tenantSub string
	require.NoError(b, op.db.QueryRow(`SELECT d.subscription_id, d.id, d.event_id FROM relay.deliveries d
		WHERE d.status = 'failed' ORDER BY d.id DESC LIMIT 1`).Scan(&sub, new(int64), &event))
	var dlvID int64
	require.NoError(b, op.db.Get(&dlvID, `SELECT max(id) FROM relay.deliveries WHERE status = 'failed'`))
	dlv = op.ids.Format(dlvID)
	require.NoError(b, op.db.Get(&tenantSub, `SELECT id FROM relay.subscriptions WHERE tenant_id = 'tenant-1' LIMIT 1`))

	pages := []struct{ name, path string }{
		{"overview", "/"},
		{"subscriptions", "/subscriptions"},
		{"subscription", "/subscriptions/" + sub},
		{"log", "/deliveries"},
		{"log-failed", "/deliveries?status=failed"},
		{"log-event-type", "/deliveries?event_type=signup.deleted"},
		{"log-subscription", "/deliveries?subscription=" + sub},
		{"log-rows", "/deliveries#rows"},
		{"delivery", "/deliveries/" + dlv},
		{"event", "/events/" + event},
	}
	for _, p := range pages {
		b.Run("operator/"+p.name, func(b *testing.B) {
			header := []string{}
			if p.name == "log-rows" {
				header = []string{"X-Console-Fragment", "rows"}
			}
			for b.Loop() {
				status, _, _ := op.do(b, c, http.MethodGet, p.path, nil, header...)
				require.Equal(b, http.StatusOK, status)
			}
		})
	}
	as := []string{"X-Test-Tenant", "tenant-1"}
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"subscriptions", "/subscriptions"},
		{"subscription", "/subscriptions/" + tenantSub},
		{"log", "/deliveries"},
		{"log-failed", "/deliveries?status=failed"},
		{"log-other-tenants-subscription", "/deliveries?subscription=" + url.QueryEscape(sub)},
	} {
		b.Run("tenant/"+p.name, func(b *testing.B) {
			for b.Loop() {
				status, _, _ := portal.do(b, browser(b), http.MethodGet, p.path, nil, as...)
				require.Equal(b, http.StatusOK, status)
			}
		})
	}
}

// seed writes the benchmark's volumes.
func seed(b *testing.B, s *site) {
	b.Helper()
	_, err := s.db.Exec(`
INSERT INTO relay.subscriptions (id, tenant_id, target_url, event_types, secret)
SELECT 'sub_' || lpad(g::text, 26, '0'), CASE WHEN g % 5 = 0 THEN NULL ELSE 'tenant-' || (g % 5) END,
       'https://hooks.example.com/' || g, '{*}', 'whsec_x'
FROM generate_series(1, 40) g;

INSERT INTO relay.outbox (event_type, tenant_id, payload, created_at, dispatched_at)
SELECT CASE WHEN g % 10 = 0 THEN 'signup.deleted' ELSE 'signup.created' END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'tenant-' || (g % 5) END,
       jsonb_build_object('signup', jsonb_build_object('id', g, 'email', 'user' || g || '@example.com', 'position', g)),
       now() - (100000 - g) * interval '800 milliseconds', now() - (100000 - g) * interval '800 milliseconds'
FROM generate_series(1, 100000) g;

INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, tenant_key, status, attempt_count, created_at, updated_at)
SELECT o.event_id, o.id, 'sub_' || lpad((((o.id - 1) % 8) * 5 + coalesce(right(o.tenant_id, 1)::int, 5))::text, 26, '0'),
       coalesce(o.tenant_id, ''), CASE WHEN o.id % 33 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN o.id % 33 = 0 THEN 2 ELSE 1 END, o.created_at, o.created_at
FROM relay.outbox o;

INSERT INTO relay.attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_body)
SELECT d.id, a, d.created_at + a * interval '1 second', 20 + d.id % 50,
       CASE WHEN d.status = 'failed' THEN 500 ELSE 200 END,
       CASE WHEN d.status = 'failed' THEN 'HTTP 500' END,
       CASE WHEN d.status = 'failed' THEN '{"error":"boom"}' ELSE 'ok' END
FROM relay.deliveries d, generate_series(1, d.attempt_count) a;
`)
	require.NoError(b, err)
	// What autovacuum would have done by then: statistics, and the BRIN summaries.
	_, err = s.db.Exec(`VACUUM ANALYZE relay.subscriptions, relay.outbox, relay.deliveries, relay.attempts`)
	require.NoError(b, err)
}
