package main

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// attemptErrors answers the error of every attempt of the deliveries to subscription id, in
// order ("" for a success).
func attemptErrors(t *testing.T, db *sqlx.DB, id string) []string {
	t.Helper()
	var errs []string
	require.NoError(t, db.Select(&errs, `SELECT coalesce(a.error, '') FROM relay.attempts a
		JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.subscription_id = $1 ORDER BY a.started_at, a.attempt`, id))
	return errs
}

func writeCAFile(t *testing.T, pem []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(path, pem, 0o600))
	return path
}

// TestPrivateCAThroughEgressProxy: an https receiver whose certificate a private CA signed.
// Without RELAY_CA_FILE the attempt fails because the certificate is not trusted; the next
// relay, with the CA file and an egress proxy with credentials, delivers the retry through
// the proxy, which saw the CONNECT and the credentials, never the request, and the password
// is in no log line.
func TestPrivateCAThroughEgressProxy(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	ca := relaytest.NewPrivateCA(t)
	rc := ca.NewReceiver(t)
	proxy := relaytest.NewConnectProxy(t)
	id := addSubscription(t, db, rc.URL+"/hook")

	p := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=1s,1s,1s")
	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool { return len(attemptErrors(t, db, id)) >= 1 },
		"no attempt recorded:\n%s", tail(p.Output(), 20))
	require.Equal(t, 0, p.stop(t))
	errs := attemptErrors(t, db, id)
	require.Contains(t, errs[0], "tls: failed to verify certificate: x509: certificate signed by unknown authority")
	require.Empty(t, rc.Requests())

	const password = "pr0xy-s3cret"
	proxyURL := strings.Replace(proxy.URL, "http://", "http://relay:"+password+"@", 1)
	q := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=1s,1s,1s", "RELAY_CA_FILE="+writeCAFile(t, ca.PEM), "RELAY_EGRESS_PROXY="+proxyURL)
	waitAllSucceeded(t, db, 1, 20*time.Second, q)
	reqs := rc.Requests()
	require.Len(t, reqs, 1)
	require.Contains(t, string(reqs[0].Body), `"seq"`)
	receiver := strings.TrimPrefix(rc.URL, "https://")
	require.Equal(t, []string{receiver}, proxy.Authorities(), "the proxy was asked for a tunnel to the receiver")
	require.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("relay:"+password)), proxy.ProxyAuthorizations()[0])
	errs = attemptErrors(t, db, id)
	require.Equal(t, "", errs[len(errs)-1])
	require.Equal(t, 0, q.stop(t))
	require.NotContains(t, q.Output(), password, "the proxy's password is in no log line")
	require.Contains(t, q.Output(), "relay:xxxxx@", "the configuration line shows the proxy, masked")
}

// TestEgressProxyRefusal: a proxy that refuses CONNECT fails the attempt with its answer in
// the attempt's error, the relay stays ready, and the retry goes out once the proxy allows.
func TestEgressProxyRefusal(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := relaytest.NewReceiver(t)
	proxy := relaytest.NewConnectProxy(t)
	proxy.Refuse(func(string) (int, string) { return http.StatusForbidden, "egress denied: destination not allowed" })
	id := addSubscription(t, db, rc.URL+"/hook")

	p := startRelay(t, dsn, "RELAY_RETRY_SCHEDULE=1s", "RELAY_EGRESS_PROXY="+proxy.URL)
	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool { return len(attemptErrors(t, db, id)) >= 1 },
		"no attempt recorded:\n%s", tail(p.Output(), 20))
	first := attemptErrors(t, db, id)[0]
	require.Equal(t, "egress proxy "+strings.TrimPrefix(proxy.URL, "http://")+" refused CONNECT "+
		strings.TrimPrefix(rc.URL, "http://")+": 403 Forbidden: egress denied: destination not allowed", first)
	require.Equal(t, "pending", deliveryStatus(t, db, id), "retried on the schedule")
	status, body := p.readyz(t)
	require.Equal(t, http.StatusOK, status, body)

	proxy.Refuse(nil)
	waitAllSucceeded(t, db, 1, 15*time.Second, p)
	require.Len(t, rc.Requests(), 1)
	require.Len(t, attemptErrors(t, db, id), 2)
	require.Equal(t, 0, p.stop(t))
}

func deliveryStatus(t *testing.T, db *sqlx.DB, subscriptionID string) string {
	t.Helper()
	var s string
	require.NoError(t, db.Get(&s, `SELECT status FROM relay.deliveries WHERE subscription_id = $1`, subscriptionID))
	return s
}

// TestEgressProxySSRFGuard: without RELAY_ALLOW_PRIVATE_TARGETS, and with 10.20.0.0/16
// admitted, the relay checks every target before it asks the proxy. The proxy stands for one
// inside a private network: it routes every tunnel to the test's receiver. A target in the
// admitted range goes through; another private range, the metadata address and a name
// resolving to loopback fail with the guard's error and the proxy never hears of them. With
// RELAY_EGRESS_PROXY_ENFORCES_SSRF=true the relay leaves the check to the proxy: it asks for
// the private target and for a name it does not resolve.
func TestEgressProxySSRFGuard(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := relaytest.NewReceiver(t)
	proxy := relaytest.NewConnectProxy(t)
	proxy.Route(func(string) string { return strings.TrimPrefix(rc.URL, "http://") })
	_, port, _ := strings.Cut(strings.TrimPrefix(rc.URL, "http://"), ":")

	admitted := addSubscription(t, db, "http://10.20.0.5:8080/admitted")
	other := addSubscription(t, db, "http://10.30.0.5:8080/other")
	metadata := addSubscription(t, db, "http://169.254.169.254/latest/meta-data/")
	loopbackName := addSubscription(t, db, "http://localhost:"+port+"/loopback")

	guarded := []string{"RELAY_ALLOW_PRIVATE_TARGETS=false", "RELAY_ALLOW_PRIVATE_CIDRS=10.20.0.0/16",
		"RELAY_RETRY_SCHEDULE=", "RELAY_EGRESS_PROXY=" + proxy.URL}
	p := startRelay(t, dsn, guarded...)
	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status <> 'pending'`) == 4
	}, "not every delivery ended:\n%s", tail(p.Output(), 20))
	require.Equal(t, "succeeded", deliveryStatus(t, db, admitted))
	require.Equal(t, []string{"10.20.0.5:8080"}, proxy.Authorities(), "only the admitted target reached the proxy")
	require.Equal(t, "/admitted", rc.Requests()[0].Path)
	for id, addr := range map[string]string{other: "10.30.0.5", metadata: "169.254.169.254"} {
		require.Equal(t, "failed", deliveryStatus(t, db, id), addr)
		require.Equal(t, []string{"connect: connection to private address " + addr + " refused"}, attemptErrors(t, db, id))
	}
	require.Equal(t, "failed", deliveryStatus(t, db, loopbackName))
	require.Regexp(t, `^connect: connection to private address (127\.0\.0\.1|::1) refused$`, attemptErrors(t, db, loopbackName)[0])
	require.Equal(t, 0, p.stop(t))

	// The proxy enforces the policy: the relay asks it for what it was given, private
	// address or a name it could not resolve itself.
	db2, dsn2 := relaytest.Open(t, relaytest.Migrated)
	addSubscription(t, db2, "http://10.30.0.5:8080/other")
	addSubscription(t, db2, "http://hooks.internal.invalid:8080/named")
	q := startRelay(t, dsn2, append(guarded, "RELAY_EGRESS_PROXY_ENFORCES_SSRF=true")...)
	insertEvents(t, db2, 1, 1)
	waitAllSucceeded(t, db2, 2, 15*time.Second, q)
	require.ElementsMatch(t, []string{"10.20.0.5:8080", "10.30.0.5:8080", "hooks.internal.invalid:8080"}, proxy.Authorities())
	require.Equal(t, 0, q.stop(t))
}

// TestEgressConfigMistakesStopStartup: a CA file without a certificate, a proxy URL that is
// not http:// and a CIDR covering the metadata address stop start-up, one line each, without
// the proxy's password.
func TestEgressConfigMistakesStopStartup(t *testing.T) {
	notPEM := writeCAFile(t, []byte("not a certificate\n"))
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "RELAY_DATABASE_URL=postgres://localhost/x", "RELAY_API_TOKEN=t",
		"RELAY_CA_FILE="+notPEM, "RELAY_EGRESS_PROXY=https://relay:pr0xy-s3cret@proxy:4750",
		"RELAY_ALLOW_PRIVATE_CIDRS=10.0.0.0/8,169.254.0.0/16")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.Error(t, cmd.Run())
	require.Equal(t, 1, cmd.ProcessState.ExitCode())
	require.Empty(t, stdout.String(), "nothing started")
	out := stderr.String()
	require.Contains(t, out, "3 configuration problems:\n")
	require.Contains(t, out, "\n  RELAY_ALLOW_PRIVATE_CIDRS: 169.254.0.0/16 overlaps 169.254.0.0/16, which stays refused")
	require.Contains(t, out, "\n  RELAY_EGRESS_PROXY: https proxies are not supported")
	require.Contains(t, out, "\n  RELAY_CA_FILE: "+notPEM+" holds no PEM certificate")
	require.NotContains(t, out, "pr0xy-s3cret")
}
