package main

// Tests of examples/publisher-node and examples/publisher-python: each program runs as a real
// process against a fresh database behind the real relay binary, once rolling back and once
// committing, and the test checks what reached the database and a real receiver. A missing
// runtime is skipped on a developer's machine and fails in CI (exampleRuntimeMissing).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// examplePublisher is one of examples/publisher-*: how to run it with args.
type examplePublisher struct {
	name string
	// command returns the process to run, and the runtime's version for the log; it skips the
	// test (fails it in CI) when the runtime is missing.
	command func(t *testing.T, args ...string) (cmd *exec.Cmd, version string)
}

var examplePublishers = []examplePublisher{
	{name: "Node", command: nodeExamplePublisher},
	{name: "Python", command: pythonExamplePublisher},
}

func nodeExamplePublisher(t *testing.T, args ...string) (*exec.Cmd, string) {
	dir := filepath.Join("examples", "publisher-node")
	node, version := nodeExample(t, dir)
	cmd := exec.Command(node, append([]string{"publish.js"}, args...)...)
	cmd.Dir = dir
	return cmd, version
}

// pythonWithPsycopg finds a Python 3 that imports psycopg (version 3), once: each probe of a
// pyenv shim takes about a second, and the test runs the publisher several times.
var pythonWithPsycopg = sync.OnceValues(func() (path, version string) {
	return pythonRunning("import sys, psycopg; print('python', sys.version.split()[0], 'psycopg', psycopg.__version__)")
})

func pythonExamplePublisher(t *testing.T, args ...string) (*exec.Cmd, string) {
	python, version := pythonWithPsycopg()
	if python == "" {
		exampleRuntimeMissing(t, "examples/publisher-python needs a python3 that imports psycopg (version 3), and none does (Debian: apt-get install python3-psycopg)")
	}
	cmd := exec.Command(python, append([]string{"publish.py"}, args...)...)
	cmd.Dir = filepath.Join("examples", "publisher-python")
	return cmd, version + " (" + python + ")"
}

// publisherLine is the one line a publisher prints: what became of its transaction, the
// signup's id and the event's id.
var publisherLine = regexp.MustCompile(`^(committed|rolled back) (su_[0-9a-f]+) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// runPublisher runs p with args against dsn and returns its outcome, signup id and event id.
func runPublisher(t *testing.T, p examplePublisher, dsn string, args ...string) (outcome, signupID, eventID string) {
	t.Helper()
	cmd, _ := p.command(t, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	// A publisher stuck on a lock or a connection must not hang the test until go test's
	// own timeout.
	stuck := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	stuck.Stop()
	require.NoError(t, err, "publisher-%s %s:\nstdout:\n%s\nstderr:\n%s", strings.ToLower(p.name), strings.Join(args, " "), stdout.String(), stderr.String())
	m := publisherLine.FindStringSubmatch(strings.TrimSpace(stdout.String()))
	require.NotNil(t, m, "publisher-%s printed %q, not one outcome line (stderr: %s)", strings.ToLower(p.name), stdout.String(), stderr.String())
	return m[1], m[2], m[3]
}

func TestExamplePublishers(t *testing.T) {
	for _, p := range examplePublishers {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			// The runtime first: without it the test skips (or fails in CI) before starting
			// anything.
			_, version := p.command(t)
			t.Logf("examples/publisher-%s runs on %s", strings.ToLower(p.name), version)
			db, dsn := relaytest.NewDB(t)
			receiver := relaytest.NewReceiver(t)
			relay := startRelay(t, dsn, "RELAY_LOG_LEVEL=info")
			status, created := relay.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{
				"target_url":  receiver.URL + "/webhooks",
				"event_types": []string{"signup.*"},
				"description": "examples/publisher-" + strings.ToLower(p.name),
			})
			require.Equal(t, http.StatusCreated, status, "%v", created)
			secret, _ := created["secret"].(string)
			require.True(t, strings.HasPrefix(secret, "whsec_"), "%v", created)

			// (b) A signup whose transaction rolls back after writing both rows leaves neither.
			outcome, rolledSignup, rolledEvent := runPublisher(t, p, dsn, "--email", "eve@example.com", "--waitlist", "wl_42", "--rollback")
			require.Equal(t, "rolled back", outcome)
			require.Equal(t, 0, countWhere(t, db, `SELECT count(*) FROM signups WHERE id = $1`, rolledSignup), "the rolled-back signup stayed")
			require.Equal(t, 0, countWhere(t, db, `SELECT count(*) FROM relay.outbox`), "the rolled-back signup left an event in the outbox")

			// (a) A committed signup's event reaches the receiver: its type, its payload's bytes,
			// a valid signature.
			outcome, signupID, eventID := runPublisher(t, p, dsn, "--email", "ada@example.com", "--waitlist", "wl_42")
			require.Equal(t, "committed", outcome)
			require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM signups WHERE id = $1 AND email = 'ada@example.com'`, signupID))
			var row exampleOutboxRow
			require.NoError(t, db.Get(&row, `SELECT event_type, tenant_id, ordering_key, payload::text AS payload FROM relay.outbox WHERE event_id = $1`, eventID))
			require.Equal(t, "signup.created", row.EventType)
			require.Equal(t, "wl_42", *row.TenantID)
			require.Equal(t, signupID, *row.OrderingKey)
			wantPayload := fmt.Sprintf(`{"signup": {"id": %q, "waitlist_id": "wl_42", "email": "ada@example.com", "position": 1}}`, signupID)
			require.JSONEq(t, wantPayload, row.Payload)

			delivered := receiver.WaitFor(t, 1, 20*time.Second)[0]
			v, err := signature.NewVerifier(secret)
			require.NoError(t, err)
			require.NoError(t, v.Verify(delivered.Header, delivered.Body), "the signature does not verify")
			require.Equal(t, eventID, delivered.Header.Get(signature.HeaderID))
			require.Equal(t, "signup.created", delivered.Header.Get("X-Webhook-Event"))
			var body struct {
				ID        string          `json:"id"`
				EventType string          `json:"event_type"`
				TenantID  string          `json:"tenant_id"`
				Data      json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(delivered.Body, &body), "%s", delivered.Body)
			require.Equal(t, eventID, body.ID)
			require.Equal(t, "signup.created", body.EventType)
			require.Equal(t, "wl_42", body.TenantID)
			require.Equal(t, row.Payload, string(body.Data), "data is not the payload's bytes as stored")

			relaytest.Eventually(t, 10*time.Second, func() bool {
				status, ev := relay.call(t, http.MethodGet, "/v1/events/"+eventID, nil)
				dl, _ := ev["deliveries"].([]any)
				return status == http.StatusOK && len(dl) == 1 && dl[0].(map[string]any)["status"] == "succeeded"
			}, "the delivery never showed as succeeded")

			// Nothing of the rolled-back signup ever reaches the relay: no event, no delivery, no
			// request, however long the relay polls.
			time.Sleep(500 * time.Millisecond) // five of the test relay's polls
			status, _ = relay.call(t, http.MethodGet, "/v1/events/"+rolledEvent, nil)
			require.Equal(t, http.StatusNotFound, status, "the rolled-back event exists")
			require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM relay.outbox`))
			require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM relay.deliveries`))
			require.Len(t, receiver.Requests(), 1, "one request: the committed signup's, once")
			t.Logf("examples/publisher-%s passed in %s", strings.ToLower(p.name), time.Since(start).Round(time.Millisecond))
		})
	}
}
