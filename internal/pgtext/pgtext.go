// Package pgtext makes text from outside the relay storable in PostgreSQL.
//
// PostgreSQL text (and jsonb strings) must be valid UTF-8 without NUL; a single bad byte in
// one value makes the server refuse the whole statement (SQLSTATE 22021 or 22P05). What a
// receiver answers (a status line, a Location header, a body, the text of a TLS error that
// quotes a certificate's name) can hold any bytes, so every such text goes through Clean
// before the relay stores it. This is the one place that rule lives.
package pgtext

import (
	"strings"
	"unicode/utf8"
)

// Ellipsis marks where Clean cut a text.
const Ellipsis = "…"

// Clean returns s as PostgreSQL accepts it: every invalid byte and every NUL becomes
// U+FFFD, and a text longer than maxBytes is cut on a character boundary, with Ellipsis
// marking the cut, so that the result is at most maxBytes long. maxBytes <= 0 means no
// limit.
func Clean(s string, maxBytes int) string {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		s = replaceBad(s)
	}
	if maxBytes <= 0 || len(s) <= maxBytes {
		return s
	}
	keep := maxBytes - len(Ellipsis)
	if keep <= 0 {
		return cutAt(s, maxBytes)
	}
	return cutAt(s, keep) + Ellipsis
}

// CleanPrefix is Clean for the first bytes of a longer text (such as the first KiB of a
// response body): a character that the cut at the end of b split in two is dropped rather
// than turned into U+FFFD, since the rest of it was simply not read. Replacing bad bytes can
// make the text longer (U+FFFD takes three bytes); it is then cut again to maxBytes, as
// Clean cuts.
func CleanPrefix(b []byte, maxBytes int) string {
	end := len(b)
	// A split character is at most utf8.UTFMax-1 bytes at the end: find where the last
	// character starts and whether it is complete.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				end = i
			}
			break
		}
	}
	return Clean(string(b[:end]), maxBytes)
}

// replaceBad replaces each invalid byte and each NUL of s with U+FFFD.
func replaceBad(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == 0:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// cutAt returns the longest prefix of the valid UTF-8 text s that ends on a character
// boundary and is at most n bytes long.
func cutAt(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
