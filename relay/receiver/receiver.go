package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/relay/signature"
)

const (
	// maxBody matches what a webhook receiver would reasonably accept; the relay's bodies
	// are far smaller.
	maxBody = 1 << 20

	// shutdownGrace bounds how long Run waits for requests in flight after ctx ends.
	shutdownGrace = 5 * time.Second

	// defaultAddr is the address `outbox-relay receive` documents.
	defaultAddr = ":3000"
)

// Config configures Run.
type Config struct {
	// Addr is the TCP address to listen on, as for net.Listen ("127.0.0.1:0" picks a free
	// port). Optional: defaults to ":3000".
	Addr string

	// Secrets are the subscription's signing secrets ("whsec_...") or, for a v1a
	// subscription, its public keys ("whpk_..."). A request is accepted when it is signed
	// with any of them; give two during a rotation. Required: at least one.
	Secrets []string

	// Out receives the listening line and one block per request. Optional: defaults to
	// os.Stdout.
	Out io.Writer

	// Logger receives server errors (failed connections, a shutdown that timed out); the
	// requests themselves go to Out. Optional: the zero value logs nothing.
	Logger zerolog.Logger

	// Ready, when set, is called once with the bound address after the listener is open and
	// before Run serves, so a caller that asked for port 0 learns the real one. Optional.
	Ready func(addr net.Addr)
}

// Run serves the receiver on cfg.Addr until ctx ends, then shuts down gracefully within five
// seconds. It returns nil after a clean shutdown, and an error when a secret is invalid, the
// address cannot be bound, the server fails, or requests were still running when the grace
// period ended.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Addr == "" {
		cfg.Addr = defaultAddr
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if len(cfg.Secrets) == 0 {
		return errors.New("receiver: at least one signing secret is required")
	}
	v, err := signature.NewVerifier(cfg.Secrets...)
	if err != nil {
		return fmt.Errorf("receiver: a signing secret is not valid (want whsec_ followed by base64): %w", err)
	}
	logger := cfg.Logger.With().Str("component", "receiver").Logger()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}

	srv := &http.Server{
		Handler:           Handler(v, cfg.Out),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logger, "", 0),
	}

	fmt.Fprintf(cfg.Out, "listening on http://%s, verifying with %d secret(s)\n",
		displayAddr(ln.Addr()), len(cfg.Secrets))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		// Serve only returns early on a listener failure; Shutdown has not been called.
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}

	// ctx is already done, so the grace period needs a context of its own.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		// Requests still running after the grace period are cut off, so that no handler
		// outlives Run.
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	if shutdownErr != nil {
		logger.Warn().Err(shutdownErr).Msg("requests still running after the grace period were cut off")
		return fmt.Errorf("shutting down: %w", shutdownErr)
	}
	return nil
}

// displayAddr turns a wildcard listen address into one a developer can paste into a
// browser or a subscription: "[::]:3000" becomes "localhost:3000".
func displayAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// Handler returns the receiver's http.Handler: it verifies each POST with v and prints it to
// out. Writes to out are serialized, so out need not be safe for concurrent use.
func Handler(v *signature.Verifier, out io.Writer) http.Handler {
	return &handler{verifier: v, out: out, now: time.Now}
}

type handler struct {
	verifier *signature.Verifier
	now      func() time.Time

	mu  sync.Mutex // guards out: one request's block is never split by another's
	out io.Writer
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, "body over 1 MiB")
			return
		}
		h.reject(w, r, http.StatusBadRequest, fmt.Sprintf("reading body: %v", err))
		return
	}

	if err := h.verifier.Verify(r.Header, body); err != nil {
		h.reject(w, r, http.StatusUnauthorized, err.Error())
		return
	}

	// Indent first: whether the body is JSON decides the header line.
	var pretty bytes.Buffer
	status := "signature ok"
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		// Not JSON: still show what arrived, since that is what the developer is debugging.
		status = "signature ok, body is not JSON"
		pretty.Reset()
		pretty.WriteString(printable(string(body)))
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "%s  POST %s  webhook-id=%s  event=%s  attempt=%s  %s\n",
		h.now().Format(time.RFC3339), printable(r.URL.RequestURI()),
		printable(r.Header.Get(signature.HeaderID)),
		printable(orDash(r.Header.Get("X-Webhook-Event"))),
		printable(orDash(r.Header.Get("X-Webhook-Attempt"))),
		status)
	b.Write(pretty.Bytes())
	b.WriteString("\n\n")
	h.print(b.Bytes())
	w.WriteHeader(http.StatusNoContent)
}

// reject answers with a short plain-text reason and prints it, so the developer sees both
// sides of a failed delivery.
func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.print(fmt.Appendf(nil, "REJECTED %s  (%s %s  %s  webhook-id=%s)\n",
		printable(reason), printable(r.Method),
		printable(r.URL.RequestURI()), h.now().Format(time.RFC3339),
		printable(orDash(r.Header.Get(signature.HeaderID)))))
	http.Error(w, reason, status)
}

func (h *handler) print(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A failed write to the terminal is not the sender's problem; the answer stands.
	_, _ = h.out.Write(p)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable escapes control characters (other than newline and tab) and invalid UTF-8, so
// that whatever a sender puts in a header or a non-JSON body cannot drive the developer's
// terminal with escape sequences.
func printable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || (c < ' ' && c != '\n' && c != '\t') || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\t' || unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}
