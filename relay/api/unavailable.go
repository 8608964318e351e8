package api

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/lib/pq"
)

// databaseUnavailable reports whether err, which a handler met while the request's context
// was ctx, means that the database cannot be reached or is not taking work right now, as
// opposed to a bug or a bad row: the caller should retry later (503), and nothing is wrong
// with its request.
//
// It is true for a lost or refused connection (driver.ErrBadConn, a network error, the
// connection closed mid-answer), for PostgreSQL errors of class 08 (connection exception)
// and 53 (insufficient resources, such as 53300 too_many_connections), for 57P01, 57P02 and
// 57P03 (administrator or crash shutdown, cannot connect now), and for a query cut because
// ctx's deadline passed: the database did not answer in time. A context the client
// cancelled is not: nobody is waiting for the answer.
func databaseUnavailable(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	deadlinePassed := errors.Is(ctx.Err(), context.DeadlineExceeded)
	if pqErr, ok := errors.AsType[*pq.Error](err); ok {
		switch pqErr.Code {
		case "57P01", "57P02", "57P03":
			return true
		case "57014": // query_canceled: lib/pq cancels the statement when ctx ends
			return deadlinePassed
		}
		switch pqErr.Code.Class() {
		case "08", "53":
			return true
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return deadlinePassed
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// What a dial or a read on a dead connection answers. io.EOF comes from lib/pq when the
	// server closes the connection during start-up (a proxy or pooler in front of a database
	// that is down); no handler meets it otherwise, since bodies are read before any query.
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true // the database's host name does not resolve
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
