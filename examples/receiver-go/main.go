// Command receiver-go is a webhook receiver for outbox-relay in plain net/http. It verifies
// each request with the relay's own package, relay/signature, and does the four things every
// receiver should do, in this order:
//
//  1. verify the Standard Webhooks signature over the raw body, and answer 401 when it does
//     not match;
//  2. drop a webhook-id it has already accepted (the relay delivers at least once, so a
//     retry after a lost answer can repeat an event);
//  3. answer 204 at once, well inside the relay's delivery timeout (5s by default);
//  4. do the real work afterwards (a worker goroutine here; a job queue in production).
//
// It prints one line per request to stdout:
//
//	accepted <webhook-id> <event-type>
//	duplicate <webhook-id>
//	rejected <reason>
//
// Run it with:
//
//	WEBHOOK_SECRET=whsec_... PORT=3000 go run ./examples/receiver-go
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/referralloop/outbox-relay/relay/signature"
)

// maxBody leaves room above the relay's default RELAY_MAX_PAYLOAD_BYTES (256 KiB) for the
// envelope.
const maxBody = 1 << 20

// event is the webhook body, as far as this receiver reads it.
type event struct {
	ID        string          `json:"id"`
	EventType string          `json:"event_type"`
	Timestamp string          `json:"timestamp"`
	TenantID  string          `json:"tenant_id,omitempty"`
	Data      json.RawMessage `json:"data"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "receiver-go:", err)
		os.Exit(1)
	}
}

func run() error {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		return errors.New("WEBHOOK_SECRET is required (the subscription's whsec_... secret)")
	}
	verifier, err := signature.NewVerifier(secret)
	if err != nil {
		return fmt.Errorf("WEBHOOK_SECRET: %w", err)
	}
	maxSeen := 10000
	if v := os.Getenv("MAX_SEEN"); v != "" {
		if maxSeen, err = strconv.Atoi(v); err != nil || maxSeen < 1 {
			return fmt.Errorf("MAX_SEEN: want a positive integer, got %q", v)
		}
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":" + cmp.Or(os.Getenv("PORT"), "3000")
	}

	jobs := make(chan event, 1024)
	h := &handler{verifier: verifier, seen: newSeenIDs(maxSeen), jobs: jobs, out: os.Stdout}
	var workers sync.WaitGroup
	workers.Go(func() {
		for ev := range jobs {
			process(ev)
		}
	})

	mux := http.NewServeMux()
	mux.Handle("POST /webhooks", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(os.Stderr, "receiver-go: listening on %s, POST /webhooks\n", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Finish the requests in flight and the work already accepted, then exit.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	close(jobs)
	workers.Wait()
	return err
}

// handler verifies, dedupes, answers and hands the event to the worker.
type handler struct {
	verifier *signature.Verifier
	seen     *seenIDs
	jobs     chan<- event
	mu       sync.Mutex // one printed line at a time
	out      io.Writer
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The signature covers the body's exact bytes: read them raw, never re-encode.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.printf("rejected reading body: %v", err)
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	if err := h.verifier.Verify(r.Header, body); err != nil {
		h.printf("rejected %v", err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		h.printf("rejected body is not JSON: %v", err)
		http.Error(w, "body is not JSON", http.StatusBadRequest)
		return
	}

	id := r.Header.Get(signature.HeaderID)
	if !h.seen.add(id) {
		h.printf("duplicate %s", id)
		w.WriteHeader(http.StatusNoContent) // 2xx, so the relay stops sending it
		return
	}
	// Only the body is signed: the event type comes from it, not from X-Webhook-Event.
	h.printf("accepted %s %s", id, ev.EventType)
	w.WriteHeader(http.StatusNoContent)
	h.jobs <- ev
}

func (h *handler) printf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, format+"\n", args...)
}

// process is the application's work: update a CRM, send an email, adjust a projection.
// ev.EventType is e.g. "signup.created", "signup.position_changed" or "signup.deleted";
// ev.Data is the payload the application wrote into relay.outbox. It runs after the answer
// has gone out, so a slow step never makes the relay time out and retry.
func process(ev event) {
	_ = ev
}

// seenIDs holds the webhook-ids already accepted, forgetting the oldest beyond a bound.
//
// Memory is enough for an example and for one process. In production, insert the id into a
// table with a unique key, in the same transaction as the work the event causes, and treat a
// unique violation as "duplicate": that survives restarts and works across replicas.
type seenIDs struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string // a ring of the ids in ids, oldest at next
	next  int
}

func newSeenIDs(limit int) *seenIDs {
	return &seenIDs{ids: make(map[string]struct{}, limit), order: make([]string, 0, limit)}
}

// add records id and reports whether it was new.
func (s *seenIDs) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return false
	}
	if len(s.order) < cap(s.order) {
		s.order = append(s.order, id)
	} else {
		delete(s.ids, s.order[s.next])
		s.order[s.next] = id
		s.next = (s.next + 1) % len(s.order)
	}
	s.ids[id] = struct{}{}
	return true
}
