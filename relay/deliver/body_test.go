package deliver

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAppendBody(t *testing.T) {
	created := time.Date(2026, 11, 27, 5, 0, 0, 123999999, time.FixedZone("CET", 3600))
	tests := []struct {
		name     string
		tenantID string
		payload  string
		want     string
	}{
		{
			name:     "WithTenant",
			tenantID: "wl_42",
			payload:  `{"signup": {"id": "su_1", "position": 17}}`,
			want:     `{"id":"0b0c8f52-5f0e-4a53-9d6c-9a3f6a2a0f11","event_type":"signup.created","timestamp":"2026-11-27T04:00:00.123Z","tenant_id":"wl_42","data":{"signup": {"id": "su_1", "position": 17}}}`,
		},
		{
			name:    "WithoutTenantLeavesItOut",
			payload: `[1, 2]`,
			want:    `{"id":"0b0c8f52-5f0e-4a53-9d6c-9a3f6a2a0f11","event_type":"signup.created","timestamp":"2026-11-27T04:00:00.123Z","data":[1, 2]}`,
		},
		{
			name:     "TenantIsEscaped",
			tenantID: "a\"b\\c<\n\x01\u2028é",
			payload:  `null`,
			want:     `{"id":"0b0c8f52-5f0e-4a53-9d6c-9a3f6a2a0f11","event_type":"signup.created","timestamp":"2026-11-27T04:00:00.123Z","tenant_id":"a\"b\\c\u003c\n\u0001\u2028é","data":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendBody(nil, "0b0c8f52-5f0e-4a53-9d6c-9a3f6a2a0f11", "signup.created", created, tt.tenantID, tt.payload)
			require.Equal(t, tt.want, string(got))
			require.True(t, json.Valid(got))
		})
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x00\x1f\x7f", "<>&", "\u2028\u2029", "bad\xffutf8", "日本語"} {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendJSONString(nil, s)), "%q", s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("signup.created")
	f.Add("\xff\u2028\"")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendJSONString(nil, s)))
	})
}

func BenchmarkAppendBody(b *testing.B) {
	created := time.Now()
	payload := `{"signup": {"id": "su_1", "email": "a@example.com", "position": 17}}`
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendBody(buf[:0], "0b0c8f52-5f0e-4a53-9d6c-9a3f6a2a0f11", "signup.created", created, "wl_42", payload)
	}
}
