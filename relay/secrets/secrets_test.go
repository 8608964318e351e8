package secrets_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

const plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, secrets.KeySize) }

func newBox(t *testing.T, current, previous []byte) *secrets.Box {
	t.Helper()
	b, err := secrets.New(current, previous)
	require.NoError(t, err)
	return b
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	b := newBox(t, k, nil)
	require.True(t, b.Enabled())

	for _, p := range []string{plain, "", "é😀\x00 any text", strings.Repeat("x", 10000)} {
		sealed, err := b.Seal(p)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(sealed, "enc:v1:"+secrets.KeyID(k)+":"), sealed)
		if p != "" {
			require.NotContains(t, sealed, p)
		}
		got, err := b.Open(sealed)
		require.NoError(t, err)
		require.Equal(t, p, got)
		require.False(t, b.NeedsReseal(sealed))
	}

	// A fresh nonce every time: the same secret never seals to the same value.
	s1, _ := b.Seal(plain)
	s2, _ := b.Seal(plain)
	require.NotEqual(t, s1, s2)
}

func TestFormat(t *testing.T) {
	t.Parallel()
	k := testKey(7)
	b := newBox(t, k, nil)
	sealed, err := b.Seal(plain)
	require.NoError(t, err)

	parts := strings.SplitN(sealed, ":", 4)
	require.Len(t, parts, 4)
	require.Equal(t, []string{"enc", "v1"}, parts[:2])
	require.Len(t, parts[2], 8)
	require.Equal(t, secrets.KeyID(k), parts[2])
	raw, err := base64.StdEncoding.DecodeString(parts[3])
	require.NoError(t, err)
	require.Len(t, raw, 12+len(plain)+16, "nonce, ciphertext, GCM tag")

	require.Equal(t, "66687aad", secrets.KeyID(make([]byte, 32)), "the first 8 hex digits of SHA-256 of the key")
}

func TestPreviousKey(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testKey(1), testKey(2)
	sealedOld, err := newBox(t, oldKey, nil).Seal(plain)
	require.NoError(t, err)

	rotated := newBox(t, newKey, oldKey)
	got, err := rotated.Open(sealedOld)
	require.NoError(t, err)
	require.Equal(t, plain, got)
	require.True(t, rotated.NeedsReseal(sealedOld), "sealed with the previous key")

	sealedNew, err := rotated.Seal(plain)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(sealedNew, "enc:v1:"+secrets.KeyID(newKey)+":"), "the current key seals")
	require.False(t, rotated.NeedsReseal(sealedNew))

	// After the rotation ends the old key is gone, and what it sealed no longer opens.
	_, err = newBox(t, newKey, nil).Open(sealedOld)
	require.ErrorIs(t, err, secrets.ErrUnknownKey)
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	sealed, err := newBox(t, testKey(1), nil).Seal(plain)
	require.NoError(t, err)

	_, err = newBox(t, testKey(2), testKey(3)).Open(sealed)
	require.ErrorIs(t, err, secrets.ErrUnknownKey)
	require.Contains(t, err.Error(), secrets.KeyID(testKey(1)), "the error names the key id it wanted")

	// Without any key a sealed value is an error, not a pass-through.
	for _, b := range []*secrets.Box{newBox(t, nil, nil), nil, {}} {
		_, err = b.Open(sealed)
		require.ErrorIs(t, err, secrets.ErrNoKey)
	}

	// A value that claims the current key's id but was sealed with another key.
	other, err := newBox(t, testKey(9), nil).Seal(plain)
	require.NoError(t, err)
	forged := "enc:v1:" + secrets.KeyID(testKey(1)) + ":" + strings.SplitN(other, ":", 4)[3]
	_, err = newBox(t, testKey(1), nil).Open(forged)
	require.ErrorIs(t, err, secrets.ErrDecrypt)
}

func TestTampered(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	b := newBox(t, k, testKey(2))
	sealed, err := b.Seal(plain)
	require.NoError(t, err)
	prefix := sealed[:strings.LastIndexByte(sealed, ':')+1]
	raw, err := base64.StdEncoding.DecodeString(sealed[len(prefix):])
	require.NoError(t, err)

	for i := range raw {
		flipped := bytes.Clone(raw)
		flipped[i] ^= 0x01
		_, err := b.Open(prefix + base64.StdEncoding.EncodeToString(flipped))
		require.ErrorIs(t, err, secrets.ErrDecrypt, "byte %d", i)
	}

	// The prefix is authenticated: the same bytes under the previous key's id do not open.
	moved := "enc:v1:" + secrets.KeyID(testKey(2)) + ":" + sealed[len(prefix):]
	_, err = b.Open(moved)
	require.ErrorIs(t, err, secrets.ErrDecrypt)

	for _, bad := range []string{
		"enc:", "enc:v1:", "enc:v2:" + secrets.KeyID(k) + ":AAAA", "enc:v1:" + secrets.KeyID(k),
		"enc:v1:" + secrets.KeyID(k) + ":", "enc:v1:" + secrets.KeyID(k) + ":!!!!",
		"enc:v1:" + secrets.KeyID(k) + ":AAAA", "enc:v1:XYZ:AAAA", "enc:v1:" + strings.ToUpper(secrets.KeyID(k)) + ":AAAA",
		sealed[:len(sealed)-4], sealed + "AAAA",
	} {
		_, err := b.Open(bad)
		require.Error(t, err, bad)
		require.True(t, errors.Is(err, secrets.ErrMalformed) || errors.Is(err, secrets.ErrDecrypt) || errors.Is(err, secrets.ErrUnknownKey), "%q: %v", bad, err)
	}
}

func TestClearPassthrough(t *testing.T) {
	t.Parallel()
	for name, b := range map[string]*secrets.Box{
		"WithKey":    newBox(t, testKey(1), nil),
		"WithKeys":   newBox(t, testKey(1), testKey(2)),
		"WithoutKey": newBox(t, nil, nil),
		"Nil":        nil,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := b.Open(plain)
			require.NoError(t, err)
			require.Equal(t, plain, got, "secrets stored before encryption was turned on")
			got, err = b.Open(`{"not":"a secret"}`)
			require.NoError(t, err)
			require.Equal(t, `{"not":"a secret"}`, got)
			require.Equal(t, b.Enabled(), b.NeedsReseal(plain), "clear values need sealing once there is a key")
		})
	}

	// Without a key, Seal stores as it is.
	b := newBox(t, nil, nil)
	require.False(t, b.Enabled())
	sealed, err := b.Seal(plain)
	require.NoError(t, err)
	require.Equal(t, plain, sealed)
	sealed, err = (*secrets.Box)(nil).Seal(plain)
	require.NoError(t, err)
	require.Equal(t, plain, sealed)
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	t.Parallel()
	k1, k2 := testKey(0x41), testKey(0x42)
	sealed, err := newBox(t, k1, nil).Seal(plain)
	require.NoError(t, err)
	body := sealed[strings.LastIndexByte(sealed, ':')+1:]

	var errs []error
	for _, c := range []struct {
		box    *secrets.Box
		stored string
	}{
		{newBox(t, k2, nil), sealed},
		{newBox(t, nil, nil), sealed},
		{newBox(t, k1, nil), sealed[:len(sealed)-2] + "=="},
		{newBox(t, k1, nil), "enc:v1:" + secrets.KeyID(k1) + ":" + plain},
		{newBox(t, k1, nil), "enc:v9:" + plain},
		{newBox(t, k1, nil), "enc:v1:" + plain},
	} {
		_, err := c.box.Open(c.stored)
		require.Error(t, err)
		errs = append(errs, err)
	}
	_, err = secrets.New(testKey(1)[:31], nil)
	errs = append(errs, err)
	for _, err := range errs {
		msg := err.Error()
		for _, s := range []string{plain, "MfKQ9r8G", body, string(k1), string(k2), base64.StdEncoding.EncodeToString(k1)} {
			require.NotContains(t, msg, s)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := secrets.New(testKey(1)[:16], nil)
	require.ErrorContains(t, err, "current key: key is 16 bytes, want 32")
	_, err = secrets.New(testKey(1), make([]byte, 33))
	require.ErrorContains(t, err, "previous key: key is 33 bytes, want 32")
	_, err = secrets.New(nil, testKey(1))
	require.ErrorContains(t, err, "needs a current key")

	// The same key as current and previous is just the current key.
	b := newBox(t, testKey(1), testKey(1))
	sealed, err := b.Seal(plain)
	require.NoError(t, err)
	got, err := b.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, plain, got)
}

func FuzzOpen(f *testing.F) {
	b, err := secrets.New(testKey(1), testKey(2))
	require.NoError(f, err)
	sealed, err := b.Seal(plain)
	require.NoError(f, err)
	for _, s := range []string{sealed, plain, "", "enc:", "enc:v1:", "enc:v1:00000000:", "enc:v1:" + secrets.KeyID(testKey(1)) + ":AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		got, err := b.Open(stored)
		if !strings.HasPrefix(stored, "enc:") {
			require.NoError(t, err)
			require.Equal(t, stored, got)
			return
		}
		if err == nil {
			// Only values really sealed with one of the keys open; re-sealing round-trips.
			again, err := b.Seal(got)
			require.NoError(t, err)
			back, err := b.Open(again)
			require.NoError(t, err)
			require.Equal(t, got, back)
		}
		_ = b.NeedsReseal(stored)
	})
}
