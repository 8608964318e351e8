package relaytest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/referralloop/outbox-relay/internal/pgstmt"
)

// PoolMode is PgBouncer's pool_mode: when a server connection goes back to the pool.
type PoolMode string

const (
	// TransactionPooling lends a server connection for one transaction (or one statement
	// outside a transaction): the mode many-pod deployments use.
	TransactionPooling PoolMode = "transaction"
	// SessionPooling lends it for the whole client connection.
	SessionPooling PoolMode = "session"
)

// StartPgBouncer runs a real PgBouncer (Debian's pgbouncer package) in front of the server
// dsn points at, on a free loopback port, in the given pool mode, and returns dsn rewritten
// to go through it. The bouncer stops when the test ends. Without a pgbouncer binary the test
// is skipped, or fails under CI=true, where .ci/run installs it.
//
// PgBouncer refuses to run as root, so as root it runs as the user nobody.
func StartPgBouncer(t testing.TB, dsn string, mode PoolMode) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer" // Debian installs it outside a normal user's PATH
		if _, statErr := os.Stat(bin); statErr != nil {
			msg := "pgbouncer not found: install it with `apt-get install pgbouncer`"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("StartPgBouncer: %v", err)
	}
	password, _ := u.User.Password()
	port := freePort(t)

	dir, err := os.MkdirTemp("", "pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("StartPgBouncer runs PgBouncer as nobody when root: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	// auth_type any: the bouncer lets every client in and logs in to PostgreSQL as the
	// user of the database line. extra_float_digits is a startup parameter lib/pq sends.
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s user=%s password=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = %s
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
`, u.Hostname(), portOr5432(u), u.User.Username(), password, port, mode)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, iniPath)
	out := &LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pgbouncer: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // stop at once, closing every connection
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("pgbouncer output:\n%s", out.String())
		}
	})

	through := *u
	through.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	bounced := through.String()
	db, err := pgstmt.Open(bounced)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return bounced
		}
		select {
		case <-exited:
			t.Fatalf("pgbouncer exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func portOr5432(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return "5432"
}

// freePort answers a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
