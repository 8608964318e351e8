// Package pgerr sorts the errors of database calls into what the caller does next: wait and
// try the same statement again (the database is unavailable, or asked for a retry), or stop
// retrying it as it is (the database refused the statement's data, and always will).
//
// Only the SQLSTATE decides, never the message: messages are translated by lc_messages.
package pgerr

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/lib/pq"
)

// Code answers the SQLSTATE of err, or "" when err does not come from the server.
func Code(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	return ""
}

// Unavailable reports whether err means the database could not be reached or is not
// accepting work right now, so that the same statement may succeed later: a network error,
// a connection closed under the call, a deadline, or a server answer of class 08
// (connection exception), 53 (insufficient resources), 57 (operator intervention: shutdown,
// cannot connect now, statement cancelled), 58 (system error), 40001/40P01 (serialization
// failure, deadlock) or 55P03 (lock not available).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if code := Code(err); code != "" {
		switch {
		case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"),
			strings.HasPrefix(code, "57"), strings.HasPrefix(code, "58"),
			code == "40001", code == "40P01", code == "55P03":
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}

// RefusedData reports whether the server refused a statement for the data it carried:
// SQLSTATE class 22 (data exception: a text that is not valid UTF-8 or holds a NUL, a
// number out of range), 23 (integrity constraint violation) or 54 (program limit exceeded,
// such as an index row too large). Sent again unchanged it fails again; a batch that fails
// this way should be split so that one bad row does not hold back the others.
func RefusedData(err error) bool {
	code := Code(err)
	return strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23") || strings.HasPrefix(code, "54")
}
