package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// relayProc is one running relay replica.
type relayProc struct {
	*child
	apiAddr, opsAddr string
	logPath          string
}

// benchToken is the relay's API token; the harness never calls the API, but the relay
// refuses to start without one.
const benchToken = "bench-token"

// freePort returns a loopback address with a port that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// relayEnv is the relay's environment: the harness's own, without any RELAY_ variable (a
// stray one in the shell must not change what is measured), plus the given settings.
func relayEnv(settings ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") {
			env = append(env, kv)
		}
	}
	return append(env, settings...)
}

// startRelay starts one replica of bin against databaseURL, logging to logPath.
func startRelay(bin, databaseURL, logPath string, extraEnv []string) (*relayProc, error) {
	apiAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	opsAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = relayEnv(append([]string{
		"RELAY_DATABASE_URL=" + databaseURL,
		"RELAY_API_TOKEN=" + benchToken,
		"RELAY_LISTEN_ADDR=" + apiAddr,
		"RELAY_OPS_ADDR=" + opsAddr,
		"RELAY_ALLOW_HTTP=true",
		"RELAY_ALLOW_PRIVATE_TARGETS=true",
		"RELAY_LOG_LEVEL=warn",
	}, extraEnv...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	c, err := startChild(cmd, "relay", logFile)
	if err != nil {
		return nil, err
	}
	return &relayProc{child: c, apiAddr: apiAddr, opsAddr: opsAddr, logPath: logPath}, nil
}

// waitReady polls /readyz every 5 ms and returns when it first answers 200.
func (r *relayProc) waitReady(ctx context.Context, timeout time.Duration) (time.Time, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("http://" + r.opsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		if r.exited() {
			return time.Time{}, fmt.Errorf("relay exited before it was ready (%v); its log:\n%s", r.err, tail(r.logPath, 20))
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("relay not ready after %s; its log:\n%s", timeout, tail(r.logPath, 20))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logSummary counts what a relay wrote at warn level and above (the bench runs it with
// RELAY_LOG_LEVEL=warn, so everything in the log is worth a look).
type logSummary struct {
	Warn   int      `json:"warn"`
	Error  int      `json:"error"`
	Other  int      `json:"other_lines"` // not zerolog JSON: start-up errors, panics
	Sample []string `json:"sample,omitempty"`
}

func (s *logSummary) add(o logSummary) {
	s.Warn += o.Warn
	s.Error += o.Error
	s.Other += o.Other
	for _, m := range o.Sample {
		s.note(m)
	}
}

// note keeps up to eight distinct messages.
func (s *logSummary) note(m string) {
	for _, have := range s.Sample {
		if have == m {
			return
		}
	}
	if len(s.Sample) < 8 {
		s.Sample = append(s.Sample, m)
	}
}

func scanLog(path string) logSummary {
	var s logSummary
	f, err := os.Open(path)
	if err != nil {
		s.Other++
		s.note("cannot read relay log: " + err.Error())
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var entry struct {
			Level     string `json:"level"`
			Message   string `json:"message"`
			Error     string `json:"error"`
			Component string `json:"component"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Level == "" {
			s.Other++
			s.note(truncate(line, 160))
			continue
		}
		switch entry.Level {
		case "warn":
			s.Warn++
		case "error", "fatal", "panic":
			s.Error++
		default:
			continue
		}
		m := entry.Level + ": " + entry.Message
		if entry.Component != "" {
			m = entry.Level + " [" + entry.Component + "]: " + entry.Message
		}
		if entry.Error != "" {
			m += ": " + entry.Error
		}
		s.note(truncate(m, 200))
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
