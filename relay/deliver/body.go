package deliver

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// timestampLayout is RFC 3339 in UTC with exactly three fractional digits. Go's formatting
// truncates, which is what "created_at truncated to the millisecond" asks.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Body is the webhook body sent for an event: what a page showing a request as it was sent
// must show, byte for byte.
func Body(eventID, eventType string, createdAt time.Time, tenantID, payload string) []byte {
	return appendBody(nil, eventID, eventType, createdAt, tenantID, payload)
}

// appendBody appends the webhook body for one event to dst:
//
//	{"id":"…","event_type":"…","timestamp":"…","tenant_id":"…","data":…}
//
// payload is the row's jsonb as PostgreSQL prints it, so the bytes are the same on every
// attempt and every replica. tenantID is left out when empty.
func appendBody(dst []byte, eventID, eventType string, createdAt time.Time, tenantID, payload string) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, eventID)
	dst = append(dst, `,"event_type":`...)
	dst = appendJSONString(dst, eventType)
	dst = append(dst, `,"timestamp":"`...)
	dst = createdAt.UTC().AppendFormat(dst, timestampLayout)
	dst = append(dst, '"')
	if tenantID != "" {
		dst = append(dst, `,"tenant_id":`...)
		dst = appendJSONString(dst, tenantID)
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, payload...)
	dst = append(dst, '}')
	return dst
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires plus <, > and &
// the way encoding/json does, so that bodies look the same as the rest of the ecosystem's.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, `\u202`...)
			dst = strconv.AppendInt(dst, int64(r&0xf), 16)
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
