package main

// Tests of examples/: each example receiver (Node.js, Python, Go) runs as a real process
// behind the real relay binary, and the SQL examples run against a migrated database. A
// receiver whose runtime is missing is skipped on a developer's machine and fails in CI
// (CI=true), where .ci/run installs every runtime.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// examplePublishedEventID is the event_id that examples/sql/publish.sql chooses.
const examplePublishedEventID = "5f0c1a52-8f6e-4d0e-9a43-2b7d1c9e6a10"

// exampleReceiver is one of examples/receiver-*: how to run it, on addr with secret.
type exampleReceiver struct {
	name string
	// command returns the process to start, and the runtime's version for the log; it skips
	// the test (fails it in CI) when the runtime is missing.
	command func(t *testing.T, addr, secret string) (cmd *exec.Cmd, version string)
}

var exampleReceivers = []exampleReceiver{
	{name: "Node", command: nodeExampleReceiver},
	{name: "Python", command: pythonExampleReceiver},
	{name: "Go", command: goExampleReceiver},
}

// exampleRuntimeMissing skips the test on a developer's machine; in CI every runtime must be
// there, so a missing one fails instead of silently testing less.
func exampleRuntimeMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s, and CI=%s: .ci/run should have installed it", msg, os.Getenv("CI"))
	}
	t.Skip("skipping: " + msg)
}

// nodeExample finds node and installs the example in dir's packages from its lock file;
// it returns node's path and version.
func nodeExample(t *testing.T, dir string) (node, version string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		exampleRuntimeMissing(t, "%s needs node (Node.js 18 or newer, with npm), which is not installed", filepath.ToSlash(dir))
	}
	out, err := exec.Command(node, "--version").Output()
	require.NoError(t, err)
	// npm ci writes node_modules/.package-lock.json; reinstall when it is missing or older
	// than the committed lock file.
	lock, errLock := os.Stat(filepath.Join(dir, "package-lock.json"))
	require.NoError(t, errLock)
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil || installed.ModTime().Before(lock.ModTime()) {
		npm, err := exec.LookPath("npm")
		if err != nil {
			exampleRuntimeMissing(t, "%s needs npm, which is not installed", filepath.ToSlash(dir))
		}
		install := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		install.Dir = dir
		out, err := install.CombinedOutput()
		require.NoError(t, err, "npm ci in %s:\n%s", dir, out)
	}
	return node, "node " + strings.TrimSpace(string(out))
}

func nodeExampleReceiver(t *testing.T, addr, secret string) (*exec.Cmd, string) {
	dir := filepath.Join("examples", "receiver-node")
	node, version := nodeExample(t, dir)
	cmd := exec.Command(node, "server.js")
	cmd.Dir = dir
	// PORT, the convention of most hosts; the Python and Go tests use ADDR.
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	cmd.Env = append(os.Environ(), "ADDR=", "PORT="+port, "WEBHOOK_SECRET="+secret)
	return cmd, version
}

// pythonWithFlask finds a Python 3 that imports Flask.
func pythonWithFlask() (path, version string) {
	return pythonRunning("import sys, flask, importlib.metadata as m; print('python', sys.version.split()[0], 'flask', m.version('flask'))")
}

// pythonRunning finds a Python 3 that runs probe, which imports what an example needs and
// prints the versions: $PYTHON, python3 on PATH (which may be a pyenv or virtualenv one),
// then the system's (Debian's python3-* packages install there).
func pythonRunning(probe string) (path, version string) {
	for _, name := range []string{os.Getenv("PYTHON"), "python3", "/usr/bin/python3"} {
		if name == "" {
			continue
		}
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if out, err := exec.Command(p, "-c", probe).Output(); err == nil {
			return p, strings.TrimSpace(string(out))
		}
	}
	return "", ""
}

func pythonExampleReceiver(t *testing.T, addr, secret string) (*exec.Cmd, string) {
	python, version := pythonWithFlask()
	if python == "" {
		exampleRuntimeMissing(t, "examples/receiver-python needs a python3 that imports flask, and none does (Debian: apt-get install python3-flask)")
	}
	cmd := exec.Command(python, "app.py")
	cmd.Dir = filepath.Join("examples", "receiver-python")
	cmd.Env = append(os.Environ(), "ADDR="+addr, "WEBHOOK_SECRET="+secret, "PYTHONUNBUFFERED=1")
	return cmd, version + " (" + python + ")"
}

func goExampleReceiver(t *testing.T, addr, secret string) (*exec.Cmd, string) {
	bin := filepath.Join(t.TempDir(), "receiver-go")
	out, err := exec.Command("go", "build", "-o", bin, "./examples/receiver-go").CombinedOutput()
	require.NoError(t, err, "building examples/receiver-go:\n%s", out)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "ADDR="+addr, "WEBHOOK_SECRET="+secret)
	return cmd, runtime.Version()
}

// receiverProcess is a running example receiver; its stdout lines arrive on lines.
type receiverProcess struct {
	cmd    *exec.Cmd
	url    string
	lines  chan string
	exited chan struct{}
	mu     sync.Mutex
	output bytes.Buffer // stdout and stderr, for the log of a failed test
}

func (p *receiverProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

func (p *receiverProcess) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// startExampleReceiver starts cmd and waits until it listens on addr.
func startExampleReceiver(t *testing.T, name string, cmd *exec.Cmd, addr string) *receiverProcess {
	t.Helper()
	p := &receiverProcess{cmd: cmd, url: "http://" + addr, lines: make(chan string, 1000), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = p
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = p.Write([]byte(sc.Text() + "\n"))
			p.lines <- sc.Text()
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s receiver output:\n%s", name, p.Output())
		}
	})
	relaytest.Eventually(t, 20*time.Second, func() bool {
		select {
		case <-p.exited:
			require.FailNowf(t, "receiver exited", "%s receiver exited before listening:\n%s", name, p.Output())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "%s receiver never listened on %s:\n%s", name, addr, p.Output())
	return p
}

// exampleLine matches the lines the examples print for each request; anything else (a
// framework's banner) is skipped.
var exampleLine = regexp.MustCompile(`^(accepted|duplicate|rejected) `)

// nextLine returns the receiver's next accepted/duplicate/rejected line.
func (p *receiverProcess) nextLine(t *testing.T) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if exampleLine.MatchString(l) {
				return l
			}
		case <-deadline:
			require.FailNowf(t, "no line from the receiver", "output so far:\n%s", p.Output())
		}
	}
}

// post sends body with header straight to the receiver, as an attacker or a replay would.
func (p *receiverProcess) post(t *testing.T, header http.Header, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+"/webhooks", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header = header.Clone()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// forwardTo makes a relaytest.Receiver pass every request on to target and answer with
// target's answer: the test sees exactly what the relay sent and what the example said.
func forwardTo(target string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}
}

func readExample(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// signedHeader is what the relay would send for body, signed with secrets at ts.
func signedHeader(t *testing.T, id string, ts time.Time, body []byte, secrets ...string) http.Header {
	t.Helper()
	var sigs []string
	for _, s := range secrets {
		key, err := signature.DecodeSecret(s)
		require.NoError(t, err)
		sigs = append(sigs, signature.Sign(key, id, ts.Unix(), body))
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(signature.HeaderID, id)
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(signature.HeaderSignature, strings.Join(sigs, " "))
	return h
}

func TestExampleReceivers(t *testing.T) {
	for _, r := range exampleReceivers {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			db, dsn := relaytest.NewDB(t)
			addr := freeAddr(t)
			// The relay sends to a recording hop that forwards to the example, so the test
			// holds a real delivery's headers and body to tamper with and replay.
			hop := relaytest.NewReceiver(t)
			hop.Respond = forwardTo("http://" + addr + "/webhooks")
			relay := startRelay(t, dsn, "RELAY_LOG_LEVEL=info")

			// As a user would: create the subscription, then give its secret to the receiver.
			status, created := relay.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{
				"target_url":  hop.URL + "/webhooks",
				"event_types": []string{"signup.*"},
				"description": "examples/receiver-" + strings.ToLower(r.name),
			})
			require.Equal(t, http.StatusCreated, status, "%v", created)
			secret, _ := created["secret"].(string)
			require.True(t, strings.HasPrefix(secret, "whsec_"), "%v", created)
			cmd, version := r.command(t, addr, secret)
			t.Logf("examples/receiver-%s runs on %s", strings.ToLower(r.name), version)
			p := startExampleReceiver(t, r.name, cmd, addr)

			// (a) An event published with examples/sql/publish.sql is delivered, verified and
			// accepted, and the relay records the delivery as succeeded.
			_, err := db.Exec(readExample(t, "examples/sql/publish.sql"))
			require.NoError(t, err)
			require.Equal(t, "accepted "+examplePublishedEventID+" signup.created", p.nextLine(t))
			relaytest.Eventually(t, 10*time.Second, func() bool {
				status, ev := relay.call(t, http.MethodGet, "/v1/events/"+examplePublishedEventID, nil)
				dl, _ := ev["deliveries"].([]any)
				return status == http.StatusOK && len(dl) == 1 && dl[0].(map[string]any)["status"] == "succeeded"
			}, "the delivery never showed as succeeded")
			reqs := hop.Requests()
			require.Len(t, reqs, 1)
			delivered := reqs[0]
			require.Equal(t, examplePublishedEventID, delivered.Header.Get("webhook-id"))

			// (b) The real delivery's headers with a changed body: 401.
			tampered := bytes.Replace(delivered.Body, []byte("ada@example.com"), []byte("eve@example.com"), 1)
			require.NotEqual(t, delivered.Body, tampered)
			require.Equal(t, http.StatusUnauthorized, p.post(t, delivered.Header, tampered))
			require.True(t, strings.HasPrefix(p.nextLine(t), "rejected "), "tampered body")

			// (c) The same webhook-id again (a retry after a lost answer): 2xx, not processed.
			status = p.post(t, delivered.Header, delivered.Body)
			require.True(t, status >= 200 && status < 300, "a duplicate still gets a 2xx, got %d", status)
			require.Equal(t, "duplicate "+examplePublishedEventID, p.nextLine(t))

			// A correct signature ten minutes old is a replay: 401.
			body := []byte(`{"id":"msg_stale","event_type":"signup.created","timestamp":"2026-11-27T05:00:00.123Z","data":{}}`)
			require.Equal(t, http.StatusUnauthorized, p.post(t, signedHeader(t, "msg_stale", time.Now().Add(-10*time.Minute), body, secret), body))
			require.True(t, strings.HasPrefix(p.nextLine(t), "rejected "), "stale timestamp")

			// During a secret rotation the relay sends two signatures; one matching is enough.
			other, err := signature.NewSecret()
			require.NoError(t, err)
			body = []byte(`{"id":"msg_rotation","event_type":"signup.deleted","timestamp":"2026-11-27T05:00:00.123Z","data":{}}`)
			require.Equal(t, http.StatusNoContent, p.post(t, signedHeader(t, "msg_rotation", time.Now(), body, other, secret), body))
			require.Equal(t, "accepted msg_rotation signup.deleted", p.nextLine(t))

			// Signed with another secret only: 401.
			body = []byte(`{"id":"msg_other","event_type":"signup.created","timestamp":"2026-11-27T05:00:00.123Z","data":{}}`)
			require.Equal(t, http.StatusUnauthorized, p.post(t, signedHeader(t, "msg_other", time.Now(), body, other), body))
			require.True(t, strings.HasPrefix(p.nextLine(t), "rejected "), "wrong secret")

			// Correctly signed but not a JSON object: 400, never a crash.
			body = []byte(`["not", "an", "event"]`)
			require.Equal(t, http.StatusBadRequest, p.post(t, signedHeader(t, "msg_array", time.Now(), body, secret), body))
			require.True(t, strings.HasPrefix(p.nextLine(t), "rejected "), "not an object")

			require.Len(t, hop.Requests(), 1, "the relay sent the event exactly once")
			t.Logf("examples/receiver-%s passed in %s", strings.ToLower(r.name), time.Since(start).Round(time.Millisecond))
		})
	}
}

// exampleOutboxRow is a row of relay.outbox as the SQL examples write it.
type exampleOutboxRow struct {
	EventType   string  `db:"event_type"`
	TenantID    *string `db:"tenant_id"`
	OrderingKey *string `db:"ordering_key"`
	Payload     string  `db:"payload"`
}

func TestExampleSQLPublish(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	script := readExample(t, "examples/sql/publish.sql")
	// The application runs its transaction again, as after a lost COMMIT answer.
	for range 2 {
		_, err := db.Exec(script)
		require.NoError(t, err)
	}
	var rows []exampleOutboxRow
	require.NoError(t, db.Select(&rows, `SELECT event_type, tenant_id, ordering_key, payload::text AS payload FROM relay.outbox WHERE event_id = $1`, examplePublishedEventID))
	require.Len(t, rows, 1, "published once")
	require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM relay.outbox`))
	require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM signups`))
	require.Equal(t, "signup.created", rows[0].EventType)
	require.Equal(t, "wl_42", *rows[0].TenantID)
	require.Equal(t, "su_sql_1", *rows[0].OrderingKey)
	require.JSONEq(t, `{"signup": {"id": "su_sql_1", "waitlist_id": "wl_42", "email": "ada@example.com", "position": 17}}`, rows[0].Payload)
}

func TestExampleSQLTrigger(t *testing.T) {
	t.Parallel()
	db, _ := relaytest.NewDB(t)
	script := readExample(t, "examples/sql/trigger.sql")
	for range 2 { // applying it again replaces what it made
		_, err := db.Exec(script)
		require.NoError(t, err)
	}
	run := func(query string, args ...any) {
		t.Helper()
		_, err := db.Exec(query, args...)
		require.NoError(t, err)
	}

	// Three signups in one transaction, as an application would write them.
	tx, err := db.Begin()
	require.NoError(t, err)
	for _, s := range [][]any{{"su_1", "wl_1", "a@example.com", 1}, {"su_2", "wl_1", "b@example.com", 2}, {"su_3", "wl_2", "c@example.com", 1}} {
		_, err := tx.Exec(`INSERT INTO signups (id, waitlist_id, email, position) VALUES ($1, $2, $3, $4)`, s...)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
	// A change that rolls back takes its event with it.
	tx, err = db.Begin()
	require.NoError(t, err)
	_, err = tx.Exec(`INSERT INTO signups (id, waitlist_id, email, position) VALUES ('su_9', 'wl_1', 'z@example.com', 9)`)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback())

	run(`UPDATE signups SET position = 2 WHERE id = 'su_1'`)
	run(`UPDATE signups SET email = 'new@example.com' WHERE id = 'su_2'`) // position untouched: no event
	run(`UPDATE signups SET position = 1 WHERE id = 'su_3'`)              // the same value: no event
	run(`DELETE FROM signups WHERE id = 'su_2'`)

	var rows []exampleOutboxRow
	require.NoError(t, db.Select(&rows, `SELECT event_type, tenant_id, ordering_key, payload::text AS payload FROM relay.outbox ORDER BY id`))
	want := []struct{ typ, tenant, key, payload string }{
		{"signup.created", "wl_1", "su_1", `{"signup": {"id": "su_1", "waitlist_id": "wl_1", "email": "a@example.com", "position": 1}}`},
		{"signup.created", "wl_1", "su_2", `{"signup": {"id": "su_2", "waitlist_id": "wl_1", "email": "b@example.com", "position": 2}}`},
		{"signup.created", "wl_2", "su_3", `{"signup": {"id": "su_3", "waitlist_id": "wl_2", "email": "c@example.com", "position": 1}}`},
		{"signup.position_changed", "wl_1", "su_1", `{"signup": {"id": "su_1", "waitlist_id": "wl_1", "email": "a@example.com", "position": 2}, "previous_position": 1}`},
		{"signup.deleted", "wl_1", "su_2", `{"signup": {"id": "su_2", "waitlist_id": "wl_1"}}`},
	}
	require.Len(t, rows, len(want), "%+v", rows)
	for i, w := range want {
		require.Equal(t, w.typ, rows[i].EventType, "row %d", i)
		require.Equal(t, w.tenant, *rows[i].TenantID, "row %d", i)
		require.Equal(t, w.key, *rows[i].OrderingKey, "row %d", i)
		require.JSONEq(t, w.payload, rows[i].Payload, "row %d", i)
	}
}

func TestExampleComposeUsesKnownVariables(t *testing.T) {
	compose := readExample(t, "examples/docker-compose.yml")
	help, err := exec.Command(binary, "help").CombinedOutput()
	require.NoError(t, err)
	used := regexp.MustCompile(`RELAY_[A-Z_]+`).FindAllString(compose, -1)
	require.Contains(t, used, "RELAY_DATABASE_URL")
	require.Contains(t, used, "RELAY_API_TOKEN")
	for _, v := range used {
		require.Contains(t, string(help), v, "examples/docker-compose.yml sets %s, which the relay does not know", v)
	}
}

func TestExampleIndexListsEveryExample(t *testing.T) {
	index := readExample(t, "examples/README.md")
	entries, err := os.ReadDir("examples")
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		name := e.Name()
		if e.IsDir() {
			name += "/"
		}
		require.True(t, strings.Contains(index, "("+name+")"), "examples/README.md does not link %s", name)
	}
}
