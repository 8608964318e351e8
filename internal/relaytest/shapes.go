package relaytest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// ErrorCode checks that an answer has the API's error shape,
// {"error": {"code": "...", "message": "..."}} as JSON, and returns its code.
func ErrorCode(t testing.TB, header http.Header, body []byte) string {
	t.Helper()
	require.Equal(t, "application/json", header.Get("Content-Type"), "body: %s", body)
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "body: %s", body)
	require.NotEmpty(t, e.Error.Code, "body: %s", body)
	require.NotEmpty(t, e.Error.Message, "body: %s", body)
	return e.Error.Code
}

// LockedBuffer is an io.Writer a test can read while another goroutine writes to it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
