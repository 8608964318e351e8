package main

// Hostile receivers against the real binary: answers whose bytes PostgreSQL cannot store
// must never stop delivery for anyone else.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// rawResponder answers every request on a plain TCP listener with response, byte for byte,
// whatever net/http would allow, and closes the connection.
func rawResponder(t *testing.T, response string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, response)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// nulNameTLS serves HTTPS with a self-signed certificate whose only DNS name holds a NUL:
// the relay's certificate check fails with an error text that quotes it.
func nulNameTLS(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "evil\x00name"},
		DNSNames:     []string{"evil\x00name.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	// By name, so that the check compares names (and quotes the certificate's).
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	return "https://localhost:" + port
}

func TestHostileAnswersNeverStopDelivery(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	healthy := newCountingReceiver(t, 0)

	invalidLocation := rawResponder(t, "HTTP/1.1 302 Found\r\nLocation: /\xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	// Valid UTF-8 whose 200th byte is the middle of a character: a byte cut splits it.
	long := "/" + strings.Repeat("a", 198) + "é" + strings.Repeat("b", 50)
	longLocation := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", long)
		w.WriteHeader(http.StatusFound)
	}))
	t.Cleanup(longLocation.Close)
	nulCert := nulNameTLS(t)

	// A generous timeout: the answers here are immediate, but sixteen TLS handshakes at once
	// under the race detector on a loaded CI machine once took longer than 2s, and a timeout
	// would replace the certificate error this test reads.
	p := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=", "RELAY_DELIVERY_TIMEOUT=10s")
	targets := map[string]string{
		"invalid_location": invalidLocation + "/hook",
		"long_location":    longLocation.URL + "/hook",
		"nul_certificate":  nulCert + "/hook",
		"healthy":          healthy.URL + "/hook",
	}
	subs := map[string]string{}
	for name, url := range targets {
		status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"target_url": url, "event_types": []string{"*"}, "description": name})
		require.Equal(t, http.StatusCreated, status, "%s: %v", name, created)
		subs[name] = created["id"].(string)
	}

	const events = 60
	insertEvents(t, db, events, 10)
	relaytest.Eventually(t, 60*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`) == 4*events
	}, "not every delivery ended: %d of %d\n%s", countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`), 4*events, tail(p.Output(), 30))

	pairs, dups := healthy.duplicates()
	require.Equal(t, events, pairs, "every healthy event arrived")
	require.Zero(t, dups, "and once: no batch was sent again for want of a record")
	require.Equal(t, events, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE subscription_id = $1 AND status = 'succeeded'`, subs["healthy"]))

	for name, want := range map[string]string{
		"invalid_location": "(Location: /\uFFFD\uFFFD)",
		"long_location":    "(Location: /" + strings.Repeat("a", 196) + "…)",
		"nul_certificate":  "evil\uFFFDname.example",
	} {
		t.Run(name, func(t *testing.T) {
			var errs []string
			require.NoError(t, db.Select(&errs, `SELECT a.error FROM relay.attempts a JOIN relay.deliveries d ON d.id = a.delivery_id
				WHERE d.subscription_id = $1 AND d.status = 'failed'`, subs[name]))
			require.Len(t, errs, events, "every bad delivery ended with its attempt recorded")
			for _, e := range errs {
				require.True(t, utf8.ValidString(e))
				require.Contains(t, e, want)
			}
		})
	}
	status, why := p.readyz(t)
	require.Equal(t, http.StatusOK, status, why)
	require.NotContains(t, p.Output(), "invalid byte sequence", "no batch was refused: every text was made storable first")
}

// With the process out of file descriptors (hanging receivers hold them), a request that
// cannot even open its socket is a fault of the relay, not of the receiver: no attempt is
// recorded against anyone, the delivery waits, the local-fault metric counts it, and once
// descriptors are free again everything is delivered, each healthy event as its attempt 1.
func TestLocalFaultIsNeverChargedToTheReceiver(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatal("needs prlimit (Debian: apt-get install util-linux)")
	}
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(hang.Close)
	healthy := newCountingReceiver(t, 0)
	const hanging, events = 15, 20
	for i := range hanging {
		addSubscription(t, db, fmt.Sprintf("%s/hang/%d", hang.URL, i))
	}
	healthyID := addSubscription(t, db, healthy.URL+"/hook")

	// 15 x 16 hanging requests need more descriptors than the process may open.
	p := startRelayWith(t, []string{"prlimit", "--nofile=200:200", "--"}, dsn,
		"RELAY_WORKERS=300", "RELAY_DELIVERY_TIMEOUT=3s", "RELAY_RETRY_SCHEDULE=", "RELAY_LOG_LEVEL=info")
	insertEvents(t, db, events, events)
	relaytest.Eventually(t, 90*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`) == (hanging+1)*events
	}, "not every delivery ended:\n%s", tail(p.Output(), 20))

	require.Contains(t, p.Output(), "too many open files", "the test did not exhaust the descriptors")
	require.Contains(t, p.Output(), "request failed for a reason of this process")
	require.Zero(t, countWhere(t, db, `SELECT count(*) FROM relay.attempts WHERE error LIKE '%too many open files%'`),
		"a local fault was recorded as an attempt against a receiver")
	require.Equal(t, events, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE subscription_id = $1 AND status = 'succeeded' AND attempt_count = 1`, healthyID),
		"every healthy event delivered with its first attempt")
	pairs, dups := healthy.duplicates()
	require.Equal(t, events, pairs)
	require.Zero(t, dups)
	require.Equal(t, hanging*events, countWhere(t, db, `SELECT count(*) FROM relay.attempts WHERE error LIKE 'timeout:%'`),
		"the hanging receivers are charged their own timeouts, once each")

	resp, err := opsClient.Get(p.opsURL + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	m := regexp.MustCompile(`outbox_relay_local_faults_total\{kind="resources"\} (\d+)`).FindSubmatch(body)
	require.NotNil(t, m, "%s", body)
	require.NotEqual(t, "0", string(m[1]))
}

// An outbox row that is no time (created_at 'infinity', written before the outbox's CHECK
// existed) fails only its own deliveries, with an error that says why; rows claimed with it
// go out. New rows like it are refused by the table.
func TestNonFiniteCreatedAtFailsOnlyItsOwnDeliveries(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 0)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn)

	_, err := db.Exec(`INSERT INTO relay.outbox (event_type, payload, created_at) VALUES ('signup.created', '{}', 'infinity')`)
	require.ErrorContains(t, err, "outbox_created_at_check")

	_, err = db.Exec(`BEGIN;
		ALTER TABLE relay.outbox DROP CONSTRAINT outbox_created_at_check;
		INSERT INTO relay.outbox (event_type, payload, created_at)
		SELECT 'signup.created', jsonb_build_object('seq', g), CASE WHEN g = 3 THEN 'infinity'::timestamptz ELSE now() END
		FROM generate_series(1, 5) g;
		ALTER TABLE relay.outbox ADD CONSTRAINT outbox_created_at_check CHECK (isfinite(created_at) OR dispatched_at IS NOT NULL) NOT VALID;
		COMMIT;`)
	require.NoError(t, err)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`) == 5
	}, "not every delivery ended:\n%s", tail(p.Output(), 20))
	pairs, _ := rc.duplicates()
	require.Equal(t, 4, pairs, "the four good rows went out")
	var msg string
	require.NoError(t, db.Get(&msg, `SELECT a.error FROM relay.attempts a JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.status = 'failed'`))
	require.Contains(t, msg, "created_at is not a finite time")
	status, why := p.readyz(t)
	require.Equal(t, http.StatusOK, status, why)
}
