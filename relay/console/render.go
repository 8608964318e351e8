package console

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/referralloop/outbox-relay/relay/deliver"
	"github.com/referralloop/outbox-relay/relay/ids"
)

// pageData is what every page template gets.
type pageData struct {
	Title   string
	Message string // the "message" page's text
	Error   string // a form's error, shown above it
	Notice  string // what the last action did (from ?done=)
	Form    map[string]string
	Secret  string // a signing secret to show once, after a confirmation
	// PublicKey is a v1a subscription's public key, shown where a v1 one's secret would be:
	// the private key never leaves the relay.
	PublicKey string
	Data      any

	// Set by render.
	App      string // Config.Title
	Base     string
	Operator bool
	Tenant   string
	SignOut  bool // a sign-out button: the operator console with a token
	Nav      string
}

// notices are the texts ?done= may ask for: a fixed list, so that a link can never put
// words of its own on a page.
var notices = map[string]string{
	"created":  "Subscription created.",
	"saved":    "Changes saved.",
	"paused":   "Subscription paused: deliveries wait until it is resumed.",
	"resumed":  "Subscription active again.",
	"tested":   "Test event sent: it shows in the delivery log in a moment.",
	"rotated":  "Secret rotated: the previous one keeps signing for the configured overlap.",
	"replayed": "Replay queued: the deliveries are due again.",
	"retried":  "Retry queued.",
	"deleted":  "Subscription deleted.",
}

// pageNames are the page templates (templates/<name>.html), each rendered inside layout.html;
// delivery-rows is also rendered alone (the log's refresh).
var pageNames = []string{"message", "signin", "overview", "subscriptions", "subscription", "new-subscription",
	"deliveries", "delivery", "event"}

var funcs = template.FuncMap{
	"when":    when,
	"ago":     ago,
	"join":    strings.Join,
	"detail":  detail,
	"formKey": formKey,
	"short":   func(s string, n int) string { return shorten(s, n) },
	"status": func(code any) string {
		switch c := code.(type) {
		case int32:
			return strconv.Itoa(int(c))
		case int:
			return strconv.Itoa(c)
		}
		return ""
	},
}

// parsePages parses every page; base is the console's Base, which templates ask for with
// {{base}} (sub-templates get a part of the data, not the page).
func parsePages(base string, deliveryIDs *ids.Deliveries) (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	fm := template.FuncMap{"base": func() string { return base }, "deliveryID": deliveryIDs.Format}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).Funcs(fm).ParseFS(templateFS,
			"templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes page name with pd, inside the layout (or alone for delivery-rows).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, pd pageData) {
	pd.App, pd.Base = c.title, c.base
	pd.Tenant = scope(r.Context())
	pd.Operator = c.mode == Operator
	pd.SignOut = c.mode == Operator && c.sessions != nil && !c.sessions.open
	if pd.Notice == "" {
		pd.Notice = notices[r.URL.Query().Get("done")]
	}
	pd.Nav = strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
	var buf bytes.Buffer
	var err error
	if name == "delivery-rows" {
		err = c.pages["deliveries"].ExecuteTemplate(&buf, "delivery-rows", pd)
	} else {
		err = c.pages[name].Execute(&buf, pd)
	}
	if err != nil {
		c.log.Error().Err(err).Str("page", name).Msg("console page could not be rendered")
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// timeOf reads a time.Time or a valid sql.NullTime.
func timeOf(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, true
	case sql.NullTime:
		return t.Time, t.Valid
	}
	return time.Time{}, false
}

// when is a time as the pages show it: UTC, to the second.
func when(v any) string {
	if t, ok := timeOf(v); ok {
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return ""
}

// ago is how long ago t was, roughly: "3s", "5m", "2h", "4d".
func ago(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func percent(part, whole int64) string {
	if whole == 0 {
		return ""
	}
	p := 100 * float64(part) / float64(whole)
	if p > 99.9 && part < whole {
		return "99.9%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// formKey is a new Idempotency-Key for a form that POSTs to the API (a hidden field): a
// form sent twice (a reload, a double click) makes one change, and the second answer is
// the first one again (callAPI).
func formKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// detail is an attempt's error when it says more than its status line ("HTTP 503" for a 503
// says nothing more), "" otherwise.
func detail(status sql.NullInt32, err sql.NullString) string {
	if !err.Valid || (status.Valid && err.String == "HTTP "+strconv.Itoa(int(status.Int32))) {
		return ""
	}
	return err.String
}

// shorten cuts s to n runes with an ellipsis.
func shorten(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n]) + "…"
}

// indentJSON shows a payload indented; as it is when it is not JSON.
func indentJSON(s string) string {
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(s), "", "  "); err != nil {
		return s
	}
	return b.String()
}

// sentSignature says what webhook-signature held, which is not kept.
func sentSignature(scheme string) string {
	if scheme == "v1a" {
		return "v1a,… (ed25519 signature of id.timestamp.body with the subscription's private key; not kept)"
	}
	return "v1,… (HMAC-SHA256 of id.timestamp.body with the subscription's secret; not kept)"
}

// sentRequest is a delivery's request as the relay sends it.
type sentRequest struct {
	Headers [][2]string
	Body    string
}

// requestAsSent rebuilds the request of a delivery's latest attempt: the body byte for byte
// (deliver.Body), the headers as the deliverer sets them. What is not kept is said so: the
// signature (an HMAC with the subscription's secret, or for the v1a scheme an ed25519
// signature) and the values of the subscription's own headers, which may be credentials.
func requestAsSent(d deliveryRow, createdAt time.Time, tenantID, payload string, headerNames []string, scheme string, attempts []attemptRow) sentRequest {
	ts := "the Unix time of each attempt's start"
	attempt := strconv.Itoa(max(1, d.AttemptCount))
	if n := len(attempts); n > 0 {
		ts = strconv.FormatInt(attempts[n-1].StartedAt.Unix(), 10)
		attempt = strconv.Itoa(attempts[n-1].Attempt)
	}
	h := [][2]string{
		{"Content-Type", "application/json"},
		{"webhook-id", d.EventID},
		{"webhook-timestamp", ts},
		{"webhook-signature", sentSignature(scheme)},
		{"X-Webhook-Signature", "the same as webhook-signature"},
		{"X-Webhook-Event", d.EventType},
		{"X-Webhook-Attempt", attempt},
	}
	for _, name := range headerNames {
		h = append(h, [2]string{name, "(set on the subscription; value not shown)"})
	}
	return sentRequest{Headers: h, Body: string(deliver.Body(d.EventID, d.EventType, createdAt, tenantID, payload))}
}
