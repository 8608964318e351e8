package main

import (
	"encoding/binary"
	"testing"
)

// frame builds one typed protocol message with a body of n bytes.
func frame(typ byte, n int) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+n))
	return append(b, make([]byte, n)...)
}

func startupMessage(code uint32, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint32(b[0:], uint32(8+n))
	binary.BigEndian.PutUint32(b[4:], code)
	return b
}

func TestMsgCounter(t *testing.T) {
	var stream []byte
	stream = append(stream, startupMessage(protocolV3, 30)...)
	stream = append(stream, frame('p', 12)...) // password: not counted
	// A parameterised query as lib/pq sends it, then a simple query.
	for _, typ := range []byte{'P', 'D', 'S', 'B', 'E', 'S'} {
		stream = append(stream, frame(typ, 17)...)
	}
	stream = append(stream, frame('Q', 40)...)
	stream = append(stream, frame('X', 0)...)

	for _, chunk := range []int{1, 3, 7, len(stream)} {
		var c wireCounters
		m := msgCounter{startup: true, counts: &c}
		for b := stream; len(b) > 0; {
			n := min(chunk, len(b))
			m.feed(b[:n])
			b = b[n:]
		}
		got := c.snapshot()
		if got.Statements != 2 || got.RoundTrips != 3 || got.Parse != 1 || got.Bind != 1 {
			t.Fatalf("chunks of %d: got %+v, want 2 statements, 3 round trips, 1 parse, 1 bind", chunk, got)
		}
	}
}

func TestMsgCounterStopsAtTLS(t *testing.T) {
	var c wireCounters
	m := msgCounter{startup: true, counts: &c}
	m.feed(startupMessage(sslRequestCode, 0))
	m.feed(frame('Q', 3)) // would be TLS bytes in reality
	if c.query.Load() != 0 || c.opaque.Load() != 1 {
		t.Fatalf("after SSLRequest: query=%d opaque=%d, want 0 and 1", c.query.Load(), c.opaque.Load())
	}
}
