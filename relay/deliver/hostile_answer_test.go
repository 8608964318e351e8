package deliver

// Hostile answers through the send-and-record path against a real database: whatever bytes
// a receiver puts on the wire (status line, headers, body) and whatever a TLS handshake
// quotes (a certificate's name), the attempt is recorded as send made it, and the delivery
// ends or waits for its next attempt, never stays leased.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgtext"
	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/signature"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// answerKind is how the receiver's listener meets the relay's connection.
type answerKind byte

const (
	// plainAnswer: http://, the raw answer on the TCP connection.
	plainAnswer answerKind = iota
	// trustedTLS: https://localhost, a certificate named after the input and signed by a
	// CA the client trusts, so a matching name gets through to the raw answer and any
	// other fails the name check, whose error text quotes the certificate's names.
	trustedTLS
	// untrustedTLS: https://localhost, the same certificate signed by a CA nobody trusts.
	untrustedTLS
	// plainToTLS: https:// to a listener that answers in the clear.
	plainToTLS
)

// hostileAnswer is one input: the answer's bytes as they go on the wire, how the listener
// serves them, the certificate's name, and whether the attempt is the delivery's last.
type hostileAnswer struct {
	raw      []byte
	kind     answerKind
	certName string
	last     bool
}

// mode packs kind and last into the fuzz target's one-byte selector.
func (a hostileAnswer) mode() byte {
	m := byte(a.kind)
	if a.last {
		m |= 4
	}
	return m
}

func answerFromFuzz(raw []byte, mode byte, certName string) hostileAnswer {
	return hostileAnswer{raw: raw, kind: answerKind(mode % 4), certName: certName, last: mode&4 != 0}
}

// hostileRetryDelay is the one delay of the schedule: attempt 1 is retried, attempt 2 is the
// last.
const hostileRetryDelay = 5 * time.Second

// recordBudget bounds writeWithRetry for one result: a refused text must be split out or
// replaced, never retried as it is until shutdown.
const recordBudget = 5 * time.Second

// answerHarness sends one delivery at a time, through the deliverer's own claim, lane, send
// and record steps, to a listener that answers with the current input's bytes.
type answerHarness struct {
	db     *sqlx.DB
	d      *Deliverer
	client *http.Client
	port   string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	// rogue signs certificates the client does not trust.
	rogue    *x509.Certificate
	rogueKey *ecdsa.PrivateKey
	// current is what the listener serves the next connection.
	current atomic.Pointer[served]
}

// served is what the listener does with a connection: answer raw, after a TLS handshake
// with config when it is set.
type served struct {
	raw    []byte
	config *tls.Config
}

// newAnswerHarness starts the listener and builds the deliverer on db. Everything it starts
// ends with tb.
func newAnswerHarness(tb testing.TB, db *sqlx.DB) *answerHarness {
	tb.Helper()
	h := &answerHarness{db: db}
	h.ca, h.caKey = newCA(tb, "hostile answers CA")
	h.rogue, h.rogueKey = newCA(tb, "rogue CA")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	_, h.port, err = net.SplitHostPort(ln.Addr().String())
	require.NoError(tb, err)
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				h.serve(c, h.current.Load())
			}()
		}
	}()

	roots := x509.NewCertPool()
	roots.AddCert(h.ca)
	client, err := egress.New(egress.Config{Workers: 1, Policy: targets.Policy{AllowPrivate: true}, RootCAs: roots})
	require.NoError(tb, err)
	h.client = client
	tb.Cleanup(func() {
		ln.Close()
		conns.Wait()
		h.client.CloseIdleConnections()
	})

	h.d, err = New(Config{
		DB:              db,
		DeliveryIDs:     relaytest.DeliveryIDs(tb, db),
		Owner:           "hostile-" + ids.NewSubscriptionID(),
		UserAgent:       "outbox-relay/test",
		Workers:         1,
		DeliveryTimeout: 2 * time.Second,
		RetrySchedule:   []time.Duration{hostileRetryDelay},
		Client:          h.client,
		Logger:          zerolog.Nop(),
	})
	require.NoError(tb, err)
	return h
}

// serve answers one connection. It reads the request first, so that closing after the answer
// is an orderly end and not a reset that would hide the answer from the client.
func (h *answerHarness) serve(c net.Conn, s *served) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if s == nil {
		return
	}
	if s.config != nil {
		tc := tls.Server(c, s.config)
		defer tc.Close()
		if err := tc.Handshake(); err != nil {
			return
		}
		c = tc
	}
	if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	_, _ = c.Write(s.raw)
}

func newCA(tb testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(tb, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(tb, err)
	return cert, key
}

// leafConfig is a server configuration whose certificate, signed by ca, is named name as
// far as a certificate can be: its DNS name takes the ASCII bytes (NUL included, which is
// what reaches the client's error text), its common name the rest.
func leafConfig(tb testing.TB, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) *tls.Config {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: strings.ToValidUTF8(name, "\uFFFD")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ascii := strings.Map(func(r rune) rune {
		if r > 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, "")); ascii != "" {
		tmpl.DNSNames = []string{ascii}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		// A name x509 will not encode: the certificate goes without it.
		tmpl.Subject, tmpl.DNSNames = pkix.Name{}, nil
		der, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	}
	require.NoError(tb, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// attemptRecord is what the attempt log and the delivery hold after one attempt.
type attemptRecord struct {
	res        result
	status     string
	statusCode sql.NullInt64
	err        sql.NullString
	response   sql.NullString
	subStatus  string
}

// run sends a to a new subscription as one delivery's attempt, records it, checks what
// every answer must leave behind, and removes the rows again.
func (h *answerHarness) run(t *testing.T, a hostileAnswer) attemptRecord {
	t.Helper()
	ctx := context.Background()
	s := &served{raw: a.raw}
	host := "127.0.0.1"
	scheme := "http"
	switch a.kind {
	case trustedTLS:
		s.config = leafConfig(t, a.certName, h.ca, h.caKey)
		scheme, host = "https", "localhost" // by name, so the name check compares names
	case untrustedTLS:
		s.config = leafConfig(t, a.certName, h.rogue, h.rogueKey)
		scheme, host = "https", "localhost"
	case plainToTLS:
		scheme = "https"
	}
	h.current.Store(s)
	// An idle connection to the listener is one it already closed: each attempt dials.
	h.client.CloseIdleConnections()

	t.Cleanup(func() {
		_, err := h.db.Exec(`DELETE FROM relay.deliveries; DELETE FROM relay.subscriptions; DELETE FROM relay.outbox`)
		require.NoError(t, err)
	})
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	subID := ids.NewSubscriptionID()
	_, err = h.db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, secret) VALUES ($1, $2, '{hostile.answer}', $3)`,
		subID, fmt.Sprintf("%s://%s/hook", scheme, net.JoinHostPort(host, h.port)), secret)
	require.NoError(t, err)
	attempt := 1
	if a.last {
		attempt = 1 + len(h.d.cfg.RetrySchedule)
	}
	var deliveryID int64
	require.NoError(t, h.db.Get(&deliveryID, `
		WITH o AS (
		    INSERT INTO relay.outbox (event_type, payload, dispatched_at) VALUES ('hostile.answer', '{}', now())
		    RETURNING id, event_id
		)
		INSERT INTO relay.deliveries (event_id, outbox_id, subscription_id, attempt_count, next_attempt_at)
		SELECT event_id, id, $1, $2, now() FROM o
		RETURNING id`, subID, attempt-1))

	// As the claim loop and a worker do it.
	jobs, err := h.d.claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	h.d.queue(jobs)
	j := h.d.lanes.next()
	require.Equal(t, deliveryID, j.deliveryID)
	require.Equal(t, attempt, j.attempt)
	started := time.Now()
	res := h.d.send(ctx, j)
	h.d.lanes.finished(j, res.duration, false)
	require.Less(t, time.Since(started), h.d.cfg.DeliveryTimeout+time.Second, "send outlived its timeout")
	requireStorable(t, "error", res.err, errorLogLimit)
	requireStorable(t, "response", res.response, responseLogLimit)

	done := make(chan struct{})
	go func() {
		defer close(done)
		h.d.writeWithRetry([]result{res})
	}()
	select {
	case <-done:
	case <-time.After(recordBudget):
		t.Fatalf("recording the attempt did not end within %s: it is being retried as it is (error %q, response %q)", recordBudget, res.err, res.response)
	}

	rec := attemptRecord{res: res}
	require.NoError(t, h.db.QueryRow(`SELECT status_code, error, response_body FROM relay.attempts WHERE delivery_id = $1 AND attempt = $2`,
		deliveryID, attempt).Scan(&rec.statusCode, &rec.err, &rec.response), "the attempt was not recorded")
	// Stored as send made it: the net below, which replaces a refused row's texts, was not
	// needed.
	require.Equal(t, sql.NullInt64{Int64: int64(res.statusCode), Valid: res.statusCode != 0}, rec.statusCode)
	require.Equal(t, sql.NullString{String: res.err, Valid: res.err != ""}, rec.err)
	require.Equal(t, sql.NullString{String: res.response, Valid: res.statusCode != 0}, rec.response)
	requireStorable(t, "stored error", rec.err.String, errorLogLimit)
	requireStorable(t, "stored response", rec.response.String, responseLogLimit)

	var del struct {
		Status       string `db:"status"`
		AttemptCount int    `db:"attempt_count"`
		Due          *bool  `db:"due_later"`
		Leased       bool   `db:"leased"`
	}
	require.NoError(t, h.db.Get(&del, `SELECT status, attempt_count, next_attempt_at > now() AS due_later,
		lease_owner IS NOT NULL OR lease_until IS NOT NULL AS leased FROM relay.deliveries WHERE id = $1`, deliveryID))
	require.NoError(t, h.db.Get(&rec.subStatus, `SELECT status FROM relay.subscriptions WHERE id = $1`, subID))
	rec.status = del.Status
	require.False(t, del.Leased, "the delivery is still leased")
	require.Equal(t, attempt, del.AttemptCount)
	switch {
	case res.err == "" && res.statusCode >= 200 && res.statusCode < 300:
		require.Equal(t, "succeeded", del.Status)
	case res.statusCode == http.StatusGone, a.last:
		require.Equal(t, "failed", del.Status)
	default:
		require.Equal(t, "pending", del.Status)
		require.NotNil(t, del.Due)
		require.True(t, *del.Due, "the next attempt is not scheduled")
	}
	if del.Status != "pending" {
		require.Nil(t, del.Due, "an ended delivery has no next attempt")
	}
	if del.Status == "failed" {
		var lastError sql.NullString
		require.NoError(t, h.db.QueryRow(`SELECT payload->>'last_error' FROM relay.outbox WHERE event_type = 'delivery.failed' AND payload->>'subscription_id' = $1`,
			subID).Scan(&lastError), "no delivery.failed event")
		require.Equal(t, sql.NullString{String: res.err, Valid: true}, lastError)
	}
	return rec
}

// requireStorable checks that s is a text PostgreSQL stores as it is, within limit bytes.
func requireStorable(t *testing.T, what, s string, limit int) {
	t.Helper()
	require.True(t, utf8.ValidString(s), "%s is not valid UTF-8: %q", what, s)
	require.NotContains(t, s, "\x00", "%s holds a NUL: %q", what, s)
	require.LessOrEqual(t, len(s), limit, "%s is longer than %d bytes: %q", what, limit, s)
}

// body1KiBSplit is a body whose 1024th byte is the first of a two-byte character.
var body1KiBSplit = strings.Repeat("a", responseLogLimit-1) + "é" + "rest"

// hostileAnswers are the named cases: the table test checks what each leaves behind, and
// they seed FuzzHostileAnswer.
var hostileAnswers = []struct {
	name   string
	answer hostileAnswer
	// status is the delivery's status afterwards, code the recorded status code (0: none).
	status string
	code   int
	// errHas is a part of the recorded error ("" for none), response the recorded body.
	errHas   string
	response string
	check    func(t *testing.T, h *answerHarness, rec attemptRecord)
}{
	{
		name:   "ReasonPhraseInvalidUTF8AndNUL",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 500 Bro\xff\xfeken\x00 phrase\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", code: 500, errHas: "HTTP 500",
	},
	{
		name:   "LocationInvalidUTF8AndNUL",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 302 Found\r\nLocation: /a\xff\x00b\r\nContent-Length: 0\r\n\r\n")},
		// net/http refuses a header line with a NUL, and quotes it.
		status: "pending", errHas: "malformed MIME header line",
	},
	{
		// From the field: these two bytes in one Location made the database refuse the
		// whole batch.
		name:   "LocationBytesFFFE",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 302 Found\r\nLocation: /\xff\xfe\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", code: 302, errHas: "(Location: /\uFFFD\uFFFD)",
	},
	{
		name:   "Location300BytesOfMultibyte",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 301 Moved\r\nLocation: /" + strings.Repeat("€", 100) + "\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", code: 301, errHas: "(Location: /" + strings.Repeat("€", 65) + pgtext.Ellipsis + ")",
	},
	{
		// From the field: valid UTF-8 whose 200th byte is in the middle of a character.
		name:   "LocationCharacterStraddlesByte200",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 302 Found\r\nLocation: /" + strings.Repeat("a", 198) + "é" + strings.Repeat("b", 50) + "\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", code: 302, errHas: "(Location: /" + strings.Repeat("a", 196) + pgtext.Ellipsis + ")",
	},
	{
		name:   "OtherHeaderInvalidUTF8",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 503 Busy\r\nX-Reason: \xff\xfe\r\nContent-Length: 2\r\n\r\nno")},
		status: "pending", code: 503, errHas: "HTTP 503", response: "no",
	},
	{
		name:   "OtherHeaderNUL",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 200 OK\r\nX-Reason: \xff\x00\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", errHas: "malformed MIME header line",
	},
	{
		name:   "BodyInvalidUTF8AndNUL",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 500 Oops\r\nContent-Length: 12\r\n\r\nab\xff\xfe\x00cd\xc3\x28\xe2!")},
		status: "pending", code: 500, errHas: "HTTP 500", response: "ab\uFFFD\uFFFD\uFFFDcd\uFFFD(\uFFFD!",
	},
	{
		name:   "NoStatusLine",
		answer: hostileAnswer{raw: nil},
		status: "pending", errHas: "connection closed by the receiver before a response",
	},
	{
		name:   "GarbageForStatusLine",
		answer: hostileAnswer{raw: []byte("\xff\xfe\x00 not http\r\n\r\n")},
		status: "pending", errHas: "malformed HTTP",
	},
	{
		name:   "BodyEndsMidCharacterAtTheLimit",
		answer: hostileAnswer{raw: []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body1KiBSplit), body1KiBSplit))},
		status: "succeeded", code: 200, response: strings.Repeat("a", responseLogLimit-1),
	},
	{
		name:   "RetryAfterGarbage",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 429 Slow down\r\nRetry-After: soon\xff\xfe, maybe\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", code: 429, errHas: "HTTP 429",
		check: func(t *testing.T, h *answerHarness, rec attemptRecord) {
			require.Zero(t, rec.res.retryAfter, "garbage asks for no particular delay")
		},
	},
	{
		name:   "Gone",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 410 Gone\r\nContent-Length: 4\r\n\r\ngone")},
		status: "failed", code: 410, errHas: "HTTP 410", response: "gone",
		check: func(t *testing.T, h *answerHarness, rec attemptRecord) {
			require.Equal(t, "disabled", rec.subStatus)
		},
	},
	{
		name:   "TooManyRequestsWithRetryAfter",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n")},
		status: "pending", code: 429, errHas: "HTTP 429",
		check: func(t *testing.T, h *answerHarness, rec attemptRecord) {
			require.Equal(t, 120*time.Second, rec.res.retryAfter)
			var wait float64
			require.NoError(t, h.db.Get(&wait, `SELECT extract(epoch FROM max(next_attempt_at) - now()) FROM relay.deliveries`))
			require.InDelta(t, 120, wait, 10, "the next attempt waits as long as the receiver asked")
		},
	},
	{
		name:   "TruncatedChunkedBody",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nab\xff\x00")},
		status: "succeeded", code: 200, response: "ab\uFFFD\uFFFD",
	},
	{
		name:   "ClosedMidHeaders",
		answer: hostileAnswer{raw: []byte("HTTP/1.1 200 OK\r\nContent-Type: appl")},
		status: "pending", errHas: "connection closed by the receiver before a response",
	},
	{
		// From the field: the name check's error quotes the certificate's names.
		name:   "CertificateNameWithNUL",
		answer: hostileAnswer{kind: trustedTLS, certName: "evil\x00name.example"},
		status: "pending", errHas: "evil\uFFFDname.example",
	},
	{
		name:   "UntrustedCertificate",
		answer: hostileAnswer{kind: untrustedTLS, certName: "localhost"},
		status: "pending", errHas: "certificate signed by unknown authority",
	},
	{
		name:   "TrustedCertificateThenHostileBody",
		answer: hostileAnswer{kind: trustedTLS, certName: "localhost", raw: []byte("HTTP/1.1 500 Oops\r\nLocation: /\xff\r\n\r\n\x00\xff")},
		status: "pending", code: 500, errHas: "HTTP 500", response: "\uFFFD\uFFFD",
	},
	{
		name:   "ClearTextAnswerToTLS",
		answer: hostileAnswer{kind: plainToTLS, raw: []byte("HTTP/1.1 200 OK\r\n\xff\x00\r\n\r\n")},
		status: "pending", errHas: "server gave HTTP response to HTTPS client",
	},
	{
		name:   "TLSAlertForHandshake",
		answer: hostileAnswer{kind: plainToTLS, raw: []byte("\x15\x03\x03\x00\x02\x02\x28")},
		status: "pending", errHas: "tls: ",
	},
	{
		name:   "LastAttemptFailsForGood",
		answer: hostileAnswer{last: true, raw: []byte("HTTP/1.1 502 Bad\xff\r\nContent-Length: 3\r\n\r\n\x00\xfe!")},
		status: "failed", code: 502, errHas: "HTTP 502", response: "\uFFFD\uFFFD!",
	},
}

func TestHostileAnswers(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	h := newAnswerHarness(t, db)
	for _, tc := range hostileAnswers {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.run(t, tc.answer)
			require.Equal(t, tc.status, rec.status)
			require.Equal(t, tc.code, rec.res.statusCode)
			if tc.errHas != "" {
				require.Contains(t, rec.res.err, tc.errHas)
			}
			if tc.code != 0 {
				require.Equal(t, tc.response, rec.res.response)
			}
			if tc.check != nil {
				tc.check(t, h, rec)
			}
		})
	}
}

// FuzzHostileAnswer sends the fuzzed bytes as a receiver's raw answer (mode%4 picks the
// listener, see answerKind; mode&4 makes the attempt the last) through claim, send and
// record against one database for the whole run.
func FuzzHostileAnswer(f *testing.F) {
	for _, tc := range hostileAnswers {
		f.Add(tc.answer.raw, tc.answer.mode(), tc.answer.certName)
	}
	db, _ := relaytest.NewDB(f)
	h := newAnswerHarness(f, db)
	f.Fuzz(func(t *testing.T, raw []byte, mode byte, certName string) {
		h.run(t, answerFromFuzz(raw, mode, certName))
	})
}
