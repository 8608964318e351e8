package receiver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/receiver"
	"github.com/referralloop/outbox-relay/relay/signature"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const body = `{"id":"evt_1","event_type":"signup.created","data":{"signup":{"id":"su_1","position":17}}}`

type testBundle struct {
	secret string
	key    []byte
	out    *relaytest.LockedBuffer
	server *httptest.Server
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	key, err := signature.DecodeSecret(secret)
	require.NoError(t, err)
	v, err := signature.NewVerifier(secret)
	require.NoError(t, err)

	out := &relaytest.LockedBuffer{}
	server := httptest.NewServer(receiver.Handler(v, out))
	t.Cleanup(server.Close)
	return &testBundle{secret: secret, key: key, out: out, server: server}
}

// signedRequest builds the request the relay would send: Standard Webhooks headers over
// signedBody, carrying sentBody (the two differ only in tampering tests).
func signedRequest(t *testing.T, url string, key []byte, id, signedBody, sentBody string) *http.Request {
	t.Helper()
	ts := time.Now().Unix()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(sentBody))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	sig := signature.Sign(key, id, ts, []byte(signedBody))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("X-Webhook-Signature", sig)
	req.Header.Set("X-Webhook-Event", "signup.created")
	req.Header.Set("X-Webhook-Attempt", "3")
	return req
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestHandler(t *testing.T) {
	t.Parallel()

	t.Run("SignedRequest", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		resp, _ := do(t, signedRequest(t, b.server.URL+"/hooks/signup", b.key, "evt_1", body, body))
		require.Equal(t, http.StatusNoContent, resp.StatusCode)

		out := b.out.String()
		header, rest, ok := strings.Cut(out, "\n")
		require.True(t, ok, out)
		require.Contains(t, header, "POST /hooks/signup")
		require.Contains(t, header, "webhook-id=evt_1")
		require.Contains(t, header, "event=signup.created")
		require.Contains(t, header, "attempt=3")
		require.Contains(t, header, "signature ok")
		_, err := time.Parse(time.RFC3339, strings.Fields(header)[0])
		require.NoError(t, err, "the line starts with the time")

		want := `{
  "id": "evt_1",
  "event_type": "signup.created",
  "data": {
    "signup": {
      "id": "su_1",
      "position": 17
    }
  }
}

`
		require.Equal(t, want, rest)
	})

	t.Run("TamperedBody", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tampered := strings.Replace(body, "17", "1", 1)
		resp, text := do(t, signedRequest(t, b.server.URL, b.key, "evt_1", body, tampered))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Contains(t, text, "no matching signature")
		require.True(t, strings.HasPrefix(b.out.String(), "REJECTED no matching signature"), b.out.String())
		require.Contains(t, b.out.String(), "webhook-id=evt_1")
		require.NotContains(t, b.out.String(), "signature ok")
	})

	t.Run("WrongSecret", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		other, err := signature.DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		require.NoError(t, err)
		resp, _ := do(t, signedRequest(t, b.server.URL, other, "evt_1", body, body))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Contains(t, b.out.String(), "REJECTED")
	})

	t.Run("Unsigned", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		resp, text := do(t, mustRequest(t, http.MethodPost, b.server.URL, body))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Contains(t, text, "missing webhook headers")
		require.Contains(t, b.out.String(), "REJECTED missing webhook headers")
	})

	t.Run("StaleTimestamp", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ts := time.Now().Add(-time.Hour).Unix()
		req := mustRequest(t, http.MethodPost, b.server.URL, body)
		req.Header.Set("webhook-id", "evt_1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("webhook-signature", signature.Sign(b.key, "evt_1", ts, []byte(body)))
		resp, text := do(t, req)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Contains(t, text, "webhook timestamp out of tolerance")
	})

	t.Run("MethodNotAllowed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		resp, _ := do(t, mustRequest(t, http.MethodGet, b.server.URL, ""))
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		require.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
		require.Contains(t, b.out.String(), "REJECTED method GET not allowed")
	})

	t.Run("BodyTooLarge", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		big := `{"pad":"` + strings.Repeat("x", 1<<20) + `"}`
		resp, _ := do(t, signedRequest(t, b.server.URL, b.key, "evt_1", big, big))
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		require.Contains(t, b.out.String(), "REJECTED body over 1 MiB")
	})

	t.Run("NotJSON", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		resp, _ := do(t, signedRequest(t, b.server.URL, b.key, "evt_1", "plain text", "plain text"))
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.Contains(t, b.out.String(), "signature ok, body is not JSON\nplain text\n\n")
	})

	t.Run("Rotation", func(t *testing.T) {
		t.Parallel()
		oldSecret, err := signature.NewSecret()
		require.NoError(t, err)
		newSecret, err := signature.NewSecret()
		require.NoError(t, err)
		v, err := signature.NewVerifier(newSecret, oldSecret)
		require.NoError(t, err)
		oldKey, err := signature.DecodeSecret(oldSecret)
		require.NoError(t, err)

		// A sender that has not picked up the new secret yet is still accepted.
		rec := httptest.NewRecorder()
		receiver.Handler(v, io.Discard).ServeHTTP(rec, signedRequest(t, "/", oldKey, "evt_1", body, body))
		require.Equal(t, http.StatusNoContent, rec.Code)
	})

	t.Run("ControlCharactersEscaped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		v, err := signature.NewVerifier(b.secret)
		require.NoError(t, err)
		var out bytes.Buffer
		// ServeHTTP directly: a real HTTP server would refuse these header bytes already, but
		// the handler must not depend on that.
		req := signedRequest(t, "/", b.key, "evt_1", "\x1b[2Jcleared", "\x1b[2Jcleared")
		req.Header.Set("X-Webhook-Event", "signup.created\x1b]0;pwned\x07")
		rec := httptest.NewRecorder()
		receiver.Handler(v, &out).ServeHTTP(rec, req)
		require.Equal(t, http.StatusNoContent, rec.Code)
		require.NotContains(t, out.String(), "\x1b")
		require.NotContains(t, out.String(), "\x07")
		require.Contains(t, out.String(), `\u001b[2Jcleared`)
	})

	t.Run("ConcurrentBlocksDoNotInterleave", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const n = 20
		// Requests are built here because require must not be called off the test goroutine.
		reqs := make([]*http.Request, n)
		for i := range reqs {
			id := fmt.Sprintf("evt_c%02d", i)
			payload := strings.Replace(body, "evt_1", id, 1)
			reqs[i] = signedRequest(t, b.server.URL, b.key, id, payload, payload)
		}
		codes := make([]int, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, req := range reqs {
			wg.Go(func() {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs[i] = err
					return
				}
				codes[i] = resp.StatusCode
				_ = resp.Body.Close()
			})
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, http.StatusNoContent, codes[i])
		}

		// Each block is whole: its header line and its body name the same event.
		blocks := strings.Split(strings.TrimSuffix(b.out.String(), "\n\n"), "\n\n")
		require.Len(t, blocks, n)
		for _, block := range blocks {
			header, pretty, ok := strings.Cut(block, "\n")
			require.True(t, ok, block)
			i := strings.Index(header, "webhook-id=")
			require.GreaterOrEqual(t, i, 0, header)
			id := strings.Fields(header[i+len("webhook-id="):])[0]
			require.Contains(t, pretty, `"id": "`+id+`"`)
			require.Equal(t, 9, strings.Count(pretty, "\n"), "one whole indented body:\n%s", pretty)
			require.True(t, strings.HasPrefix(pretty, "{") && strings.HasSuffix(pretty, "}"), pretty)
		}
	})
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	return req
}

// startRun runs receiver.Run in the background and returns the bound address, the output and
// a function that cancels Run and returns its result.
func startRun(t *testing.T, cfg receiver.Config) (net.Addr, *relaytest.LockedBuffer, func() error) {
	t.Helper()
	out := &relaytest.LockedBuffer{}
	cfg.Out = out
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(addr net.Addr) { ready <- addr }

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- receiver.Run(ctx, cfg) }()

	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
			return nil
		}
	}
	select {
	case addr := <-ready:
		return addr, out, stop
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		_ = stop()
		t.Fatal("Run did not become ready")
	}
	return nil, nil, nil
}

func TestRun(t *testing.T) {
	t.Parallel()

	t.Run("ServesUntilCancelled", func(t *testing.T) {
		t.Parallel()
		secret, err := signature.NewSecret()
		require.NoError(t, err)
		key, err := signature.DecodeSecret(secret)
		require.NoError(t, err)

		addr, out, stop := startRun(t, receiver.Config{
			Addr:    "127.0.0.1:0",
			Secrets: []string{secret},
			Logger:  zerolog.New(zerolog.NewTestWriter(t)),
		})
		require.Equal(t, fmt.Sprintf("listening on http://%s, verifying with 1 secret(s)\n", addr), out.String())

		url := "http://" + addr.String() + "/webhook"
		// Its own transport: closing the shared default one's idle connections would break
		// requests of tests running in parallel (CI saw "CloseIdleConnections called").
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		resp, err := client.Do(signedRequest(t, url, key, "evt_1", body, body))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.Contains(t, out.String(), "event=signup.created")

		require.NoError(t, stop())

		// The listener is closed: nothing answers any more.
		_, err = client.Do(signedRequest(t, url, key, "evt_2", body, body))
		require.Error(t, err)
	})

	t.Run("WildcardAddressShownAsLocalhost", func(t *testing.T) {
		t.Parallel()
		secret, err := signature.NewSecret()
		require.NoError(t, err)
		addr, out, stop := startRun(t, receiver.Config{Addr: ":0", Secrets: []string{secret, secret}})
		_, port, err := net.SplitHostPort(addr.String())
		require.NoError(t, err)
		require.Equal(t, "listening on http://localhost:"+port+", verifying with 2 secret(s)\n", out.String())
		require.NoError(t, stop())
	})

	t.Run("InvalidSecret", func(t *testing.T) {
		t.Parallel()
		err := receiver.Run(t.Context(), receiver.Config{Addr: "127.0.0.1:0", Secrets: []string{"whsec_%%%"}, Out: io.Discard})
		require.ErrorIs(t, err, signature.ErrInvalidSecret)
		require.ErrorContains(t, err, "receiver: a signing secret is not valid (want whsec_ followed by base64)")
		require.NotContains(t, err.Error(), "Secrets", "no Go field names")
	})

	t.Run("NoSecrets", func(t *testing.T) {
		t.Parallel()
		err := receiver.Run(t.Context(), receiver.Config{Addr: "127.0.0.1:0", Out: io.Discard})
		require.EqualError(t, err, "receiver: at least one signing secret is required")
	})

	t.Run("AddressInUse", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		secret, err := signature.NewSecret()
		require.NoError(t, err)

		var out bytes.Buffer
		err = receiver.Run(t.Context(), receiver.Config{Addr: ln.Addr().String(), Secrets: []string{secret}, Out: &out})
		require.ErrorContains(t, err, "listening on "+ln.Addr().String())
		require.Empty(t, out.String(), "no listening line when nothing listens")
	})
}
