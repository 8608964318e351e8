package main

// End-to-end tests of what the relay's listeners do with clients that hold connections
// open, and of database URLs that can never work.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
)

func TestOpsPortEndsIdleAndSlowConnections(t *testing.T) {
	_, dsn := relaytest.Open(t, relaytest.Empty)
	p := startRelay(t, dsn)
	opsAddr := strings.TrimPrefix(p.opsURL, "http://")

	// waitClosed reads until the relay closes the connection and says how long that took.
	waitClosed := func(c net.Conn, within time.Duration) (time.Duration, error) {
		start := time.Now()
		require.NoError(t, c.SetReadDeadline(start.Add(within)))
		_, err := io.Copy(io.Discard, c) // nil at EOF: the relay closed it
		return time.Since(start), err
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// A keep-alive connection left idle after one request.
		c, err := net.Dial("tcp", opsAddr)
		if !assertNoError(t, err) {
			return
		}
		defer c.Close()
		_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
		if !assertNoError(t, err) {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if !assertNoError(t, err) {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Errorf("first request: status %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
			return
		}
		took, err := waitClosed(c, 30*time.Second)
		if err != nil {
			t.Errorf("idle keep-alive connection still open after %s: %v", took.Round(time.Second), err)
		}
	}()
	go func() {
		defer wg.Done()
		// A request whose headers never end.
		c, err := net.Dial("tcp", opsAddr)
		if !assertNoError(t, err) {
			return
		}
		defer c.Close()
		_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\n")
		if !assertNoError(t, err) {
			return
		}
		took, err := waitClosed(c, 30*time.Second)
		if err != nil {
			t.Errorf("connection with unfinished headers still open after %s: %v", took.Round(time.Second), err)
		}
	}()
	wg.Wait()

	// Oversized headers are refused, far below net/http's default of 1 MB. The relay answers
	// and closes while the client may still be writing, so the client can see its write
	// fail (broken pipe) or the answer cut by a reset: read the answer on a raw connection,
	// a few times, as a client that retries would.
	status := 0
	for range 5 {
		c, err := net.Dial("tcp", opsAddr)
		require.NoError(t, err)
		go func() {
			_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Padding: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
		}()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		c.Close()
		if status != 0 {
			break
		}
	}
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status)
}

// TestOpsFloodLeavesFilesForDeliveries holds 2,000 connections to the ops port of a relay
// limited to 512 open files: the relay must still deliver a webhook meanwhile, which needs
// a connection to the receiver and to the database.
func TestOpsFloodLeavesFilesForDeliveries(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("needs prlimit (util-linux)")
	}
	db, dsn := relaytest.Open(t, relaytest.Empty)
	receiver := relaytest.NewReceiver(t)
	p := startRelayWith(t, []string{"prlimit", "--nofile=512:512", "--"}, dsn)

	status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{
		"target_url":  receiver.URL + "/hooks",
		"event_types": []string{"flood.*"},
	})
	require.Equal(t, http.StatusCreated, status, "%v", created)

	// Each flood connection sends a whole request and then idles, as a keep-alive client
	// would; the relay must not hold them all.
	const flood = 2000
	opsAddr := strings.TrimPrefix(p.opsURL, "http://")
	conns := make(chan net.Conn, flood)
	closeFlood := func() {
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	}
	t.Cleanup(closeFlood)
	var dialers sync.WaitGroup
	var failed sync.Map
	for range 50 {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for range flood / 50 {
				c, err := net.DialTimeout("tcp", opsAddr, 5*time.Second)
				if err != nil {
					failed.Store(err.Error(), true)
					continue
				}
				_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
				conns <- c
			}
		}()
	}
	dialers.Wait()
	failed.Range(func(k, _ any) bool { t.Logf("flood dial: %v", k); return true })
	require.Greater(t, len(conns), flood*9/10, "the flood could not open its connections")
	time.Sleep(time.Second) // let the relay accept what it will

	tx, err := db.Beginx()
	require.NoError(t, err)
	id := outbox.NewEventID()
	require.NoError(t, outbox.Publish(context.Background(), tx, outbox.Event{ID: id, Type: "flood.during", Payload: map[string]any{"n": 1}}))
	require.NoError(t, tx.Commit())

	reqs := receiver.WaitFor(t, 1, 20*time.Second)
	require.Equal(t, id, reqs[0].Header.Get("webhook-id"))
	require.Equal(t, "flood.during", reqs[0].Header.Get("X-Webhook-Event"))
	require.NotContains(t, p.Output(), "too many open files")

	closeFlood()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	relaytest.Eventually(t, 15*time.Second, func() bool {
		resp, err := client.Get(p.opsURL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "/healthz did not answer after the flood ended")
}

func TestBadDatabaseURLStopsStartup(t *testing.T) {
	const password = "pw-SECRET-j1k2l3"
	tests := []struct {
		name, variable, value, want string
	}{
		{"SSLModeInURL", "RELAY_DATABASE_URL", "postgres://relay:" + password + "@127.0.0.1:5432/app?sslmode=bogus", `"bogus" is not supported`},
		{"SSLModeInKeyValue", "RELAY_DATABASE_URL", "host=127.0.0.1 user=relay password=" + password + " sslmode=verify", `"verify" is not supported`},
		{"UnparsableURL", "RELAY_DATABASE_URL", "postgres://relay:" + password + "/x@127.0.0.1/app", "invalid URL"},
		{"ListenURL", "RELAY_LISTEN_DATABASE_URL", "postgres://relay:" + password + "@127.0.0.1:5432/app?sslmode=bogus", `"bogus" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{
				"RELAY_DATABASE_URL": "postgres://relay@127.0.0.1:5432/app?sslmode=disable",
				"RELAY_API_TOKEN":    "t",
				"RELAY_LISTEN_ADDR":  freeAddr(t),
				"RELAY_OPS_ADDR":     freeAddr(t),
			}
			env[tt.variable] = tt.value
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "serve")
			cmd.Env = os.Environ()
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)

			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "want an exit code, got %v; output:\n%s%s", err, stdout.String(), stderr.String())
			require.Equal(t, 1, exit.ExitCode(), "output:\n%s%s", stdout.String(), stderr.String())
			require.Less(t, took, time.Second, "start-up did not stop at once")
			require.Empty(t, stdout.String())
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			require.Len(t, lines, 1, stderr.String())
			require.True(t, strings.HasPrefix(lines[0], "outbox-relay: "+tt.variable+": "), lines[0])
			require.Contains(t, lines[0], tt.want)
			require.NotContains(t, lines[0], password)
		})
	}
}

// assertNoError reports err without stopping the test, for goroutines other than the test's.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}
