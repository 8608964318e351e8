package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"
)

// WebhookArgs is the "webhook" job: one event for the one endpoint. The job carries the
// event itself, as it would in an application that inserts the job in the transaction that
// writes its own data.
type WebhookArgs struct {
	EventID   string          `json:"event_id"`
	EventType string          `json:"event_type"`
	CreatedAt time.Time       `json:"created_at"`
	Payload   json.RawMessage `json:"payload"`
}

// Kind is River's job kind.
func (WebhookArgs) Kind() string { return "webhook" }

// WebhookWorker POSTs one event, signed the Standard Webhooks way, to the endpoint. A 2xx
// answer completes the job; anything else is an error, which River retries on its schedule.
type WebhookWorker struct {
	river.WorkerDefaults[WebhookArgs]
	URL       string
	Key       []byte // the secret's bytes (whsec_ base64 decoded)
	Client    *http.Client
	UserAgent string
	// RequestTimeout bounds one attempt, connect to last byte: the relay's
	// RELAY_DELIVERY_TIMEOUT (5 s by default).
	RequestTimeout time.Duration
}

// Timeout is River's per-job timeout: the job's context is cancelled after it.
func (w *WebhookWorker) Timeout(*river.Job[WebhookArgs]) time.Duration { return w.RequestTimeout }

// responseLimit is how much of an answer is read (and then the rest drained, up to
// drainLimit), so that a connection can be reused without reading an endless body.
const (
	responseLimit = 4 << 10
	drainLimit    = 64 << 10
)

// Work sends the event once.
func (w *WebhookWorker) Work(ctx context.Context, job *river.Job[WebhookArgs]) error {
	a := job.Args
	body, err := webhookBody(a)
	if err != nil {
		// Retrying cannot change a body that cannot be built.
		return river.JobCancel(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return river.JobCancel(err)
	}
	ts := time.Now().Unix()
	sig := Sign(w.Key, a.EventID, ts, body)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", w.UserAgent)
	h["webhook-id"] = []string{a.EventID}
	h["webhook-timestamp"] = []string{strconv.FormatInt(ts, 10)}
	h["webhook-signature"] = []string{sig}
	h.Set("X-Webhook-Event", a.EventType)
	h.Set("X-Webhook-Attempt", strconv.Itoa(job.Attempt))
	resp, err := w.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseLimit+drainLimit))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// webhookBody is the relay's body for the same event:
//
//	{"id":"…","event_type":"…","timestamp":"…","data":…}
func webhookBody(a WebhookArgs) ([]byte, error) {
	return json.Marshal(struct {
		ID        string          `json:"id"`
		EventType string          `json:"event_type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{a.EventID, a.EventType, a.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"), a.Payload})
}

// Sign returns the Standard Webhooks signature "v1,<base64 HMAC-SHA256(key, id.ts.body)>".
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SecretKey decodes a whsec_ secret into the HMAC key.
func SecretKey(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("the secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) == 0 {
		return nil, errors.New("the secret must be whsec_ and base64")
	}
	return key, nil
}

// newHTTPClient has the relay's HTTP client settings (relay/egress.New): dial and
// TLS timeouts, keep-alive, idle connections for every worker, no redirects. The per-request
// timeout is the job's (WebhookWorker.Timeout).
func newHTTPClient(workers int) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          max(workers*2, 100),
			MaxIdleConnsPerHost:   max(workers, 16),
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// newEventID returns a random (version 4) UUID, as the outbox's event_id default does.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// eventPayload is the payload the relay scenarios publish (bench/scenarios.go eventPayload):
// the receiver reads seq and committed_at_unix_ns from it.
func eventPayload(seq int, commitNs int64) []byte {
	s := strconv.Itoa(seq)
	b := make([]byte, 0, 256)
	b = append(b, `{"seq":`...)
	b = append(b, s...)
	b = append(b, `,"committed_at_unix_ns":`...)
	b = strconv.AppendInt(b, commitNs, 10)
	b = append(b, `,"ordering_key":null,"signup":{"id":"su_`...)
	b = append(b, s...)
	b = append(b, `","email":"user`...)
	b = append(b, s...)
	b = append(b, `@example.com","position":`...)
	b = append(b, s...)
	b = append(b, `,"waitlist_id":"wl_bench","referral_code":"r`...)
	b = append(b, fmt.Sprintf("%08d", seq)...)
	b = append(b, `"}}`...)
	return b
}

// newArgs is event seq's job, committed (as far as the clock goes) at commitNs.
func newArgs(seq int, commitNs int64) WebhookArgs {
	return WebhookArgs{
		EventID:   newEventID(),
		EventType: "signup.created",
		CreatedAt: time.Unix(0, commitNs),
		Payload:   eventPayload(seq, commitNs),
	}
}
