package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/referralloop/outbox-relay/relay/ids"
)

// The forms: each is one call to the management API's handler, as the caller, so that the
// API's rules (what a target URL may be, what a tenant may touch, what a paused subscription
// may be sent) are the console's too. The API's error message is shown above the form.

// apiAnswer is what the API answered a call.
type apiAnswer struct {
	status int
	body   []byte
}

// message is the API's error message, or a generic one.
func (a apiAnswer) message() string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	return "the relay could not do that (HTTP " + http.StatusText(a.status) + ")"
}

func (a apiAnswer) ok() bool { return a.status >= 200 && a.status < 300 }

// callAPI sends one request to the API handler as r's caller and answers what it said.
func (c *Console) callAPI(r *http.Request, method, path string, body any) apiAnswer {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body) // maps of strings and string slices: cannot fail
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, bytes.NewReader(b))
	if err != nil {
		return apiAnswer{status: http.StatusInternalServerError}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key := r.PostFormValue("idempotency_key"); key != "" && method == http.MethodPost {
		req.Header.Set("Idempotency-Key", key)
	}
	// r's context carries the caller (authenticated, or forward auth in front): the API
	// serves the request as them.
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return apiAnswer{status: rec.status, body: rec.body.Bytes()}
}

// recorder keeps an in-process answer of the API.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// done redirects to path with the notice of what was done (see notices).
func (c *Console) done(w http.ResponseWriter, r *http.Request, path, what string) {
	http.Redirect(w, r, c.base+path+"?done="+what, http.StatusSeeOther)
}

// formLimit bounds a form's body.
const formLimit = 256 << 10

// eventTypesOf splits the form's event types: one per line or comma-separated.
func eventTypesOf(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' })
}

func (c *Console) newSubscriptionPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "new-subscription", pageData{Title: "New subscription", Form: map[string]string{"event_types": "*"}})
}

func (c *Console) createSubscription(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, formLimit)
	form := map[string]string{
		"target_url": r.PostFormValue("target_url"), "event_types": r.PostFormValue("event_types"),
		"description": r.PostFormValue("description"),
	}
	ans := c.callAPI(r, http.MethodPost, "/v1/subscriptions", map[string]any{
		"target_url": form["target_url"], "event_types": eventTypesOf(form["event_types"]), "description": form["description"],
	})
	if !ans.ok() {
		c.render(w, r, http.StatusUnprocessableEntity, "new-subscription", pageData{Title: "New subscription", Form: form, Error: ans.message()})
		return
	}
	var created struct {
		ID        string `json:"id"`
		Secret    string `json:"secret"`
		PublicKey string `json:"public_key"`
	}
	_ = json.Unmarshal(ans.body, &created)
	// The secret is shown this once, on the new subscription's page.
	r.SetPathValue("id", created.ID)
	c.showSubscription(w, r, http.StatusCreated, pageData{Notice: notices["created"], Secret: created.Secret, PublicKey: created.PublicKey})
}

func (c *Console) editSubscription(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, formLimit)
	id := r.PathValue("id")
	if !ids.ValidSubscriptionID(id) {
		c.notFound(w, r, "subscription")
		return
	}
	form := map[string]string{
		"target_url": r.PostFormValue("target_url"), "event_types": r.PostFormValue("event_types"),
		"description": r.PostFormValue("description"),
	}
	ans := c.callAPI(r, http.MethodPatch, "/v1/subscriptions/"+id, map[string]any{
		"target_url": form["target_url"], "event_types": eventTypesOf(form["event_types"]), "description": form["description"],
	})
	if !ans.ok() {
		c.showSubscription(w, r, http.StatusUnprocessableEntity, pageData{Form: form, Error: ans.message()})
		return
	}
	c.done(w, r, "/subscriptions/"+id, "saved")
}

// subscriptionAction is the buttons of a subscription's page.
func (c *Console) subscriptionAction(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, formLimit)
	id, action := r.PathValue("id"), r.PathValue("action")
	if !ids.ValidSubscriptionID(id) {
		c.notFound(w, r, "subscription")
		return
	}
	page := "/subscriptions/" + id
	confirmed := r.PostFormValue("confirm") == "yes"
	var ans apiAnswer
	switch action {
	case "pause", "resume":
		status := map[string]string{"pause": "paused", "resume": "active"}[action]
		ans = c.callAPI(r, http.MethodPatch, "/v1/subscriptions/"+id, map[string]any{"status": status})
		action = map[string]string{"pause": "paused", "resume": "resumed"}[action]
	case "test":
		ans = c.callAPI(r, http.MethodPost, "/v1/subscriptions/"+id+"/test", nil)
		action = "tested"
	case "replay":
		since, err := time.Parse(timeInput, r.PostFormValue("since"))
		if err != nil {
			c.showSubscription(w, r, http.StatusUnprocessableEntity, pageData{Error: "Replay: since is not a date and time (YYYY-MM-DDTHH:MM, UTC)."})
			return
		}
		status := r.PostFormValue("status")
		if status == "" {
			status = "failed"
		}
		ans = c.callAPI(r, http.MethodPost, "/v1/subscriptions/"+id+"/replay", map[string]any{"since": since.UTC().Format(time.RFC3339), "status": status})
		action = "replayed"
	case "rotate-secret", "reveal-secret", "delete":
		if !confirmed {
			c.showSubscription(w, r, http.StatusUnprocessableEntity, pageData{Error: "Tick the box to confirm first."})
			return
		}
		switch action {
		case "rotate-secret":
			ans = c.callAPI(r, http.MethodPost, "/v1/subscriptions/"+id+"/rotate-secret", nil)
		case "reveal-secret":
			ans = c.callAPI(r, http.MethodGet, "/v1/subscriptions/"+id+"/secret", nil)
		case "delete":
			ans = c.callAPI(r, http.MethodDelete, "/v1/subscriptions/"+id, nil)
		}
		if ans.ok() && action != "delete" {
			// A v1 subscription answers its secret, a v1a one its public key.
			var s struct {
				Secret    string `json:"secret"`
				PublicKey string `json:"public_key"`
			}
			_ = json.Unmarshal(ans.body, &s)
			notice := ""
			if action == "rotate-secret" {
				notice = notices["rotated"]
			}
			c.log.Info().Str("subscription_id", id).Str("action", action).Msg("console: signing secret shown")
			c.showSubscription(w, r, http.StatusOK, pageData{Notice: notice, Secret: s.Secret, PublicKey: s.PublicKey})
			return
		}
		if ans.ok() {
			c.done(w, r, "/subscriptions", "deleted")
			return
		}
	default:
		c.notFound(w, r, "action")
		return
	}
	if !ans.ok() {
		if ans.status == http.StatusNotFound {
			c.notFound(w, r, "subscription")
			return
		}
		c.showSubscription(w, r, http.StatusUnprocessableEntity, pageData{Error: ans.message()})
		return
	}
	c.done(w, r, page, action)
}

func (c *Console) retryDelivery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := c.ids.Parse(id); !ok {
		c.notFound(w, r, "delivery")
		return
	}
	ans := c.callAPI(r, http.MethodPost, "/v1/deliveries/"+id+"/retry", nil)
	if !ans.ok() {
		if ans.status == http.StatusNotFound {
			c.notFound(w, r, "delivery")
			return
		}
		c.render(w, r, ans.status, "message", pageData{Title: "Retry refused", Message: ans.message()})
		return
	}
	c.done(w, r, "/deliveries/"+id, "retried")
}
