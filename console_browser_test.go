package main

// Browser tests of the web console and the customer portal: the real binary, a real
// PostgreSQL and headless Chromium driven with chromedp, asserting what a person sees
// (text, URL, elements) after doing what a person does (typing, clicking, following links).
// TestConsoleScreenshots, run by `make screenshots`, writes the pictures in docs/.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// chromiumPath answers the Chromium (or Chrome) to drive: $CHROMIUM, else the first of
// chromium, chromium-browser, google-chrome on PATH, else /usr/bin/chromium. Without one the
// test is skipped, and fails under CI=true, where .ci/run installs it.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	const how = "Chromium is not installed: apt-get install chromium (or set CHROMIUM to a Chrome binary)"
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// startBrowser starts one headless Chromium for the test, with a fresh profile, and answers
// its context; tabs come from newTab. The browser ends with the test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		// This machine's network is closed: Chromium's own connections (updates, sync, QUIC
		// probes) would be refused, and slow every start.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser, tied to the context it is given: not one with a
	// timeout, whose end would close the browser.
	require.NoError(t, chromedp.Do(ctx), "starting %s", exe)
	return ctx
}

// actionTimeout bounds one browser action: a page that never loads fails the test.
const actionTimeout = 20 * time.Second

// browserTab is one tab in a browser context of its own (its own cookies, as another
// person's browser would have), recording the JavaScript dialogs that open in it.
type browserTab struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	dialogs []string
}

// newTab opens a tab in a new browser context of browser. A JavaScript dialog is recorded
// and dismissed, so that it cannot block the page.
func newTab(t *testing.T, browser context.Context) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	b := &browserTab{t: t, ctx: ctx}
	opened := make(chan struct{}, 16)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(d.Type)+": "+d.Message)
			b.mu.Unlock()
			select {
			case opened <- struct{}{}:
			default:
			}
		}
	}))
	go func() { // commands may not run inside the listener
		for {
			select {
			case <-ctx.Done():
				return
			case <-opened:
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}
		}
	}()
	return b
}

// Dialogs answers the JavaScript dialogs opened so far.
func (b *browserTab) Dialogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}

// tabRun runs one action on the tab's page and answers its value; an error fails the test.
func tabRun[T any](b *browserTab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(b.t, err, "%s", what)
	return v
}

// do runs actions that answer nothing.
func (b *browserTab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	tabRun(b, what, chromedp.Steps(steps...))
}

// open goes to u, waits for the page and answers the HTTP status of the page it ended on
// (after redirects).
func (b *browserTab) open(u string) int {
	b.t.Helper()
	return int(tabRun(b, "open "+u, chromedp.NavigateResponse(u)).Status)
}

// submit clicks what sel finds (a button or a link), waits for the page it leads to and
// answers that page's HTTP status.
func (b *browserTab) submit(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	require.NoError(b.t, err, "click %s on %s", sel, b.url())
	require.NotNil(b.t, resp, "click %s on %s: no page loaded", sel, b.url())
	return int(resp.Status)
}

// submitJS runs a script that navigates (submits a form), waits for the page it leads to
// and answers that page's HTTP status.
func (b *browserTab) submitJS(script string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Evaluate[chromedp.Void](script))
	require.NoError(b.t, err, "run %s on %s", script, b.url())
	require.NotNil(b.t, resp, "run %s on %s: no page loaded", script, b.url())
	return int(resp.Status)
}

// button is the XPath of the button (or submit input) whose text is label.
func button(label string) string { return `//button[normalize-space()=` + xpathString(label) + `]` }

// link is the XPath of the link whose text is label.
func link(label string) string { return `//a[normalize-space()=` + xpathString(label) + `]` }

// summary is the XPath of the <summary> that opens a <details> section.
func summary(label string) string { return `//summary[normalize-space()=` + xpathString(label) + `]` }

func xpathString(s string) string {
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return `'` + s + `'`
}

// fill types value into the field sel finds, replacing what was there.
func (b *browserTab) fill(sel, value string) {
	b.t.Helper()
	b.do("fill "+sel, chromedp.Clear(sel), chromedp.SendKeys(sel, value))
}

// url answers the page's URL.
func (b *browserTab) url() string {
	b.t.Helper()
	return tabRun(b, "read the URL", chromedp.Location())
}

// eval answers a JavaScript expression's value on the page (DevTools' evaluation, which
// the page's CSP does not govern).
func eval[T any](b *browserTab, expr string) T {
	b.t.Helper()
	return tabRun(b, "evaluate "+expr, chromedp.Evaluate[T](expr))
}

// text answers the page's visible text.
func (b *browserTab) text() string {
	b.t.Helper()
	return eval[string](b, `document.body.innerText`)
}

// html answers the page's markup as it is now.
func (b *browserTab) html() string {
	b.t.Helper()
	return eval[string](b, `document.documentElement.outerHTML`)
}

// textOf answers the text of the first element the CSS selector css finds, "" without one.
func (b *browserTab) textOf(css string) string {
	b.t.Helper()
	return eval[string](b, `(function(){ const e = document.querySelector(`+jsString(css)+`); return e ? e.textContent.trim() : "" })()`)
}

// count answers how many elements the CSS selector css finds.
func (b *browserTab) count(css string) int {
	b.t.Helper()
	return eval[int](b, `document.querySelectorAll(`+jsString(css)+`).length`)
}

// h1 answers the page's heading.
func (b *browserTab) h1() string {
	b.t.Helper()
	return strings.Join(strings.Fields(b.textOf("h1")), " ")
}

func ptrTo[T any](v T) *T { return &v }

func jsString(s string) string {
	j, _ := json.Marshal(s)
	return string(j)
}

// cookie answers the browser's cookie named name for u, or nil.
func (b *browserTab) cookie(u, name string) *network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{u}})
	require.NoError(b.t, err)
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// waitFor polls the page until cond holds, reloading it between tries when reload is set.
func (b *browserTab) waitFor(timeout time.Duration, reload bool, cond func() bool, msg string, args ...any) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNowf(b.t, "condition not met in time", msg+"\npage %s:\n%s", append(args, b.url(), b.text())...)
		}
		time.Sleep(100 * time.Millisecond)
		if reload {
			b.open(b.url())
		}
	}
}

// consoleCookie is the operator console's session cookie (relay/console/session.go).
const consoleCookie = "outbox_relay_console"

// signIn signs the tab in to the operator console at base (".../console") with token.
func (b *browserTab) signIn(base, token string) {
	b.t.Helper()
	b.open(base + "/sign-in")
	b.fill("#token", token)
	require.Equal(b.t, http.StatusOK, b.submit(button("Sign in")), "sign-in with the right token: %s", b.text())
	require.Equal(b.t, base+"/", b.url())
}

// deliveryOf answers the only delivery of subscription sub: its ID as the API shows it, its
// status and attempts.
func deliveryOf(t *testing.T, db *sqlx.DB, sub string) (id, status string, attempts int) {
	t.Helper()
	var d struct {
		ID       int64  `db:"id"`
		Status   string `db:"status"`
		Attempts int    `db:"attempt_count"`
	}
	err := db.Get(&d, `SELECT id, status, attempt_count FROM relay.deliveries WHERE subscription_id = $1`, sub)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", 0
	}
	require.NoError(t, err)
	return relaytest.DeliveryIDs(t, db).Format(d.ID), d.Status, d.Attempts
}

// waitDelivery waits until subscription sub's delivery has status, and answers its ID.
func waitDelivery(t *testing.T, db *sqlx.DB, sub, status string) string {
	t.Helper()
	var id string
	relaytest.Eventually(t, 20*time.Second, func() bool {
		var got string
		id, got, _ = deliveryOf(t, db, sub)
		return got == status
	}, "the delivery of %s never became %s", sub, status)
	return id
}

// publish writes one event to the outbox; tenant "" is none.
func publish(t *testing.T, db *sqlx.DB, eventType, tenant string, payload any) string {
	t.Helper()
	body, err := json.Marshal(payload)
	require.NoError(t, err)
	var id string
	require.NoError(t, db.Get(&id, `INSERT INTO relay.outbox (event_type, tenant_id, payload) VALUES ($1, NULLIF($2, ''), $3) RETURNING event_id`,
		eventType, tenant, string(body)))
	return id
}

// createSubscription makes a subscription through the operator API and answers its ID and
// secret.
func createSubscription(t *testing.T, p *relayProcess, body map[string]any) (id, secret string) {
	t.Helper()
	status, sub := p.call(t, http.MethodPost, "/v1/subscriptions", body)
	require.Equal(t, http.StatusCreated, status, "%v", sub)
	return sub["id"].(string), sub["secret"].(string)
}

// subscriptionStatus reads a subscription's status through the operator API.
func subscriptionStatus(t *testing.T, p *relayProcess, id string) string {
	t.Helper()
	status, sub := p.call(t, http.MethodGet, "/v1/subscriptions/"+id, nil)
	require.Equal(t, http.StatusOK, status, "%v", sub)
	return sub["status"].(string)
}

// TestConsoleOperator drives the operator console of one relay through its everyday tasks,
// each subtest in a browser context of its own (a fresh set of cookies).
func TestConsoleOperator(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	// One retry 200ms after the first attempt: a failing endpoint fails a delivery quickly.
	p := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=200ms")
	base := p.apiURL + "/console"
	browser := startBrowser(t)

	t.Run("SignIn", func(t *testing.T) {
		tab := newTab(t, browser)
		// A page of the console without a session leads to the sign-in form.
		require.Equal(t, http.StatusOK, tab.open(base+"/subscriptions"))
		require.Equal(t, base+"/sign-in", tab.url())
		require.Equal(t, "Sign in", tab.h1())
		require.Zero(t, tab.count(`nav[aria-label="Main"]`), "no navigation before signing in")

		tab.fill("#token", "not-the-token")
		require.Equal(t, http.StatusUnauthorized, tab.submit(button("Sign in")))
		require.Contains(t, tab.text(), "That token is not the relay's API token (RELAY_API_TOKEN).")
		require.Equal(t, base+"/sign-in", tab.url())
		require.Nil(t, tab.cookie(base+"/", consoleCookie), "a refused sign-in sets no session")
		require.Equal(t, http.StatusOK, tab.open(base+"/"))
		require.Equal(t, base+"/sign-in", tab.url(), "still no session")

		tab.fill("#token", p.token)
		require.Equal(t, http.StatusOK, tab.submit(button("Sign in")))
		require.Equal(t, base+"/", tab.url())
		require.Equal(t, "Overview", tab.h1())
		page := tab.text()
		for _, s := range []string{"Operator console", "Deliveries pending", "Last hour", "Failing now"} {
			require.Contains(t, page, s)
		}
		require.Equal(t, 1, tab.count(`form[action="/console/sign-out"] button`), "a sign-out button")
		ck := tab.cookie(base+"/", consoleCookie)
		require.NotNil(t, ck, "signed in: a session cookie")
		require.True(t, ck.HTTPOnly, "the session cookie is HttpOnly")
		require.Equal(t, network.CookieSameSiteStrict, ck.SameSite)
		require.NotContains(t, ck.Value, p.token, "the cookie is not the token")

		// Signing out ends the session.
		require.Equal(t, http.StatusOK, tab.submit(button("Sign out")))
		require.Equal(t, base+"/sign-in", tab.url())
		tab.open(base + "/subscriptions")
		require.Equal(t, base+"/sign-in", tab.url())
	})

	t.Run("Subscriptions", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		first, _ := createSubscription(t, p, map[string]any{"target_url": rc.URL + "/crm", "event_types": []string{"signup.*"}, "description": "CRM sync"})
		second, _ := createSubscription(t, p, map[string]any{"target_url": rc.URL + "/billing", "event_types": []string{"billing.paid"}, "description": "Billing ledger"})
		tab := newTab(t, browser)
		tab.signIn(base, p.token)

		require.Equal(t, http.StatusOK, tab.submit(link("Subscriptions")))
		require.Equal(t, base+"/subscriptions", tab.url())
		require.Equal(t, "Subscriptions New subscription", tab.h1()+" "+tab.textOf(".titlebar a"))
		page := tab.text()
		for _, s := range []string{rc.URL + "/crm", "CRM sync", "signup.*", rc.URL + "/billing", "Billing ledger", "billing.paid"} {
			require.Contains(t, page, s)
		}
		require.Equal(t, 1, tab.count(`a[href="/console/subscriptions/`+first+`"]`))
		require.Equal(t, 1, tab.count(`a[href="/console/subscriptions/`+second+`"]`))

		// The form refuses what the API refuses, and keeps what was typed.
		require.Equal(t, http.StatusOK, tab.submit(link("New subscription")))
		require.Equal(t, base+"/subscriptions/new", tab.url())
		tab.fill("#target_url", "ftp://files.example.com/hooks")
		tab.fill("#event_types", "signup.created")
		require.Equal(t, http.StatusUnprocessableEntity, tab.submit(button("Create")))
		require.Equal(t, "target URL scheme must be https or http", tab.textOf(`[role="alert"]`))
		require.Equal(t, "ftp://files.example.com/hooks", eval[string](tab, `document.querySelector("#target_url").value`))

		target := rc.URL + "/from-the-form"
		tab.fill("#target_url", target)
		tab.fill("#event_types", "signup.*, billing.paid")
		tab.fill("#description", "Made in the browser")
		require.Equal(t, http.StatusCreated, tab.submit(button("Create")))
		require.Equal(t, "Subscription created.", tab.textOf(`[role="status"]`))
		require.Equal(t, target, tab.textOf("#target-url"))
		require.Contains(t, tab.text(), "Made in the browser")
		require.Regexp(t, `billing\.paid, signup\.\*|signup\.\*, billing\.paid`, tab.text())
		require.Contains(t, tab.text(), "Copy it now: it is shown this once.")
		secret := tab.textOf("#secret")
		require.True(t, strings.HasPrefix(secret, "whsec_"), "the signing secret is shown: %q", secret)
		id := strings.TrimSpace(tab.textOf("h1 code"))
		require.True(t, ids.ValidSubscriptionID(id), "the heading names the subscription: %q", tab.h1())

		// The API has it as the form said.
		status, sub := p.call(t, http.MethodGet, "/v1/subscriptions/"+id, nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, target, sub["target_url"])
		require.ElementsMatch(t, []any{"signup.*", "billing.paid"}, sub["event_types"])
		_, revealed := p.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", nil)
		require.Equal(t, secret, revealed["secret"], "the secret shown is the subscription's")

		// Shown once: the subscription's page does not show it again; the list has it.
		tab.open(base + "/subscriptions/" + id)
		require.Zero(t, tab.count("#secret"))
		require.NotContains(t, tab.html(), secret)
		tab.open(base + "/subscriptions")
		require.Contains(t, tab.text(), target)
		require.Equal(t, http.StatusOK, tab.submit(`//a[@href="/console/subscriptions/`+id+`"]`))
		require.Equal(t, base+"/subscriptions/"+id, tab.url())
	})

	// The delivery log's newest page shows new deliveries by itself while it is open: no
	// reload, the page's script asks for the rows again.
	t.Run("LogRefreshesItself", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		sub, _ := createSubscription(t, p, map[string]any{"target_url": rc.URL + "/live", "event_types": []string{"live.tick"}})
		tab := newTab(t, browser)
		tab.signIn(base, p.token)
		require.Equal(t, http.StatusOK, tab.open(base+"/deliveries?subscription="+sub))
		require.Contains(t, tab.text(), "No deliveries.")
		publish(t, db, "live.tick", "", map[string]any{"n": 1})
		id := waitDelivery(t, db, sub, "succeeded")
		tab.waitFor(10*time.Second, false, func() bool {
			return tab.count(`#rows a[href="/console/deliveries/`+id+`"]`) == 1
		}, "the new delivery %s never showed without a reload", id)
		require.Equal(t, base+"/deliveries?subscription="+sub, tab.url(), "the same page, not reloaded elsewhere")
		require.Contains(t, tab.textOf("#rows"), "live.tick")
	})

	t.Run("FailedDeliveryRetry", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		rc.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "database is down (test receiver)")
		}
		target := rc.URL + "/orders"
		sub, _ := createSubscription(t, p, map[string]any{"target_url": target, "event_types": []string{"order.*"}})
		publish(t, db, "order.created", "", map[string]any{"order": map[string]any{"id": "ord_42", "total": 1999}})
		id := waitDelivery(t, db, sub, "failed")
		require.Len(t, rc.Requests(), 2, "the first attempt and one retry")

		tab := newTab(t, browser)
		tab.signIn(base, p.token)
		// The overview names the failing endpoint.
		require.Contains(t, tab.text(), target)
		require.NotContains(t, tab.text(), "No endpoint is failing.")

		// The delivery log, filtered to failures, leads to it.
		require.Equal(t, http.StatusOK, tab.submit(link("Delivery log")))
		tab.do("filter failed", chromedp.SetValue(`select[name="status"]`, "failed"))
		require.Equal(t, http.StatusOK, tab.submit(button("Filter")))
		require.Contains(t, tab.url(), "status=failed")
		require.Equal(t, http.StatusOK, tab.submit(link(id)))
		require.Equal(t, base+"/deliveries/"+id, tab.url())

		require.Equal(t, "Delivery "+id+" failed", tab.h1()+" "+tab.textOf(".titlebar .badge"))
		require.Equal(t, 2, tab.count("#attempts tbody tr"))
		attempts := eval[[][]string](tab, `[...document.querySelectorAll("#attempts tbody tr")].map(r => [...r.cells].map(c => c.textContent.trim()))`)
		for i, row := range attempts {
			require.Equal(t, fmt.Sprint(i+1), row[0])
			require.Equal(t, "HTTP 500", row[3], "status of attempt %d", i+1)
			require.Equal(t, "", row[4], "error of attempt %d: the status line says it all", i+1)
			require.Equal(t, "database is down (test receiver)", row[5], "answer of attempt %d", i+1)
		}
		require.Contains(t, tab.textOf("#request-body"), `"id": "ord_42"`, "the request as sent")
		require.Contains(t, tab.text(), target)

		// Retry now: a notice, a new request to the endpoint, and a third attempt on the page.
		require.Equal(t, http.StatusOK, tab.submit(button("Retry now")))
		require.Equal(t, base+"/deliveries/"+id+"?done=retried", tab.url())
		require.Equal(t, "Retry queued.", tab.textOf(`[role="status"]`))
		rc.WaitFor(t, 3, 15*time.Second)
		tab.waitFor(15*time.Second, true, func() bool { return tab.count("#attempts tbody tr") >= 3 },
			"the retried attempt never showed on the delivery's page")
		require.Equal(t, "HTTP 500", tab.textOf("#attempts tbody tr:nth-child(3) td:nth-child(4)"))
	})

	t.Run("ReplayAndRotate", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		sub, secret := createSubscription(t, p, map[string]any{"target_url": rc.URL + "/invoices", "event_types": []string{"invoice.*"}})
		event := publish(t, db, "invoice.paid", "", map[string]any{"invoice": "inv_7"})
		waitDelivery(t, db, sub, "succeeded")
		require.Len(t, rc.Requests(), 1)

		tab := newTab(t, browser)
		tab.signIn(base, p.token)
		tab.open(base + "/subscriptions/" + sub)
		require.Equal(t, "active", tab.textOf(".titlebar .badge"))

		// Replay the succeeded deliveries of the last hour.
		tab.do("open the replay form", chromedp.Click(summary("Replay deliveries")))
		since := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")
		tab.do("fill the replay form", chromedp.SetValue("#since", since), chromedp.SetValue("#replay-status", "succeeded"))
		require.Equal(t, http.StatusOK, tab.submit(button("Replay")))
		require.Equal(t, base+"/subscriptions/"+sub+"?done=replayed", tab.url())
		require.Equal(t, "Replay queued: the deliveries are due again.", tab.textOf(`[role="status"]`))
		reqs := rc.WaitFor(t, 2, 15*time.Second)
		require.Equal(t, event, reqs[1].Header.Get("webhook-id"), "the same event again")

		// Rotate the secret: tick the confirmation, press Rotate; the new secret shows.
		tab.do("open the secret section", chromedp.Click(summary("Signing secret")))
		tab.do("confirm", chromedp.Click(`//form[contains(@action, "/rotate-secret")]//input[@name="confirm"]`))
		require.Equal(t, http.StatusOK, tab.submit(button("Rotate secret")))
		require.Equal(t, "Secret rotated: the previous one keeps signing for the configured overlap.", tab.textOf(`[role="status"]`))
		rotated := tab.textOf("#secret")
		require.True(t, strings.HasPrefix(rotated, "whsec_"), "a new secret is shown: %q", rotated)
		require.NotEqual(t, secret, rotated)
		_, revealed := p.call(t, http.MethodGet, "/v1/subscriptions/"+sub+"/secret", nil)
		require.Equal(t, rotated, revealed["secret"], "the secret shown is the subscription's new one")
	})

	t.Run("XSSInert", func(t *testing.T) {
		const markup = `<script>alert(1)</script><img src=x onerror=alert(1)>`
		const location = `javascript:alert(1)//"><img src=x onerror=alert(2)>`
		// The endpoint answers with markup and redirects to a script URL: both end up on the
		// pages, in the attempt's answer and its error.
		rc := relaytest.NewReceiver(t)
		rc.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Location", location)
			w.WriteHeader(http.StatusFound)
			_, _ = io.WriteString(w, markup)
		}
		target := rc.URL + `/hook?next="><svg/onload=alert(3)>`
		sub, _ := createSubscription(t, p, map[string]any{"target_url": target, "event_types": []string{"xss.*"}, "description": markup})
		event := publish(t, db, "xss.test", "", map[string]any{"note": markup, "link": "javascript:alert(4)"})
		id := waitDelivery(t, db, sub, "failed")

		// The dialog listener works: a page that does call alert is caught.
		probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `<!doctype html><title>probe</title><script>alert("probe")</script>`)
		}))
		t.Cleanup(probe.Close)
		tab := newTab(t, browser)
		tab.open(probe.URL)
		relaytest.Eventually(t, 5*time.Second, func() bool { return len(tab.Dialogs()) == 1 }, "the probe's alert was not seen: %v", tab.Dialogs())
		require.Equal(t, []string{"alert: probe"}, tab.Dialogs())

		tab.signIn(base, p.token)
		inert := func(where string) {
			t.Helper()
			require.Zero(t, tab.count("img, svg, iframe, object, embed"), "%s: no element from the data", where)
			require.Equal(t, []string{"/console/assets/console.js"},
				eval[[]string](tab, `[...document.scripts].map(s => new URL(s.src || "inline:", location.href).pathname)`),
				"%s: the console's script only", where)
			require.Zero(t, tab.count("[onerror], [onload]"), "%s: no event handler attributes", where)
		}
		tab.open(base + "/subscriptions/" + sub)
		inert("subscription")
		require.Equal(t, markup, tab.textOf("dd#description-text"), "the description shows as text")
		require.Equal(t, target, tab.textOf("#target-url"), "the URL shows as text")
		require.Equal(t, markup, eval[string](tab, `document.querySelector('input[name="description"]').value`), "the edit form holds it as text")
		require.Equal(t, target, eval[string](tab, `document.querySelector('input[name="target_url"]').value`))
		require.Contains(t, tab.text(), "HTTP 302: redirects are not followed (Location: "+location+")")

		// The lists show the texts shortened, as text: the overview's failing endpoints and
		// the subscriptions (URL, description, last error), the log (URL, last error).
		lastError := "HTTP 302: redirects are not followed (Location: javascript:alert(1)//\"><img"
		targetStart := rc.URL + `/hook?next="><svg` // the lists shorten long URLs
		for page, shown := range map[string][]string{
			"/":                               {targetStart, markup, lastError},
			"/subscriptions":                  {targetStart, markup, lastError},
			"/deliveries":                     {targetStart, lastError},
			"/deliveries?subscription=" + sub: {targetStart, lastError},
		} {
			tab.open(base + page)
			inert(page)
			for _, s := range shown {
				require.Contains(t, tab.text(), s, "%s shows it as text", page)
			}
		}

		tab.open(base + "/deliveries/" + id)
		inert("delivery")
		require.Equal(t, markup, tab.textOf("#attempts tbody tr td:nth-child(6)"), "the endpoint's answer shows as text")
		require.Equal(t, "HTTP 302: redirects are not followed (Location: "+location+")", tab.textOf("#attempts tbody tr td.err"))
		body := tab.textOf("#request-body")
		require.Contains(t, body, `"note": "<script>alert(1)</script><img src=x onerror=alert(1)>"`, "the payload shows as text")

		tab.open(base + "/events/" + event)
		inert("event")
		require.Contains(t, tab.textOf("#payload"), `"note": "`+markup+`"`)
		require.Contains(t, tab.textOf("#payload"), `"link": "javascript:alert(4)"`)

		time.Sleep(300 * time.Millisecond) // an onerror would fire after the load
		require.Equal(t, []string{"alert: probe"}, tab.Dialogs(), "no dialog opened on the console's pages")
	})

	t.Run("CrossOriginRefused", func(t *testing.T) {
		rc := relaytest.NewReceiver(t)
		sub, _ := createSubscription(t, p, map[string]any{"target_url": rc.URL + "/victim", "event_types": []string{"*"}})
		pause := base + "/subscriptions/" + sub + "/pause"
		// Another origin (another port on loopback) whose page posts a form to the console
		// as soon as it loads.
		attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = fmt.Fprintf(w, `<!doctype html><title>win a prize</title>
<form id="f" method="post" action="%s"><input type="hidden" name="x" value="1"></form>
<script>document.getElementById("f").submit()</script>`, html.EscapeString(pause))
		}))
		t.Cleanup(attacker.Close)

		tab := newTab(t, browser)
		tab.signIn(base, p.token) // the victim has a session
		tab.open(attacker.URL)
		tab.waitFor(10*time.Second, false, func() bool {
			return eval[bool](tab, `location.href === `+jsString(pause)+` && document.readyState === "complete"`)
		}, "the attacker's form never reached the console")
		require.Equal(t, "Refused", tab.h1())
		require.Contains(t, tab.text(), "This request came from another site and was refused. Use the console's own pages.")
		require.Equal(t, "active", subscriptionStatus(t, p, sub), "the cross-origin POST changed nothing")

		// The same button on the console's own page works.
		tab.open(base + "/subscriptions/" + sub)
		require.Equal(t, http.StatusOK, tab.submit(button("Pause")))
		require.Equal(t, "Subscription paused: deliveries wait until it is resumed.", tab.textOf(`[role="status"]`))
		require.Equal(t, "paused", subscriptionStatus(t, p, sub))
	})
}

// TestConsoleTenantPortal: in reverse-proxy mode each customer's browser, signed in to the
// application (a cookie forward auth reads), sees its own tenant's subscriptions,
// deliveries and events in the portal, and nothing of another tenant's.
func TestConsoleTenantPortal(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	users := map[string]string{"alice": "tenant_a", "bob": "tenant_b"}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/auth": // forward auth: the application's session cookie names the tenant
			ck, err := r.Cookie("app_session")
			if err != nil || users[ck.Value] == "" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("X-Tenant-ID", users[ck.Value])
			w.WriteHeader(http.StatusNoContent)
		case "/login": // the application's sign-in, then its link to the webhooks portal
			http.SetCookie(w, &http.Cookie{Name: "app_session", Value: r.URL.Query().Get("user"), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
			http.Redirect(w, r, "/webhooks/console/", http.StatusSeeOther)
		default:
			_, _ = io.WriteString(w, "the application")
		}
	}))
	t.Cleanup(app.Close)
	rc := relaytest.NewReceiver(t)
	admin := freeAddr(t)
	p := startRelay(t, dsn, "RELAY_UPSTREAM_URL="+app.URL, "RELAY_AUTH_URL="+app.URL+"/auth", "RELAY_ADMIN_ADDR="+admin,
		"RELAY_CONSOLE_TITLE=Acme Waitlist")
	portal := p.apiURL + "/webhooks/console"

	// Each tenant makes a subscription through the proxied API with its application cookie.
	create := func(user, path, description string) string {
		body, _ := json.Marshal(map[string]any{"target_url": rc.URL + path, "event_types": []string{"*"}, "description": description})
		req, err := http.NewRequest(http.MethodPost, p.apiURL+"/webhooks/v1/subscriptions", strings.NewReader(string(body)))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", "app_session="+user)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var sub map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&sub))
		require.Equal(t, http.StatusCreated, resp.StatusCode, "%v", sub)
		require.Equal(t, users[user], sub["tenant_id"])
		return sub["id"].(string)
	}
	subA := create("alice", "/alice-endpoint", "Alice's CRM")
	subB := create("bob", "/bob-private-endpoint", "Bob's secret ledger")
	eventA := publish(t, db, "signup.created", "tenant_a", map[string]any{"marker": "alice-payload-3141"})
	eventB := publish(t, db, "bob.confidential", "tenant_b", map[string]any{"marker": "bob-payload-2718"})
	deliveryA := waitDelivery(t, db, subA, "succeeded")
	deliveryB := waitDelivery(t, db, subB, "succeeded")
	bobs := []string{subB, "bob-private-endpoint", "Bob's secret ledger", "bob-payload-2718", "bob.confidential", eventB, deliveryB, "tenant_b"}

	browser := startBrowser(t)
	alice := newTab(t, browser)
	// Without the application's session the portal is refused by forward auth.
	require.Equal(t, http.StatusUnauthorized, alice.open(portal+"/"))

	// Alice signs in to the application and follows its link to the portal.
	require.Equal(t, http.StatusOK, alice.open(p.apiURL+"/login?user=alice"))
	require.Equal(t, portal+"/", alice.url())
	require.Equal(t, "Overview", alice.h1())
	require.Equal(t, "Acme Waitlist Webhooks", strings.Join(strings.Fields(alice.textOf(".app")+" "+alice.textOf(".who")), " "))
	require.NotContains(t, alice.text(), "Operator console")
	require.Zero(t, alice.count(`form[action$="/sign-out"]`), "no sign-out: the application's session is the portal's")
	require.NotContains(t, alice.text(), "Outbox backlog", "the relay's own backlog is the operator's")

	seen := map[string]string{}
	visit := func(path string) {
		t.Helper()
		require.Equal(t, http.StatusOK, alice.open(portal+path), "%s", path)
		seen[path] = alice.html()
	}
	visit("/")
	visit("/subscriptions")
	require.Contains(t, alice.text(), rc.URL+"/alice-endpoint")
	require.Contains(t, alice.text(), "Alice's CRM")
	require.Equal(t, 1, alice.count(`tbody tr`), "one subscription: Alice's")
	require.Equal(t, http.StatusOK, alice.submit(`//a[@href="/webhooks/console/subscriptions/`+subA+`"]`))
	require.Equal(t, portal+"/subscriptions/"+subA, alice.url())
	seen["/subscriptions/"+subA] = alice.html()
	require.Contains(t, alice.text(), "tenant_a")
	visit("/deliveries")
	require.Equal(t, 1, alice.count("#rows tr"), "one delivery: Alice's")
	require.Contains(t, alice.text(), deliveryA)
	require.Equal(t, []string{"", "signup.created"}, eval[[]string](alice, `[...document.querySelectorAll('select[name="event_type"] option')].map(o => o.value)`))
	visit("/deliveries/" + deliveryA)
	require.Contains(t, alice.textOf("#request-body"), "alice-payload-3141")
	visit("/events/" + eventA)
	require.Contains(t, alice.textOf("#payload"), "alice-payload-3141")
	for path, page := range seen {
		for _, s := range bobs {
			require.NotContains(t, page, s, "Alice's %s shows Bob's %q", path, s)
		}
	}

	// Bob's things, asked for by their IDs, are not found.
	for path, what := range map[string]string{
		"/subscriptions/" + subB: "subscription", "/deliveries/" + deliveryB: "delivery", "/events/" + eventB: "event",
	} {
		require.Equal(t, http.StatusNotFound, alice.open(portal+path), "%s", path)
		require.Equal(t, "Not found", alice.h1())
		require.Contains(t, alice.text(), "There is no such "+what+" here.")
		for _, s := range bobs {
			require.NotContains(t, alice.html(), s)
		}
	}
	alice.open(portal + "/deliveries?subscription=" + subB)
	require.Contains(t, alice.text(), "No deliveries.")

	// A form of Alice's own portal posting to Bob's subscription changes nothing.
	alice.open(portal + "/subscriptions/" + subA)
	require.Equal(t, http.StatusNotFound, alice.submitJS(fmt.Sprintf(
		`(function(){ const f = document.createElement("form"); f.method = "post"; f.action = %s; document.body.append(f); f.submit() })()`,
		jsString(portal+"/subscriptions/"+subB+"/pause"))))
	require.Contains(t, alice.text(), "There is no such subscription here.")
	var statusB string
	require.NoError(t, db.Get(&statusB, `SELECT status FROM relay.subscriptions WHERE id = $1`, subB))
	require.Equal(t, "active", statusB)

	// Bob, in his own browser, sees his subscription and not Alice's.
	bob := newTab(t, browser)
	require.Equal(t, http.StatusOK, bob.open(p.apiURL+"/login?user=bob"))
	bob.open(portal + "/subscriptions")
	require.Contains(t, bob.text(), "Bob's secret ledger")
	require.NotContains(t, bob.html(), subA)
	require.NotContains(t, bob.html(), "alice-endpoint")
	require.Equal(t, http.StatusNotFound, bob.open(portal+"/subscriptions/"+subA))
}

// TestConsoleScreenshots writes the README's pictures of the operator console
// (docs/console-*.png) from a relay with a little realistic data: `make screenshots`.
// It runs only with SCREENSHOTS=1.
func TestConsoleScreenshots(t *testing.T) {
	if os.Getenv("SCREENSHOTS") == "" {
		t.Skip("SCREENSHOTS=1 writes docs/console-*.png (make screenshots)")
	}
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	p := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=200ms,400ms")

	crm := relaytest.NewReceiver(t)
	crm.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"received":true}`)
	}
	billing := relaytest.NewReceiver(t)
	billing.Respond = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"maintenance: the ledger is read-only until 18:00 UTC"}`)
	}
	analytics := relaytest.NewReceiver(t)
	createSubscription(t, p, map[string]any{"target_url": crm.URL + "/hooks/signups",
		"event_types": []string{"signup.*"}, "description": "Sync new signups to the CRM"})
	subBilling, _ := createSubscription(t, p, map[string]any{"target_url": billing.URL + "/webhooks/billing",
		"event_types": []string{"invoice.*"}, "description": "Billing reconciliation"})
	subAnalytics, _ := createSubscription(t, p, map[string]any{"target_url": analytics.URL + "/ingest/events",
		"event_types": []string{"*"}, "description": "Analytics export"})

	for i, e := range []struct{ typ, email string }{
		{"signup.created", "ada@example.com"}, {"signup.created", "grace@example.com"},
		{"signup.position_changed", "ada@example.com"}, {"signup.created", "linus@example.com"},
		{"invoice.paid", "grace@example.com"}, {"signup.deleted", "linus@example.com"},
	} {
		if e.typ == "invoice.paid" {
			publish(t, db, e.typ, "", map[string]any{"invoice": map[string]any{"id": "inv_2041", "amount": 4900, "currency": "EUR", "customer": e.email}})
			continue
		}
		publish(t, db, e.typ, "", map[string]any{"signup": map[string]any{"id": fmt.Sprintf("su_%d", 1001+i), "email": e.email, "position": 17 - i}})
	}
	failed := waitDelivery(t, db, subBilling, "failed")
	relaytest.Eventually(t, 20*time.Second, func() bool {
		var pending int
		require.NoError(t, db.Get(&pending, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending'`))
		return pending == 0 && len(crm.Requests()) == 5 && len(analytics.Requests()) == 6
	}, "the deliveries never finished")
	status, _ := p.call(t, http.MethodPatch, "/v1/subscriptions/"+subAnalytics, map[string]any{"status": "paused"})
	require.Equal(t, http.StatusOK, status)

	base := p.apiURL + "/console"
	tab := newTab(t, startBrowser(t))
	tab.do("desktop viewport", chromedp.EmulateViewport(1280, 800))
	tab.signIn(base, p.token)
	require.NoError(t, os.MkdirAll("docs", 0o755))
	// shoot writes the whole height of the page at path, as wide as the screen (width): what
	// a person scrolls through. A page wider than the screen is cut, as a phone shows it.
	shoot := func(name, path string, width int) {
		t.Helper()
		require.Equal(t, http.StatusOK, tab.open(base+path), "%s", path)
		height := eval[float64](tab, `document.body.scrollHeight`)
		if wide := eval[float64](tab, `document.documentElement.scrollWidth`); wide > float64(width) {
			t.Logf("%s is %.0f px wide on a screen of %d px: it scrolls sideways", path, wide, width)
		}
		png := tabRun(tab, "screenshot "+path, func(ctx context.Context, tt *chromedp.Target) ([]byte, error) {
			res, err := cdp.Call(ctx, tt, page.CaptureScreenshot, page.CaptureScreenshotParams{
				Format: page.CaptureScreenshotFormatPng, CaptureBeyondViewport: ptrTo(true),
				Clip: &page.Viewport{Width: float64(width), Height: height, Scale: 1},
			})
			return res.Data, err
		})
		require.NoError(t, os.WriteFile("docs/console-"+name+".png", png, 0o644))
		t.Logf("docs/console-%s.png: %s (%d bytes)", name, path, len(png))
	}
	shoot("overview", "/", 1280)
	shoot("subscriptions", "/subscriptions", 1280)
	shoot("subscription", "/subscriptions/"+subBilling, 1280)
	shoot("deliveries", "/deliveries", 1280)
	shoot("delivery", "/deliveries/"+failed, 1280)
	tab.do("phone viewport", chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile))
	shoot("mobile", "/deliveries/"+failed, 375)
	require.Empty(t, tab.Dialogs())
}
