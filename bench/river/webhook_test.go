package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// The test vector from the Standard Webhooks specification (relay/signature's tests use it
// too).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = int64(1614265330)
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignStandardWebhooksVector(t *testing.T) {
	key, err := SecretKey(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(key, vectorID, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("Sign = %q, want %q", got, vectorSignature)
	}
}

func TestSecretKeyRefusesOtherSecrets(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!"} {
		if _, err := SecretKey(s); err == nil {
			t.Errorf("SecretKey(%q) = nil error", s)
		}
	}
}

func TestEventPayloadIsWhatTheReceiverReads(t *testing.T) {
	var p struct {
		Seq      int64   `json:"seq"`
		CommitNs int64   `json:"committed_at_unix_ns"`
		Key      *string `json:"ordering_key"`
		Signup   struct {
			ID           string `json:"id"`
			ReferralCode string `json:"referral_code"`
		} `json:"signup"`
	}
	if err := json.Unmarshal(eventPayload(42, 1700000000123456789), &p); err != nil {
		t.Fatal(err)
	}
	if p.Seq != 42 || p.CommitNs != 1700000000123456789 || p.Key != nil || p.Signup.ID != "su_42" || p.Signup.ReferralCode != "r00000042" {
		t.Fatalf("payload = %+v", p)
	}
}

func TestNewEventIDIsAVersion4UUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := newEventID(), newEventID()
	if !re.MatchString(a) || a == b {
		t.Fatalf("newEventID = %q, %q", a, b)
	}
}

// TestWorkSendsASignedWebhook runs the worker against a server that checks the request the
// way a Standard Webhooks receiver does, and checks that a non-2xx answer is an error (River
// then retries).
func TestWorkSendsASignedWebhook(t *testing.T) {
	key, err := SecretKey(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	status := http.StatusOK
	var got struct {
		header http.Header
		body   []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.header = r.Header.Clone()
		got.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
	}))
	defer srv.Close()

	w := &WebhookWorker{URL: srv.URL + "/hook/river", Key: key, Client: newHTTPClient(8), UserAgent: "test", RequestTimeout: 5 * time.Second}
	args := newArgs(7, time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC).UnixNano())
	job := &river.Job[WebhookArgs]{JobRow: &rivertype.JobRow{Attempt: 1}, Args: args}
	if err := w.Work(context.Background(), job); err != nil {
		t.Fatalf("Work: %v", err)
	}
	h := got.header
	if h.Get("webhook-id") != args.EventID || h.Get("X-Webhook-Attempt") != "1" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers: %v", h)
	}
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Fatalf("webhook-timestamp %q", h.Get("webhook-timestamp"))
	}
	if want := Sign(key, args.EventID, ts, got.body); h.Get("webhook-signature") != want {
		t.Fatalf("webhook-signature %q, want %q", h.Get("webhook-signature"), want)
	}
	var body struct {
		ID        string          `json:"id"`
		EventType string          `json:"event_type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.ID != args.EventID || body.EventType != "signup.created" || body.Timestamp != "2026-01-02T03:04:05.006Z" || !bytes.Equal(body.Data, args.Payload) {
		t.Fatalf("body %s", got.body)
	}

	status = http.StatusServiceUnavailable
	if err := w.Work(context.Background(), job); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Work on a 503 = %v, want an error", err)
	}
}

func TestPublishReportCountsOneTransactionPerJob(t *testing.T) {
	// The harness subtracts Transactions from pg_stat_database: its JSON names must stay
	// what bench/river.go reads.
	b, err := json.Marshal(publishReport{Events: 2, Publishers: 4, FirstCommitNs: 1, InsertMs: []float64{1, 2}, Transactions: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"events":2`, `"publishers":4`, `"first_commit_unix_ns":1`, `"achieved_events_per_sec"`, `"max_schedule_lag_ms"`, `"insert_ms":[1,2]`, `"transactions":10`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("report %s lacks %s", b, k)
		}
	}
}
