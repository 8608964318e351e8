package main

// End-to-end tests: they build the real binary and run it against a real PostgreSQL and
// real HTTP receivers, as a user would.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/signature"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outbox-relay-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "outbox-relay")
	build := exec.Command("go", "build", "-race", "-ldflags", "-X main.version=e2e", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment ago, and that no
// other call in this process returned: the kernel may hand a just-closed port out again,
// and two relays given the same one refuse to start.
func freeAddr(t *testing.T) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// handedOut holds the addresses freeAddr returned.
var handedOut sync.Map

// relayProcess is a running outbox-relay binary.
type relayProcess struct {
	cmd     *exec.Cmd
	apiURL  string
	opsURL  string
	token   string
	mu      sync.Mutex
	output  bytes.Buffer
	exited  chan struct{}
	exitErr error
}

func (p *relayProcess) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

type lockedWriter struct{ p *relayProcess }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.output.Write(b)
}

// startRelay runs the binary against dsn with extra environment, and waits until /readyz
// answers 200.
func startRelay(t *testing.T, dsn string, env ...string) *relayProcess {
	t.Helper()
	return startRelayWith(t, nil, dsn, env...)
}

// startRelayWith is startRelay with the binary run through a wrapper command (prefix), such
// as prlimit.
func startRelayWith(t *testing.T, prefix []string, dsn string, env ...string) *relayProcess {
	t.Helper()
	p := launchRelayWith(t, prefix, dsn, env...)
	relaytest.Eventually(t, 30*time.Second, func() bool {
		status, _ := p.readyz(t)
		return status == http.StatusOK
	}, "relay never became ready:\n%s", p.Output())
	return p
}

// readyz answers /readyz's status and body; 0 while the relay does not answer.
func (p *relayProcess) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := opsClient.Get(p.opsURL + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// opsClient reads /readyz: a relay whose ops port is flooded must not hang a test.
var opsClient = &http.Client{Timeout: 2 * time.Second}

// launchRelay runs the binary against dsn with extra environment, without waiting for it.
func launchRelay(t *testing.T, dsn string, env ...string) *relayProcess {
	t.Helper()
	return launchRelayWith(t, nil, dsn, env...)
}

// launchRelayWith is launchRelay with the binary run through a wrapper command (prefix).
func launchRelayWith(t *testing.T, prefix []string, dsn string, env ...string) *relayProcess {
	t.Helper()
	p := &relayProcess{apiURL: "http://" + freeAddr(t), opsURL: "http://" + freeAddr(t), token: "e2e-token-" + strconv.Itoa(os.Getpid()), exited: make(chan struct{})}
	args := append(slices.Clone(prefix), binary, "serve")
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(),
		"RELAY_DATABASE_URL="+dsn,
		"RELAY_API_TOKEN="+p.token,
		"RELAY_LISTEN_ADDR="+strings.TrimPrefix(p.apiURL, "http://"),
		"RELAY_OPS_ADDR="+strings.TrimPrefix(p.opsURL, "http://"),
		"RELAY_ALLOW_HTTP=true",
		"RELAY_ALLOW_PRIVATE_TARGETS=true",
		"RELAY_POLL_INTERVAL=100ms",
		"RELAY_LOG_LEVEL=debug",
	)
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	require.NoError(t, p.cmd.Start())
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("relay output:\n%s", p.Output())
		}
		// Every relay run by every test: no secret or token in any log line.
		out := p.Output()
		if strings.Contains(out, "whsec_") || strings.Contains(out, p.token) {
			t.Errorf("a secret or the API token appeared in the relay's output:\n%s", out)
		}
	})
	return p
}

func (p *relayProcess) call(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.apiURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "answer: %s", raw)
	}
	return resp.StatusCode, out
}

// stop sends SIGTERM and waits for the exit code.
func (p *relayProcess) stop(t *testing.T) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		t.Fatalf("relay did not exit after SIGTERM:\n%s", p.Output())
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestEndToEndSignupWebhooks(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Empty) // the relay migrates it itself
	receiver := relaytest.NewReceiver(t)
	p := startRelay(t, dsn)

	status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{
		"target_url":  receiver.URL + "/webhooks",
		"event_types": []string{"signup.*"},
		"description": "waitlist events",
	})
	require.Equal(t, http.StatusCreated, status, "%v", created)
	secret, _ := created["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"), "%v", created)

	ctx := context.Background()
	tx, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	var ids []string
	for i, typ := range []string{"signup.created", "signup.position_changed", "signup.deleted"} {
		id := outbox.NewEventID()
		ids = append(ids, id)
		require.NoError(t, outbox.Publish(ctx, tx, outbox.Event{ID: id, Type: typ, TenantID: "wl_42", OrderingKey: "su_1",
			Payload: map[string]any{"signup": map[string]any{"id": "su_1", "email": "a@example.com", "position": 17 - i}}}))
	}
	require.NoError(t, outbox.Publish(ctx, tx, outbox.Event{Type: "billing.paid", Payload: map[string]any{}}), "not subscribed: never sent")
	require.NoError(t, tx.Commit())

	reqs := receiver.WaitFor(t, 3, 20*time.Second)
	v, err := signature.NewVerifier(secret)
	require.NoError(t, err)
	got := map[string]string{}
	for _, r := range reqs {
		require.NoError(t, v.Verify(r.Header, r.Body))
		var body struct {
			ID, EventType, TenantID string
			Data                    map[string]any
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		got[r.Header.Get("webhook-id")] = r.Header.Get("X-Webhook-Event")
		require.Equal(t, "outbox-relay/e2e", r.Header.Get("User-Agent"))
	}
	require.Equal(t, map[string]string{ids[0]: "signup.created", ids[1]: "signup.position_changed", ids[2]: "signup.deleted"}, got)

	relaytest.Eventually(t, 10*time.Second, func() bool {
		status, ev := p.call(t, http.MethodGet, "/v1/events/"+ids[0], nil)
		if status != http.StatusOK {
			return false
		}
		dl, _ := ev["deliveries"].([]any)
		if len(dl) != 1 {
			return false
		}
		d := dl[0].(map[string]any)
		return d["status"] == "succeeded"
	}, "event view never showed the delivery as succeeded")

	time.Sleep(300 * time.Millisecond)
	require.Len(t, receiver.Requests(), 3, "exactly one request per event")
	require.Equal(t, 0, p.stop(t), "SIGTERM exits 0")
	require.NotContains(t, p.Output(), secret, "the secret never appears in logs")
	require.NotContains(t, p.Output(), p.token, "the API token never appears in logs")
	require.NotContains(t, p.Output(), "a@example.com", "payloads never appear in logs")
}

func TestBadConfigStopsStartupWithOneLine(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL=postgres://localhost/x", "RELAY_API_TOKEN=t", "RELAY_POLL_INTERVAL=often")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	require.Error(t, err)
	require.Equal(t, 1, cmd.ProcessState.ExitCode())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.Len(t, lines, 1, stderr.String())
	require.Contains(t, lines[0], "RELAY_POLL_INTERVAL")
}

// TestConfigMistakesAreReportedAtOnce: a typo'd variable, a value that does not parse and one
// out of range are all reported by one start, the typo with the name it most likely meant.
func TestConfigMistakesAreReportedAtOnce(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL=postgres://localhost/x", "RELAY_API_TOKEN=t",
		"RELAY_WORKER=8", "RELAY_WORKERS=lots", "RELAY_POLL_INTERVAL=0s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.Error(t, cmd.Run())
	require.Equal(t, 1, cmd.ProcessState.ExitCode())
	require.Empty(t, stdout.String(), "nothing started")
	require.Equal(t, "outbox-relay: 3 configuration problems:\n"+
		"  RELAY_WORKER: unknown variable; did you mean RELAY_WORKERS? (outbox-relay help lists every variable)\n"+
		"  RELAY_WORKERS: invalid number \"lots\" (want a whole number, e.g. 100)\n"+
		"  RELAY_POLL_INTERVAL: must be greater than 0, got 0s\n", stderr.String())
}

// TestCommandsTakeHelpNotStrayArguments: `serve --help` prints the help instead of starting,
// a stray argument is refused, and `receive` names the flag that is wrong, not a Go field.
func TestCommandsTakeHelpNotStrayArguments(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"migrate", "--help"}} {
		cmd := exec.Command(binary, args...)
		// Even with a configuration that would start: help must not.
		cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL=postgres://127.0.0.1:1/x", "RELAY_API_TOKEN=t")
		out, err := cmd.Output()
		require.NoError(t, err, "%v", args)
		require.Contains(t, string(out), "Commands:", "%v", args)
		require.Contains(t, string(out), "RELAY_DATABASE_URL", "%v", args)
	}

	out, err := exec.Command(binary, "serve", "--port", "8080").CombinedOutput()
	require.Error(t, err)
	require.Equal(t, "outbox-relay serve: unexpected argument \"--port\": it takes none, its settings are RELAY_ variables (outbox-relay help lists them)\n", string(out))

	cmd := exec.Command(binary, "receive", "--secret", "hunter2")
	cmd.Env = os.Environ()
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, "outbox-relay: receive: --secret is not a signing secret: want whsec_ followed by base64, or for a v1a subscription its whpk_ public key, as the API returns them\n", string(out))
	require.NotContains(t, string(out), "hunter2", "a mistyped secret is never repeated")
}

// TestRetryLogsCarryUnits: durations in the log are written with their units.
func TestRetryLogsCarryUnits(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL=postgres://postgres@127.0.0.1:1/x?connect_timeout=1", "RELAY_API_TOKEN=t",
		"RELAY_LISTEN_ADDR="+freeAddr(t), "RELAY_OPS_ADDR="+freeAddr(t), "RELAY_ADMIN_ADDR="+freeAddr(t))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	deadline := time.Now().Add(20 * time.Second)
	for lines.Scan() && time.Now().Before(deadline) {
		var entry map[string]any
		if json.Unmarshal(lines.Bytes(), &entry) != nil || entry["retry_in"] == nil {
			continue
		}
		wait, ok := entry["retry_in"].(string)
		require.True(t, ok, "retry_in is a number without a unit: %s", lines.Text())
		d, err := time.ParseDuration(wait)
		require.NoError(t, err, lines.Text())
		require.Positive(t, d)
		require.Equal(t, d.Round(time.Millisecond), d, "rounded to the millisecond: %s", wait)
		return
	}
	t.Fatal("no log line with retry_in while the database is unreachable")
}

// TestTooLongSchemaStopsStartupWithOneLine: a RELAY_SCHEMA whose NOTIFY channel would pass
// PostgreSQL's 63 bytes stops serve and migrate before they connect, naming the variable.
func TestTooLongSchemaStopsStartupWithOneLine(t *testing.T) {
	for _, command := range []string{"serve", "migrate"} {
		cmd := exec.Command(binary, command)
		cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL=postgres://localhost/x", "RELAY_API_TOKEN=t",
			"RELAY_SCHEMA="+strings.Repeat("s", 57))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.Error(t, cmd.Run())
		require.Equal(t, 1, cmd.ProcessState.ExitCode())
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		require.Len(t, lines, 1, stderr.String())
		require.Contains(t, lines[0], "RELAY_SCHEMA: ")
		require.Contains(t, lines[0], "want at most 56")
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	out, err := exec.Command(binary, "help").CombinedOutput()
	require.NoError(t, err)
	for _, v := range []string{"RELAY_DATABASE_URL", "RELAY_API_TOKEN", "RELAY_RETRY_SCHEDULE", "RELAY_POLL_INTERVAL", "RELAY_MAX_PAYLOAD_BYTES", "RELAY_ENCRYPTION_KEY"} {
		require.Contains(t, string(out), v)
	}
	out, err = exec.Command(binary, "version").CombinedOutput()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(out), "outbox-relay e2e\n"), string(out))
	require.Contains(t, string(out), "  go:       "+runtime.Version()+"\n")
	require.Contains(t, string(out), fmt.Sprintf("  schema:   %d (", outbox.LatestVersion()))
}

// TestVersionWithoutLdflags builds the binary as `go build` and `go install` do, without
// -ldflags: the version, the commit and the Go version still come out, from what the
// toolchain records in the binary.
func TestVersionWithoutLdflags(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not a git checkout: the toolchain records no commit")
	}
	rev := strings.TrimSpace(string(head))
	bin := filepath.Join(t.TempDir(), "outbox-relay")
	// -buildvcs=true: GOFLAGS may say false on a developer's machine.
	out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	out, err = exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err)
	lines := strings.Split(string(out), "\n")
	// A tag's version, or a pseudo-version naming the commit: v0.0.0-20261203194726-00a9d29039c0.
	require.Regexp(t, `^outbox-relay v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+dirty)?$`, lines[0])
	if !strings.Contains(lines[0], rev[:12]) {
		tag, _ := exec.Command("git", "describe", "--tags", "--exact-match").Output()
		require.NotEmpty(t, tag, "%q names neither the commit nor a tag", lines[0])
	}
	require.Regexp(t, `^  revision: `+rev+`( \(modified\))?$`, lines[1])
	require.Regexp(t, `^  built:    not stamped; commit time \d{4}-\d\d-\d\dT`, lines[2])
	require.Equal(t, "  go:       "+runtime.Version(), lines[3])
}

func TestMigrateCommand(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Empty)
	run := func() string {
		cmd := exec.Command(binary, "migrate")
		cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL="+dsn, "RELAY_API_TOKEN=t")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	require.Contains(t, run(), "migrated to version")
	require.Contains(t, run(), "up to date")
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM relay.outbox`))
	require.Zero(t, n)
}

func TestReceiveCommandVerifiesAndPrints(t *testing.T) {
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	addr := freeAddr(t)
	cmd := exec.Command(binary, "receive", "--addr", addr, "--secret", secret)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	relaytest.Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "receiver never listened")
	key, err := signature.DecodeSecret(secret)
	require.NoError(t, err)
	post := func(body string, sign bool) int {
		ts := time.Now().Unix()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(body))
		require.NoError(t, err)
		sig := signature.Sign(key, "evt_1", ts, []byte(body))
		if !sign {
			sig = "v1,AAAA"
		}
		req.Header.Set("webhook-id", "evt_1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("webhook-signature", sig)
		req.Header.Set("X-Webhook-Event", "signup.created")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusNoContent, post(`{"event_type":"signup.created"}`, true))
	require.Equal(t, http.StatusUnauthorized, post(`{"event_type":"signup.created"}`, false))

	var printed strings.Builder
	deadline := time.After(5 * time.Second)
	for !strings.Contains(printed.String(), "REJECTED") {
		select {
		case l := <-lines:
			printed.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("receiver output so far:\n%s", printed.String())
		}
	}
	require.Contains(t, printed.String(), "signup.created")
	require.Contains(t, printed.String(), "evt_1")
}

func TestReadmeDocumentsEveryVariable(t *testing.T) {
	help, err := exec.Command(binary, "help").CombinedOutput()
	require.NoError(t, err)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var vars []string
	for _, line := range strings.Split(string(help), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "RELAY_") {
			vars = append(vars, f[0])
		}
	}
	require.Greater(t, len(vars), 20)
	for _, v := range vars {
		require.Contains(t, string(readme), "| `"+v+"` |", "README's configuration table lacks %s", v)
	}
}

// TestReadmeDefaultsMatchHelp keeps the README's table a copy of package defaults: help prints
// the defaults the relay runs with, and the table must say the same.
func TestReadmeDefaultsMatchHelp(t *testing.T) {
	help, err := exec.Command(binary, "help").CombinedOutput()
	require.NoError(t, err)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	documented := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) >= 3 && strings.HasPrefix(cells[0], "| `RELAY_") {
			documented[strings.Trim(cells[0], "| `")] = cells[1]
		}
	}
	checked := 0
	for _, line := range strings.Split(string(help), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "RELAY_") {
			continue
		}
		want := "`" + f[2] + "`"
		switch f[2] {
		case "(required)":
			want = "required"
		case "-":
			want = "empty"
		}
		require.Equal(t, want, documented[f[0]], "README's default of %s", f[0])
		checked++
	}
	require.Greater(t, checked, 20)
}

// The console is on by default on the management listener, and RELAY_CONSOLE=false turns
// it off: /console is then the API's, which wants its bearer token.
func TestConsoleIsOnUnlessTurnedOff(t *testing.T) {
	_, dsn := relaytest.NewDB(t)
	get := func(p *relayProcess) (int, string) {
		resp, err := http.Get(p.apiURL + "/console/sign-in")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	on := startRelay(t, dsn, "RELAY_CONSOLE_TITLE=Acme Waitlist")
	status, body := get(on)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "<title>Sign in · Acme Waitlist</title>")
	require.Contains(t, body, `<input id="token" name="token" type="password"`)
	on.stop(t)

	off := startRelay(t, dsn, "RELAY_CONSOLE=false")
	status, body = get(off)
	require.Equal(t, http.StatusUnauthorized, status)
	require.NotContains(t, body, "<form")
}
