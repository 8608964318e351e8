package api

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/stretchr/testify/require"
)

func TestDatabaseUnavailableClassifies(t *testing.T) {
	t.Parallel()
	live := context.Background()
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	gone, cancelGone := context.WithCancel(context.Background())
	cancelGone()
	pqErr := func(code string) error {
		return fmt.Errorf("reading subscription: %w", &pq.Error{Code: pqerror.Code(code)})
	}

	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"BadConn", live, fmt.Errorf("x: %w", driver.ErrBadConn), true},
		{"Refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"Reset", live, fmt.Errorf("x: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{"ClosedEOF", live, fmt.Errorf("connecting to 127.0.0.1:5432: %w", io.EOF), true},
		{"UnexpectedEOF", live, io.ErrUnexpectedEOF, true},
		{"NetClosed", live, net.ErrClosed, true},
		{"HostNotFound", live, &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, true},
		{"ConnectionException", live, pqErr("08006"), true},
		{"CannotConnect", live, pqErr("08001"), true},
		{"AdminShutdown", live, pqErr("57P01"), true},
		{"CrashShutdown", live, pqErr("57P02"), true},
		{"CannotConnectNow", live, pqErr("57P03"), true},
		{"TooManyConnections", live, pqErr("53300"), true},
		{"OutOfMemory", live, pqErr("53200"), true},
		{"DiskFull", live, pqErr("53100"), true},
		{"QueryCanceledByDeadline", expired, pqErr("57014"), true},
		{"DeadlineExceeded", expired, fmt.Errorf("x: %w", context.DeadlineExceeded), true},

		{"QueryCanceledByClient", gone, pqErr("57014"), false},
		{"ClientGone", gone, context.Canceled, false},
		{"DeadlineNotOurs", live, context.DeadlineExceeded, false},
		{"QueryCanceledOtherwise", live, pqErr("57014"), false},
		{"UniqueViolation", live, pqErr("23505"), false},
		{"UndefinedTable", live, pqErr("42P01"), false},
		{"NoRows", live, sql.ErrNoRows, false},
		{"TxDone", live, sql.ErrTxDone, false},
		{"Other", live, errors.New("sealing secret: no randomness"), false},
		{"Nil", live, nil, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, databaseUnavailable(tt.ctx, tt.err), tt.name)
	}
}
