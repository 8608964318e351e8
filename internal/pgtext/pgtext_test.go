package pgtext

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestClean(t *testing.T) {
	long := strings.Repeat("a", 199) + "é" + "tail" // "é" is 2 bytes: bytes 199 and 200
	for _, tc := range []struct {
		name, in string
		max      int
		want     string
	}{
		{"Plain", "HTTP 302", 0, "HTTP 302"},
		{"InvalidBytes", "Location: \xff\xfe/x", 0, "Location: \uFFFD\uFFFD/x"},
		{"NUL", "cn=a\x00b", 0, "cn=a\uFFFDb"},
		{"ShortEnough", "héllo", 6, "héllo"},
		{"CutBeforeSplitCharacter", long, 200, strings.Repeat("a", 197) + Ellipsis},
		{"CutKeepsWholeCharacter", "ab" + "日本語", 8, "ab日" + Ellipsis},
		{"TinyLimit", "日本語", 2, ""},
		{"InvalidThenCut", "\xff\xff\xff", 7, "\uFFFD" + Ellipsis},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Clean(tc.in, tc.max)
			require.Equal(t, tc.want, got)
			require.True(t, utf8.ValidString(got))
			require.NotContains(t, got, "\x00")
			if tc.max > 0 {
				require.LessOrEqual(t, len(got), tc.max)
			}
		})
	}
}

func TestCleanPrefix(t *testing.T) {
	b := []byte("ok 日本")
	require.Equal(t, "ok 日", CleanPrefix(b[:len(b)-1], 0), "a character split by the read limit is dropped")
	require.Equal(t, "ok 日本", CleanPrefix(b, 0))
	require.Equal(t, "a\uFFFDb\uFFFD", CleanPrefix([]byte("a\x00b\xff"), 0), "bad bytes inside are replaced")
	require.Equal(t, "", CleanPrefix(nil, 0))
	// A KiB of bad bytes becomes three KiB of U+FFFD: cut again to the limit.
	bad := CleanPrefix(bytes.Repeat([]byte{0xff}, 1024), 1024)
	require.LessOrEqual(t, len(bad), 1024)
	require.True(t, utf8.ValidString(bad))
}

func FuzzClean(f *testing.F) {
	f.Add("Location: \xff\xfe", 200)
	f.Add(strings.Repeat("é", 150), 201)
	f.Add("a\x00b", 1)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max %= 4096
		got := Clean(s, max)
		if !utf8.ValidString(got) || strings.Contains(got, "\x00") {
			t.Fatalf("Clean(%q, %d) = %q: not storable", s, max, got)
		}
		if max > 0 && len(got) > max {
			t.Fatalf("Clean(%q, %d) = %q: %d bytes", s, max, got, len(got))
		}
		if max <= 0 && utf8.ValidString(s) && !strings.Contains(s, "\x00") && got != s {
			t.Fatalf("Clean changed a storable text: %q -> %q", s, got)
		}
		p := CleanPrefix([]byte(s), max)
		if !utf8.ValidString(p) || strings.Contains(p, "\x00") || (max > 0 && len(p) > max) {
			t.Fatalf("CleanPrefix(%q) = %q: not storable", s, p)
		}
	})
}
