package proxy_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/proxy"
)

func TestStreaming(t *testing.T) {
	t.Parallel()
	// The upstream writes its first chunk, then waits until the client has read it before it
	// writes the last. A proxy that buffered would deadlock here, and the read times out.
	for name, knownLength := range map[string]bool{"Chunked": false, "KnownLength": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			b := setup(t, env{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				if knownLength {
					w.Header().Set("Content-Length", fmt.Sprint(len("first\nlast\n")))
				}
				_, _ = io.WriteString(w, "first\n")
				_ = http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				case <-time.After(10 * time.Second):
				}
				_, _ = io.WriteString(w, "last\n")
			})})
			// The request and the first read both run under the guard: a proxy that buffered
			// would hold back the headers as well as the first chunk.
			type first struct {
				resp *http.Response
				br   *bufio.Reader
				line string
				err  error
			}
			got := make(chan first, 1)
			go func() {
				resp, err := b.client.Get(b.srv.URL + "/stream")
				if err != nil {
					got <- first{err: err}
					return
				}
				br := bufio.NewReader(resp.Body)
				line, err := br.ReadString('\n')
				got <- first{resp: resp, br: br, line: line, err: err}
			}()
			var f first
			select {
			case f = <-got:
			case <-time.After(5 * time.Second):
				close(release)
				f = <-got
				if f.resp != nil {
					f.resp.Body.Close()
				}
				require.FailNow(t, "the first chunk did not arrive before the last was written")
			}
			require.NoError(t, f.err)
			defer f.resp.Body.Close()
			require.Equal(t, "first\n", f.line)
			br := f.br
			close(release)
			rest, err := io.ReadAll(br)
			require.NoError(t, err)
			require.Equal(t, "last\n", string(rest))
		})
	}
}

// webSocketGUID is RFC 6455's magic string for Sec-WebSocket-Accept.
const webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func webSocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + webSocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// webSocketEcho is a minimal RFC 6455 server: handshake, then every frame echoed back
// unmasked, until a close frame (echoed too).
func webSocketEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "want a websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		webSocketAccept(r.Header.Get("Sec-WebSocket-Key")))
	if brw.Flush() != nil {
		return
	}
	for {
		op, payload, err := readFrame(brw.Reader)
		if err != nil {
			return
		}
		if writeFrame(conn, op, payload, false) != nil || op == 0x8 {
			return
		}
	}
}

// writeFrame writes one final frame with a payload under 126 bytes, masked as a client must.
func writeFrame(w io.Writer, op byte, payload []byte, mask bool) error {
	frame := []byte{0x80 | op}
	if !mask {
		frame = append(frame, byte(len(payload)))
		frame = append(frame, payload...)
	} else {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		frame = append(frame, 0x80|byte(len(payload)))
		frame = append(frame, key[:]...)
		for i, c := range payload {
			frame = append(frame, c^key[i%4])
		}
	}
	_, err := w.Write(frame)
	return err
}

// readFrame reads one frame with a payload under 126 bytes, unmasking it when masked.
func readFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	if n >= 126 {
		return 0, nil, fmt.Errorf("frame too long for this test: %d", n)
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	b := setup(t, env{upstream: http.HandlerFunc(webSocketEcho)})
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))

	const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's example
	_, err = fmt.Fprintf(conn, "GET /socket?room=1 HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer app-token\r\n\r\n", key)
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.True(t, strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"))
	require.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept"))

	for _, msg := range []string{"hello", "", "through the relay \x00\xff"} {
		require.NoError(t, writeFrame(conn, 0x1, []byte(msg), true))
		op, payload, err := readFrame(br)
		require.NoError(t, err)
		require.Equal(t, byte(0x1), op)
		require.Equal(t, msg, string(payload))
	}
	require.NoError(t, writeFrame(conn, 0x8, []byte{0x03, 0xe8}, true))
	op, payload, err := readFrame(br)
	require.NoError(t, err)
	require.Equal(t, byte(0x8), op)
	require.Equal(t, []byte{0x03, 0xe8}, payload)
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the upstream closed, so the relay closes too")
}

func TestSlowUpstreamDoesNotDelayAPI(t *testing.T) {
	t.Parallel()
	const slow = 8
	arrived := make(chan struct{}, slow)
	release := make(chan struct{})
	auth := &fakeAuth{}
	// The application is slow on /slow and also serves the auth URL, as in a real pod.
	mux := http.NewServeMux()
	mux.Handle("/auth", auth)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-time.After(3 * time.Second):
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "finally\n")
	})
	b := setup(t, env{upstream: mux, configure: func(c *proxy.Config) {
		c.AuthURL = c.Upstream.String() + "/auth"
	}})

	var wg sync.WaitGroup
	for range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.client.Get(b.srv.URL + "/slow")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for range slow {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			require.FailNow(t, "the slow requests did not reach the upstream")
		}
	}

	start := time.Now()
	r := b.asKey(t, "key_A", http.MethodGet, "/webhooks/v1/subscriptions")
	elapsed := time.Since(start)
	close(release)
	wg.Wait()
	require.Equal(t, "tenant_a", r.apiEcho(t).TenantID)
	require.EqualValues(t, 1, auth.calls.Load())
	require.Less(t, elapsed, time.Second, "the API waited for the slow upstream")
}
