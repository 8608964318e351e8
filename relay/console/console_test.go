package console

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/api"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

const testToken = "console-test-token"

// site is a console under test: a real server on loopback, mounted at /console as the relay
// mounts it, over a real database.
type site struct {
	db  *sqlx.DB
	srv *httptest.Server
	ids *ids.Deliveries
}

// newSite serves a console in mode; in Tenant mode the caller's tenant comes from the
// X-Test-Tenant header, standing in for forward auth.
func newSite(t testing.TB, mode Mode) *site {
	t.Helper()
	db, _ := relaytest.NewDB(t)
	return newSiteOn(t, db, mode)
}

// newSiteOn serves a console in mode over db.
func newSiteOn(t testing.TB, db *sqlx.DB, mode Mode) *site {
	t.Helper()
	deliveryIDs := relaytest.DeliveryIDs(t, db)
	a, err := api.New(api.Config{DB: db, DeliveryIDs: deliveryIDs, Targets: targets.Policy{AllowHTTP: true, AllowPrivate: true}})
	require.NoError(t, err)
	c, err := New(Config{DB: db, DeliveryIDs: deliveryIDs, API: a.Handler(), Mode: mode, Base: "/console", Token: testToken, Title: "Acme <Waitlist>"})
	require.NoError(t, err)
	var h http.Handler = http.StripPrefix("/console", c)
	if mode == Tenant {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tenant := r.Header.Get("X-Test-Tenant"); tenant != "" {
				r = r.WithContext(api.WithCaller(r.Context(), api.Caller{TenantID: tenant}))
			}
			inner.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &site{db: db, srv: srv, ids: deliveryIDs}
}

// browser is a client with a cookie jar that does not follow redirects, so tests see them.
func browser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request (a form when form is not nil) and answers the status, headers and body.
func (s *site) do(t testing.TB, c *http.Client, method, path string, form url.Values, header ...string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.srv.URL+"/console"+path, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func (s *site) signIn(t testing.TB) *http.Client {
	t.Helper()
	c := browser(t)
	status, h, _ := s.do(t, c, http.MethodPost, "/sign-in", url.Values{"token": {testToken}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/", h.Get("Location"))
	return c
}

// subscription inserts a subscription of tenant (NULL when "") and answers its ID.
func (s *site) subscription(t *testing.T, tenant, target, description string) string {
	t.Helper()
	id := fmt.Sprintf("sub_%026d", time.Now().UnixNano())
	var tn any
	if tenant != "" {
		tn = tenant
	}
	_, err := s.db.Exec(`INSERT INTO relay.subscriptions (id, tenant_id, target_url, event_types, description, secret)
		VALUES ($1, $2, $3, '{*}', $4, 'whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdA==')`, id, tn, target, description)
	require.NoError(t, err)
	return id
}

// delivery inserts an event for tenant and a delivery of it to sub, failed with one attempt
// that got HTTP 500 and answer; it answers the delivery's public ID.
func (s *site) delivery(t *testing.T, tenant, sub, payload, answer string) string {
	t.Helper()
	var tn any
	if tenant != "" {
		tn = tenant
	}
	var id int64
	require.NoError(t, s.db.QueryRow(`
WITH o AS (INSERT INTO relay.outbox (event_type, tenant_id, payload, dispatched_at)
           VALUES ('signup.created', $1, $2::jsonb, now()) RETURNING id, event_id)
INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, tenant_key, status, attempt_count)
SELECT o.event_id, o.id, $3, coalesce($1, ''), 'failed', 1 FROM o RETURNING id`, tn, payload, sub).Scan(&id))
	_, err := s.db.Exec(`INSERT INTO relay.attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_body)
		VALUES ($1, 1, now(), 42, 500, 'HTTP 500', $2)`, id, answer)
	require.NoError(t, err)
	return s.ids.Format(id)
}

func TestSignInWithTheToken(t *testing.T) {
	s := newSite(t, Operator)
	c := browser(t)

	status, h, _ := s.do(t, c, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusSeeOther, status, "no session: to the sign-in page")
	require.Equal(t, "/console/sign-in", h.Get("Location"))

	status, h, body := s.do(t, c, http.MethodPost, "/sign-in", url.Values{"token": {"wrong"}})
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, body, "That token is not the relay&#39;s API token")
	require.Empty(t, h.Values("Set-Cookie"), "a wrong token gets no cookie")

	status, h, _ = s.do(t, c, http.MethodPost, "/sign-in", url.Values{"token": {testToken}}, "X-Forwarded-Proto", "https")
	require.Equal(t, http.StatusSeeOther, status)
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{cookieName + "=", "Path=/console/", "HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200"} {
		require.Contains(t, cookie, want)
	}
	require.NotContains(t, cookie, testToken, "the cookie is not the token")

	// Secure was set for a browser on https; the test client talks http, so it does not
	// send a Secure cookie back: sign in again over plain http for the rest.
	c = s.signIn(t)
	status, _, body = s.do(t, c, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "<h1>Overview</h1>")
	require.Contains(t, body, "Acme &lt;Waitlist&gt;", "the title, escaped")

	// Sign-out ends the session itself, not only the browser's copy of the cookie.
	u, _ := url.Parse(s.srv.URL + "/console/")
	kept := c.Jar.Cookies(u)
	require.Len(t, kept, 1)
	status, _, _ = s.do(t, c, http.MethodPost, "/sign-out", url.Values{})
	require.Equal(t, http.StatusSeeOther, status)
	replay := browser(t)
	replay.Jar.SetCookies(u, kept)
	status, h, _ = s.do(t, replay, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusSeeOther, status, "the old cookie no longer signs in")
	require.Equal(t, "/console/sign-in", h.Get("Location"))

	// A cookie nobody signed is refused as well.
	forged := browser(t)
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: strings.Repeat("A", 43) + "." + strings.Repeat("B", 43)}})
	status, _, _ = s.do(t, forged, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusSeeOther, status)
}

// Failed sign-ins from one address are answered later and later; another address, and a
// success, start afresh.
func TestFailedSignInsAreSlowed(t *testing.T) {
	s := newSessions(nil, "relay", "/console", "t")
	r := httptest.NewRequest(http.MethodPost, "/sign-in", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	now := time.Now()
	var delays []time.Duration
	for range 8 {
		delays = append(delays, s.failDelay(r, now))
	}
	require.Equal(t, []time.Duration{0, 0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}, delays)
	require.Equal(t, maxFailDelay, s.failDelay(r, now))
	require.Equal(t, maxFailDelay, s.failDelay(r, now))

	other := httptest.NewRequest(http.MethodPost, "/sign-in", nil)
	other.RemoteAddr = "192.0.2.2:1234"
	require.Zero(t, s.failDelay(other, now))
	s.succeeded(r)
	require.Zero(t, s.failDelay(r, now))
	require.Zero(t, s.failDelay(r, now.Add(time.Hour)), "old failures are forgotten")
}

// Every answer carries the CSP and friends; what customers wrote is escaped wherever it
// shows; a state-changing request from another origin is refused.
func TestPagesAreSafeWithHostileData(t *testing.T) {
	s := newSite(t, Operator)
	c := s.signIn(t)
	const xss = `<script>alert(1)</script><img src=x onerror=alert(1)>`
	sub := s.subscription(t, "", "http://127.0.0.1:9/hook?q=<b>", xss)
	dlv := s.delivery(t, "", sub, `{"name": "`+strings.ReplaceAll(xss, `"`, `\"`)+`"}`, xss)

	for _, path := range []string{"/", "/subscriptions", "/subscriptions/" + sub, "/deliveries", "/deliveries/" + dlv} {
		status, h, body := s.do(t, c, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, path)
		require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'self'; script-src 'self'", path)
		require.Contains(t, h.Get("Content-Security-Policy"), "frame-ancestors 'self'", path)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), path)
		require.Equal(t, "no-store", h.Get("Cache-Control"), path)
		require.NotContains(t, body, "<script>alert", path)
		require.NotContains(t, body, "<img src=x", path)
		require.NotContains(t, body, "<b>", path)
	}
	_, _, body := s.do(t, c, http.MethodGet, "/deliveries/"+dlv, nil)
	require.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;", "the answer is shown, as text")

	// A browser's cross-site POST (Sec-Fetch-Site says so) is refused and changes nothing.
	status, _, body := s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/pause", url.Values{},
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, body, "came from another site and was refused")
	var st string
	require.NoError(t, s.db.Get(&st, `SELECT status FROM relay.subscriptions WHERE id = $1`, sub))
	require.Equal(t, "active", st)

	// The same request from the console's own page goes through.
	status, h, _ := s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/pause", url.Values{}, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/subscriptions/"+sub+"?done=paused", h.Get("Location"))
	require.NoError(t, s.db.Get(&st, `SELECT status FROM relay.subscriptions WHERE id = $1`, sub))
	require.Equal(t, "paused", st)
}

// The portal shows a tenant its own subscriptions, deliveries and events only: another
// tenant's are not found, and their IDs, URLs and payloads appear nowhere.
func TestPortalShowsOnlyTheTenantsOwn(t *testing.T) {
	s := newSite(t, Tenant)
	c := browser(t)
	subA := s.subscription(t, "tenant-a", "http://127.0.0.1:9/a-endpoint", "A's hook")
	subB := s.subscription(t, "tenant-b", "http://127.0.0.1:9/b-endpoint", "B's hook")
	dlvA := s.delivery(t, "tenant-a", subA, `{"who": "a-payload"}`, "a-answer")
	dlvB := s.delivery(t, "tenant-b", subB, `{"who": "b-payload"}`, "b-answer")
	var eventB string
	require.NoError(t, s.db.Get(&eventB, `SELECT event_id FROM relay.deliveries WHERE subscription_id = $1`, subB))

	status, _, _ := s.do(t, c, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusUnauthorized, status, "no tenant: nothing")

	as := []string{"X-Test-Tenant", "tenant-a"}
	for _, path := range []string{"/", "/subscriptions", "/deliveries", "/deliveries?status=failed", "/subscriptions/" + subA, "/deliveries/" + dlvA} {
		status, _, body := s.do(t, c, http.MethodGet, path, nil, as...)
		require.Equal(t, http.StatusOK, status, path)
		for _, leak := range []string{subB, dlvB, eventB, "b-endpoint", "b-payload", "b-answer", "B&#39;s hook"} {
			require.NotContains(t, body, leak, path)
		}
	}
	_, _, body := s.do(t, c, http.MethodGet, "/subscriptions", nil, as...)
	require.Contains(t, body, "a-endpoint")
	_, _, body = s.do(t, c, http.MethodGet, "/deliveries/"+dlvA, nil, as...)
	require.Contains(t, body, "a-payload")
	require.Contains(t, body, "a-answer")

	for _, path := range []string{"/subscriptions/" + subB, "/deliveries/" + dlvB, "/events/" + eventB} {
		status, _, body := s.do(t, c, http.MethodGet, path, nil, as...)
		require.Equal(t, http.StatusNotFound, status, path)
		require.NotContains(t, body, "b-endpoint", path)
	}
	// Changes go through the API as the tenant: B's subscription cannot be paused by A.
	status, _, _ = s.do(t, c, http.MethodPost, "/subscriptions/"+subB+"/pause", url.Values{}, as...)
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = s.do(t, c, http.MethodPost, "/deliveries/"+dlvB+"/retry", url.Values{}, as...)
	require.Equal(t, http.StatusNotFound, status)
	var st string
	require.NoError(t, s.db.Get(&st, `SELECT status FROM relay.subscriptions WHERE id = $1`, subB))
	require.Equal(t, "active", st)
	require.NoError(t, s.db.Get(&st, `SELECT status FROM relay.deliveries WHERE subscription_id = $1`, subB))
	require.Equal(t, "failed", st)
}

// The forms do what they say, through the API: create (the secret shown once), edit with an
// error shown, test, replay, rotate after a confirmation, retry.
func TestFormsChangeThroughTheAPI(t *testing.T) {
	s := newSite(t, Operator)
	c := s.signIn(t)

	status, _, body := s.do(t, c, http.MethodPost, "/subscriptions", url.Values{
		"target_url": {"ftp://example.com"}, "event_types": {"signup.created"}, "description": {"mine"}})
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Contains(t, body, `class="error"`, "the API's refusal is shown")
	require.Contains(t, body, `value="ftp://example.com"`, "and the form keeps what was typed")

	form := url.Values{"target_url": {"http://127.0.0.1:9/new"}, "event_types": {"signup.created, signup.deleted"},
		"description": {"mine"}, "idempotency_key": {"form-1"}}
	status, _, body = s.do(t, c, http.MethodPost, "/subscriptions", form)
	require.Equal(t, http.StatusCreated, status)
	require.Contains(t, body, "Subscription created.")
	require.Contains(t, body, `<code id="secret">whsec_`)
	// The same form sent again (a reload) creates nothing more and shows the same answer.
	status, _, again := s.do(t, c, http.MethodPost, "/subscriptions", form)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, between(body, `<code id="secret">`, "<"), between(again, `<code id="secret">`, "<"))
	var made int
	require.NoError(t, s.db.Get(&made, `SELECT count(*) FROM relay.subscriptions`))
	require.Equal(t, 1, made)
	var sub string
	var types []byte
	require.NoError(t, s.db.QueryRow(`SELECT id, event_types::text FROM relay.subscriptions WHERE target_url = 'http://127.0.0.1:9/new'`).Scan(&sub, &types))
	require.Equal(t, "{signup.created,signup.deleted}", string(types))

	status, _, body = s.do(t, c, http.MethodGet, "/subscriptions/"+sub, nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, `id="secret"`, "the secret is not shown again")

	status, _, body = s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/rotate-secret", url.Values{})
	require.Equal(t, http.StatusUnprocessableEntity, status, "no confirmation")
	require.Contains(t, body, "Tick the box to confirm first.")
	var before string
	require.NoError(t, s.db.Get(&before, `SELECT secret FROM relay.subscriptions WHERE id = $1`, sub))
	status, _, body = s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/rotate-secret", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `<code id="secret">whsec_`)
	var after string
	require.NoError(t, s.db.Get(&after, `SELECT secret FROM relay.subscriptions WHERE id = $1`, sub))
	require.NotEqual(t, before, after)

	status, h, _ := s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/test", url.Values{})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/subscriptions/"+sub+"?done=tested", h.Get("Location"))
	var tests int
	require.NoError(t, s.db.Get(&tests, `SELECT count(*) FROM relay.outbox WHERE event_type = 'webhook.test'`))
	require.Equal(t, 1, tests)

	dlv := s.delivery(t, "", sub, `{}`, "nope")
	status, h, _ = s.do(t, c, http.MethodPost, "/deliveries/"+dlv+"/retry", url.Values{})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/deliveries/"+dlv+"?done=retried", h.Get("Location"))
	_, _, body = s.do(t, c, http.MethodGet, "/deliveries/"+dlv+"?done=retried", nil)
	require.Contains(t, body, "Retry queued.")
	require.Contains(t, body, `<span class="badge pending">pending</span>`, "the retried delivery is due again")

	since := time.Now().UTC().Add(-time.Hour).Format(timeInput)
	status, h, _ = s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/replay", url.Values{"since": {since}, "status": {"failed"}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/subscriptions/"+sub+"?done=replayed", h.Get("Location"))

	status, _, body = s.do(t, c, http.MethodPost, "/subscriptions/"+sub, url.Values{
		"target_url": {"http://127.0.0.1:9/edited"}, "event_types": {"*"}, "description": {"edited"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	_, _, body = s.do(t, c, http.MethodGet, "/subscriptions/"+sub+"?done=saved", nil)
	require.Contains(t, body, "Changes saved.")
	require.Contains(t, body, "http://127.0.0.1:9/edited")
}

// The delivery log filters and pages: status, event type, subscription, time; the rows
// alone for the page's refresh.
func TestDeliveryLogFiltersAndPages(t *testing.T) {
	s := newSite(t, Operator)
	c := s.signIn(t)
	sub := s.subscription(t, "", "http://127.0.0.1:9/log", "")
	other := s.subscription(t, "", "http://127.0.0.1:9/other", "")
	_, err := s.db.Exec(`
WITH o AS (INSERT INTO relay.outbox (event_type, payload, dispatched_at)
           SELECT CASE WHEN g % 2 = 0 THEN 'signup.created' ELSE 'signup.deleted' END, '{}', now()
           FROM generate_series(1, 120) g RETURNING id, event_id, event_type)
INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, status)
SELECT o.event_id, o.id, CASE WHEN o.id % 3 = 0 THEN $2 ELSE $1 END,
       CASE WHEN o.event_type = 'signup.created' THEN 'succeeded' ELSE 'failed' END FROM o`, sub, other)
	require.NoError(t, err)

	count := func(body string) int { return strings.Count(body, `<td><a href="/console/deliveries/dlv_`) }
	status, _, body := s.do(t, c, http.MethodGet, "/deliveries", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, pageSize, count(body))
	require.Contains(t, body, `data-refresh="/console/deliveries"`, "the newest page refreshes itself")
	next := between(body, `<a href="/console/deliveries?`, `" rel="next">`)
	require.NotEmpty(t, next)
	_, _, body = s.do(t, c, http.MethodGet, "/deliveries?"+strings.ReplaceAll(next, "&amp;", "&"), nil)
	require.Equal(t, pageSize, count(body))
	require.NotContains(t, body, "data-refresh", "an older page stays as it is")

	_, _, body = s.do(t, c, http.MethodGet, "/deliveries?status=failed&event_type=signup.deleted&subscription="+sub, nil)
	require.Equal(t, 40, count(body))
	require.NotContains(t, body, "succeeded</span>")
	_, _, body = s.do(t, c, http.MethodGet, "/deliveries?status=failed&event_type=signup.created", nil)
	require.Equal(t, 0, count(body))
	require.Contains(t, body, "No deliveries.")
	future := time.Now().UTC().Add(time.Hour).Format(timeInput)
	_, _, body = s.do(t, c, http.MethodGet, "/deliveries?from="+future, nil)
	require.Equal(t, 0, count(body))
	_, _, body = s.do(t, c, http.MethodGet, "/deliveries?to="+future+"&subscription="+other, nil)
	require.Equal(t, 40, count(body))

	status, _, body = s.do(t, c, http.MethodGet, "/deliveries?status=lost", nil)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "status must be one of")

	status, h, body := s.do(t, c, http.MethodGet, "/deliveries?subscription="+sub, nil, "X-Console-Fragment", "rows")
	require.Equal(t, http.StatusOK, status)
	require.True(t, strings.HasPrefix(strings.TrimSpace(body), "<tr>"), "rows alone")
	require.NotContains(t, body, "<html")
	require.Equal(t, "text/html; charset=utf-8", h.Get("Content-Type"))
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

// The assets are served with their types, and no page links outside the console.
func TestAssets(t *testing.T) {
	s := newSite(t, Operator)
	for path, ct := range map[string]string{"/assets/console.css": "text/css", "/assets/console.js": "text/javascript"} {
		status, h, body := s.do(t, browser(t), http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, path)
		require.Contains(t, h.Get("Content-Type"), ct, path)
		require.NotEmpty(t, body)
	}
	_, _, body := s.do(t, browser(t), http.MethodGet, "/sign-in", nil)
	require.NotContains(t, body, "http://")
	require.NotContains(t, body, "https://")
	require.NotContains(t, body, "<script>", "no inline script")
}

// A tenant with a thousand subscriptions sees every one of them, a page of 50 at a time, and
// never another tenant's.
func TestThousandSubscriptionsArePaged(t *testing.T) {
	s := newSite(t, Tenant)
	_, err := s.db.Exec(`INSERT INTO relay.subscriptions (id, tenant_id, target_url, event_types, secret)
		SELECT 'sub_' || lpad(g::text, 26, '0'), CASE WHEN g <= 1000 THEN 'big' ELSE 'other' END,
		       'https://hooks.example.com/' || g, '{*}', 'whsec_x'
		FROM generate_series(1, 1010) g`)
	require.NoError(t, err)
	c := browser(t)
	seen := map[string]bool{}
	path, pages := "/subscriptions", 0
	for path != "" {
		status, _, body := s.do(t, c, http.MethodGet, path, nil, "X-Test-Tenant", "big")
		require.Equal(t, http.StatusOK, status, path)
		pages++
		for _, part := range strings.Split(body, `href="/console/subscriptions/sub_`)[1:] {
			id, _, _ := strings.Cut(part, `"`)
			require.False(t, seen[id], "sub_%s shown twice", id)
			seen[id] = true
		}
		next := between(body, `<a href="/console/subscriptions?`, `" rel="next">`)
		path = ""
		if next != "" {
			path = "/subscriptions?" + next
		}
	}
	require.Equal(t, 20, pages)
	require.Len(t, seen, 1000)
	require.False(t, seen[fmt.Sprintf("%026d", 1001)], "another tenant's")
}

// A v1a subscription's secret page shows its public key, never the private key, on reveal
// and on rotation; its facts and its requests say the scheme.
func TestV1aSubscriptionShowsItsPublicKey(t *testing.T) {
	s := newSite(t, Operator)
	c := s.signIn(t)
	private, public, err := signature.NewKeyPair()
	require.NoError(t, err)
	sub := s.subscription(t, "", "http://127.0.0.1:9/v1a", "ed")
	_, err = s.db.Exec(`UPDATE relay.subscriptions SET secret = $2, signature_scheme = 'v1a' WHERE id = $1`, sub, private)
	require.NoError(t, err)

	status, _, body := s.do(t, c, http.MethodGet, "/subscriptions/"+sub, nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `<dd id="signature-scheme">v1a (ed25519)</dd>`)
	require.Contains(t, body, "Reveal public key")

	status, _, body = s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/reveal-secret", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusOK, status, body)
	// html/template writes + as &#43;; the browser shows the key itself.
	require.Equal(t, public, html.UnescapeString(between(body, `<code id="public-key">`, "<")))
	require.NotContains(t, body, `id="secret"`)
	require.NotContains(t, body, private[5:30])

	status, _, body = s.do(t, c, http.MethodPost, "/subscriptions/"+sub+"/rotate-secret", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusOK, status, body)
	rotated := html.UnescapeString(between(body, `<code id="public-key">`, "<"))
	require.True(t, strings.HasPrefix(rotated, "whpk_"), rotated)
	require.NotEqual(t, public, rotated)
	var stored string
	require.NoError(t, s.db.Get(&stored, `SELECT secret FROM relay.subscriptions WHERE id = $1`, sub))
	got, err := signature.PublicKeyOf(stored)
	require.NoError(t, err)
	require.Equal(t, rotated, got, "the key shown is the public half of the key that signs")
	require.NotContains(t, body, stored[5:30])

	dlv := s.delivery(t, "", sub, `{}`, "nope")
	status, _, body = s.do(t, c, http.MethodGet, "/deliveries/"+dlv, nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "v1a,… (ed25519 signature")

	// A v1 subscription still says v1.
	v1 := s.subscription(t, "", "http://127.0.0.1:9/v1", "hmac")
	_, _, body = s.do(t, c, http.MethodGet, "/subscriptions/"+v1, nil)
	require.Contains(t, body, `<dd id="signature-scheme">v1 (HMAC-SHA256)</dd>`)
}
