package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The receiver runs in its own process ("bench receiver"), so that its CPU is neither the
// relay's nor the harness's. It answers every webhook with 200 and an empty body at once
// (POST /hook/<name>), or after -slow-delay (POST /slow/<name>), and records one receipt per
// request. The harness reads the records back over HTTP, by path prefix, so that a scenario
// with thousands of subscriptions (one path each) polls one small answer, not one per path:
//
//	GET /counts?prefix=<p>     totals over the paths that start with p:
//	                           {"paths", "requests", "distinct", "min_distinct", "last_arrival_unix_ns"}
//	GET /receipts?prefix=<p>   {"<path>": [every receipt for that path, in arrival order], ...}
//
// Signatures are not verified: the relay's own tests do that, and HMAC checking would add the
// receiver's CPU to a machine the relay shares.

// receipt is one request as the receiver saw it.
type receipt struct {
	EventID string `json:"event_id"`
	// Seq, CommitNs and Key come from the event's payload (the harness wrote them).
	Seq      int64  `json:"seq"`
	CommitNs int64  `json:"commit_ns"`
	Key      string `json:"key,omitempty"`
	// ArrivalNs is the receiver's wall clock when the request's headers had been read.
	ArrivalNs int64 `json:"arrival_ns"`
	// Order is the receipt's position among all requests to the receiver (1, 2, ...).
	Order   int64  `json:"order"`
	Attempt string `json:"attempt"`
}

// totals is what /counts answers for the paths that share a prefix.
type totals struct {
	Paths    int `json:"paths"` // paths that received at least one request
	Requests int `json:"requests"`
	// Distinct is the sum over the paths of their distinct event IDs; MinDistinct the
	// smallest of them (0 when no path received anything).
	Distinct    int   `json:"distinct"`
	MinDistinct int   `json:"min_distinct"`
	LastArrival int64 `json:"last_arrival_unix_ns"`
}

type recorder struct {
	mu     sync.Mutex
	order  int64
	byPath map[string]*pathLog
}

type pathLog struct {
	receipts []receipt
	seen     map[string]struct{}
	last     int64
}

func (rec *recorder) add(path string, r receipt) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.order++
	r.Order = rec.order
	l := rec.byPath[path]
	if l == nil {
		l = &pathLog{seen: map[string]struct{}{}}
		rec.byPath[path] = l
	}
	l.receipts = append(l.receipts, r)
	l.seen[r.EventID] = struct{}{}
	l.last = max(l.last, r.ArrivalNs)
}

// webhookBody is the part of the relay's body the receiver reads.
type webhookBody struct {
	ID   string `json:"id"`
	Data struct {
		Seq      int64  `json:"seq"`
		CommitNs int64  `json:"committed_at_unix_ns"`
		Key      string `json:"ordering_key"`
	} `json:"data"`
}

// runReceiver is the "bench receiver" command.
func runReceiver(args []string) error {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	slow := fs.Duration("slow-delay", 2*time.Second, "how long /slow/ paths take to answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	rec := &recorder{byPath: map[string]*pathLog{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook/", func(w http.ResponseWriter, r *http.Request) { rec.serve(w, r, 0) })
	mux.HandleFunc("POST /slow/", func(w http.ResponseWriter, r *http.Request) { rec.serve(w, r, *slow) })
	mux.HandleFunc("GET /counts", rec.counts)
	mux.HandleFunc("GET /receipts", rec.dump)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	// The harness reads this line to learn the port.
	fmt.Printf("listening %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (rec *recorder) serve(w http.ResponseWriter, r *http.Request, delay time.Duration) {
	arrival := time.Now().UnixNano()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	// Answer first, complete (Content-Length 0), then parse: the relay's request is over
	// before the receiver spends anything on bookkeeping.
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()

	var b webhookBody
	_ = json.Unmarshal(body, &b)
	if b.ID == "" {
		b.ID = r.Header.Get("webhook-id")
	}
	rec.add(r.URL.Path, receipt{
		EventID:   b.ID,
		Seq:       b.Data.Seq,
		CommitNs:  b.Data.CommitNs,
		Key:       b.Data.Key,
		ArrivalNs: arrival,
		Attempt:   r.Header.Get("X-Webhook-Attempt"),
	})
}

// total sums the paths that start with prefix. It walks every path, which for a few
// thousand paths takes microseconds: cheaper than keeping totals per prefix as requests come.
func (rec *recorder) total(prefix string) totals {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var t totals
	for p, l := range rec.byPath {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		n := len(l.seen)
		if t.Paths == 0 || n < t.MinDistinct {
			t.MinDistinct = n
		}
		t.Paths++
		t.Requests += len(l.receipts)
		t.Distinct += n
		t.LastArrival = max(t.LastArrival, l.last)
	}
	return t
}

func (rec *recorder) counts(w http.ResponseWriter, r *http.Request) {
	t := rec.total(r.URL.Query().Get("prefix"))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(t)
}

func (rec *recorder) dump(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	rec.mu.Lock()
	out := map[string][]receipt{}
	for p, l := range rec.byPath {
		if strings.HasPrefix(p, prefix) {
			out[p] = slices.Clone(l.receipts)
		}
	}
	rec.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// receiverProc is the harness's handle on a running receiver process.
type receiverProc struct {
	proc *child
	base string // http://127.0.0.1:port
	http *http.Client
}

// startReceiver re-executes this program as "bench receiver" and waits for its address.
func startReceiver(ctx context.Context, self, logPath string) (*receiverProc, error) {
	cmd := exec.Command(self, "receiver", "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	c, err := startChild(cmd, "receiver", logFile)
	if err != nil {
		return nil, err
	}
	lines := bufio.NewReader(stdout)
	type answer struct {
		line string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		line, err := lines.ReadString('\n')
		got <- answer{line, err}
		_, _ = io.Copy(logFile, lines)
	}()
	select {
	case a := <-got:
		addr, ok := strings.CutPrefix(strings.TrimSpace(a.line), "listening ")
		if a.err != nil || !ok {
			c.stop(time.Second)
			return nil, fmt.Errorf("starting receiver: unexpected first line %q (%v); see %s", a.line, a.err, logPath)
		}
		return &receiverProc{proc: c, base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}, nil
	case <-time.After(15 * time.Second):
		c.stop(time.Second)
		return nil, errors.New("starting receiver: no address within 15s")
	case <-ctx.Done():
		c.stop(time.Second)
		return nil, ctx.Err()
	}
}

// URL is the target URL for a receiver path such as "/hook/s0".
func (r *receiverProc) URL(path string) string { return r.base + path }

// counts returns the totals over the paths that start with prefix.
func (r *receiverProc) counts(ctx context.Context, prefix string) (totals, error) {
	var out totals
	return out, r.get(ctx, "/counts?prefix="+url.QueryEscape(prefix), &out)
}

// receipts returns every receipt of the paths that start with prefix, by path.
func (r *receiverProc) receipts(ctx context.Context, prefix string) (map[string][]receipt, error) {
	var out map[string][]receipt
	return out, r.get(ctx, "/receipts?prefix="+url.QueryEscape(prefix), &out)
}

func (r *receiverProc) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("asking the receiver: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("asking the receiver: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
