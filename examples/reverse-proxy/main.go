// Command reverse-proxy is a toy application to put behind outbox-relay in reverse-proxy mode
// (see README.md): its own page on "/", and the forward-auth endpoint "/auth" the relay asks
// who a caller of /webhooks/... is.
//
//	go run ./examples/reverse-proxy              # listens on 127.0.0.1:3000
//	go run ./examples/reverse-proxy -addr 127.0.0.1:3100
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// apiKeys are the application's own customers' API keys and the tenant each belongs to. A
// real application looks them up in its database.
var apiKeys = map[string]string{
	"key_A": "tenant_a",
	"key_B": "tenant_b",
}

// sessions are logged-in browser sessions (cookie "session"), for the dashboard case.
var sessions = map[string]string{
	"sess_A": "tenant_a",
}

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "address to listen on (keep it on loopback: the relay is the way in)")
	flag.Parse()

	srv := &http.Server{Addr: *addr, Handler: newMux(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("application listening on http://%s (/ and /auth)", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newMux is the whole application: its own pages, and the forward-auth endpoint.
func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", home)
	mux.HandleFunc("GET /auth", forwardAuth)
	return mux
}

// home is the application itself: every path the relay does not serve ends up here. It shows
// what arrived, so the pass-through is visible.
func home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "hello from the application\n\n")
	fmt.Fprintf(w, "%s %s\n", r.Method, r.RequestURI)
	fmt.Fprintf(w, "Host:              %s\n", r.Host)
	fmt.Fprintf(w, "X-Forwarded-For:   %s\n", r.Header.Get("X-Forwarded-For"))
	fmt.Fprintf(w, "X-Forwarded-Proto: %s\n", r.Header.Get("X-Forwarded-Proto"))
	fmt.Fprintf(w, "X-Forwarded-Host:  %s\n", r.Header.Get("X-Forwarded-Host"))
}

// forwardAuth is what RELAY_AUTH_URL points at. The relay sends the caller's Authorization
// and Cookie headers (and X-Forwarded-* for context); the answer is 204 with X-Tenant-ID to
// let the caller in as that tenant, or 401 to refuse. It must decide on the credentials
// alone: the relay caches the answer per credential for RELAY_AUTH_CACHE_TTL.
func forwardAuth(w http.ResponseWriter, r *http.Request) {
	tenant := ""
	if key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		tenant = apiKeys[strings.TrimSpace(key)]
	} else if c, err := r.Cookie("session"); err == nil {
		tenant = sessions[c.Value]
	}
	log.Printf("auth: %s %s -> tenant %q", r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Forwarded-Uri"), tenant)
	if tenant == "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-Tenant-ID", tenant)
	w.WriteHeader(http.StatusNoContent)
}
