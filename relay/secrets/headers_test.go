package secrets_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

func TestOpenHeaders(t *testing.T) {
	t.Parallel()
	box := newBox(t, testKey(1), nil)
	sealed, err := box.Seal("Bearer tok-123")
	require.NoError(t, err)

	raw := `{"Authorization": {"sealed": "` + sealed + `"}, "X-Team": "growth", "X-Odd": "enc:v1:not-sealed"}`
	got, err := secrets.OpenHeaders([]byte(raw), box.Open)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"Authorization": "Bearer tok-123",
		"X-Team":        "growth",
		"X-Odd":         "enc:v1:not-sealed", // a JSON string is in clear, whatever it looks like
	}, got)

	for _, empty := range []string{"", "{}", "null", " "} {
		got, err := secrets.OpenHeaders([]byte(empty), box.Open)
		require.NoError(t, err, empty)
		require.Empty(t, got, empty)
	}

	// Without the key the sealed value is an error naming the header, never its value.
	_, err = secrets.OpenHeaders([]byte(raw), newBox(t, nil, nil).Open)
	require.ErrorIs(t, err, secrets.ErrNoKey)
	require.ErrorContains(t, err, `"Authorization"`)
	require.NotContains(t, err.Error(), "tok-123")
	require.NotContains(t, err.Error(), sealed)
	_, err = secrets.OpenHeaders([]byte(raw), newBox(t, testKey(2), nil).Open)
	require.ErrorIs(t, err, secrets.ErrUnknownKey)
}

func TestOpenHeadersMalformed(t *testing.T) {
	t.Parallel()
	box := newBox(t, testKey(1), nil)
	for _, raw := range []string{
		`[]`, `"x"`, `42`, `{"A": 1}`, `{"A": null}`, `{"A": ["x"]}`, `{"A": {}}`,
		`{"A": {"sealed": ""}}`, `{"A": {"sealed": 1}}`,
		`{"A": {"sealed": "enc:v1:00000000:AA==", "other": 1}}`, `{"A": "x"`,
	} {
		_, err := secrets.OpenHeaders([]byte(raw), box.Open)
		require.ErrorIs(t, err, secrets.ErrMalformedHeaders, raw)
	}
}

func TestSealHeaderValue(t *testing.T) {
	t.Parallel()
	box := newBox(t, testKey(3), nil)
	v, err := secrets.SealHeaderValue("Bearer tok-123", box.Seal)
	require.NoError(t, err)
	require.True(t, v.IsSealed())
	require.True(t, strings.HasPrefix(v.Sealed, "enc:v1:"+secrets.KeyID(testKey(3))+":"), v.Sealed)

	clear, err := secrets.SealHeaderValue("growth", newBox(t, nil, nil).Seal)
	require.NoError(t, err)
	require.Equal(t, secrets.HeaderValue{Plain: "growth"}, clear)

	raw, err := secrets.EncodeHeaders(map[string]secrets.HeaderValue{"Authorization": v, "X-Team": clear})
	require.NoError(t, err)
	require.NotContains(t, string(raw), "tok-123")
	var generic map[string]any
	require.NoError(t, json.Unmarshal(raw, &generic))
	require.Equal(t, map[string]any{"sealed": v.Sealed}, generic["Authorization"])
	require.Equal(t, "growth", generic["X-Team"])

	back, err := secrets.DecodeHeaders(raw)
	require.NoError(t, err)
	require.Equal(t, map[string]secrets.HeaderValue{"Authorization": v, "X-Team": clear}, back)
	plain, err := secrets.OpenHeaders(raw, box.Open)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Authorization": "Bearer tok-123", "X-Team": "growth"}, plain)

	empty, err := secrets.EncodeHeaders(nil)
	require.NoError(t, err)
	require.Equal(t, "{}", string(empty))
}

// FuzzOpenHeaders: whatever the column holds, OpenHeaders answers or errs without panicking,
// and what it reads survives a round trip through EncodeHeaders.
func FuzzOpenHeaders(f *testing.F) {
	box, err := secrets.New(testKey(1), nil)
	if err != nil {
		f.Fatal(err)
	}
	sealed, _ := box.Seal("Bearer tok")
	for _, s := range []string{`{}`, `null`, `{"A": "x"}`, `{"A": {"sealed": "` + sealed + `"}}`,
		`{"A": {"sealed": "enc:v1:00000000:AA=="}}`, `{"A": {"sealed": ""}}`, `{"A": 1}`, `[]`, `{"A": "enc:v1:x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		plain, err := secrets.OpenHeaders(raw, box.Open)
		if err != nil {
			return
		}
		stored, err := secrets.DecodeHeaders(raw)
		require.NoError(t, err)
		again, err := secrets.EncodeHeaders(stored)
		require.NoError(t, err)
		plainAgain, err := secrets.OpenHeaders(again, box.Open)
		require.NoError(t, err)
		require.Equal(t, plain, plainAgain)
	})
}
