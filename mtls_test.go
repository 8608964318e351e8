package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// TestClientCertificates: a receiver that requires a client certificate its CA signed. The
// subscription without a certificate fails in the TLS handshake; the one with a certificate
// (given to the API, its key sealed with RELAY_ENCRYPTION_KEY) is delivered, and the
// receiver saw the certificate's subject. A relay without the key that sealed it sends
// nothing for that subscription, not even without the certificate: it is blocked, and says
// so in /readyz and blocked_reason.
func TestClientCertificates(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	ca := relaytest.NewPrivateCA(t)
	rc := ca.NewMTLSReceiver(t)
	cert, key := ca.NewClientCertificate(t, "relay.example.com", time.Now().Add(24*time.Hour))
	caFile := "RELAY_CA_FILE=" + writeCAFile(t, ca.PEM)

	p := startRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+newKey(t), caFile, "RELAY_RETRY_SCHEDULE=1h")
	status, plain := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"target_url": rc.URL + "/plain", "event_types": []string{"*"}})
	require.Equal(t, http.StatusCreated, status, "%v", plain)
	status, mtls := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"target_url": rc.URL + "/mtls", "event_types": []string{"*"},
		"client_certificate": map[string]string{"cert_pem": string(cert), "key_pem": string(key)}})
	require.Equal(t, http.StatusCreated, status, "%v", mtls)
	plainID, mtlsID := plain["id"].(string), mtls["id"].(string)
	var storedKey string
	require.NoError(t, db.Get(&storedKey, `SELECT client_key FROM relay.subscriptions WHERE id = $1`, mtlsID))
	require.True(t, strings.HasPrefix(storedKey, "enc:v1:"), "the key is sealed at rest")

	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return len(attemptErrors(t, db, plainID)) == 1 && len(attemptErrors(t, db, mtlsID)) == 1
	}, "no attempts recorded:\n%s", tail(p.Output(), 20))
	require.Equal(t, []string{""}, attemptErrors(t, db, mtlsID))
	plainErr := attemptErrors(t, db, plainID)[0]
	require.Contains(t, plainErr, "certificate required", "the receiver refused the handshake without a certificate")
	reqs := rc.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "/mtls", reqs[0].Path)
	require.Equal(t, "CN=relay.example.com,O=outbox-relay tests", reqs[0].ClientSubject)
	require.Equal(t, 0, p.stop(t))

	// Without the key: the signing secrets are put in clear so that only the certificate's
	// key stands in the way.
	for _, s := range []map[string]any{plain, mtls} {
		_, err := db.Exec(`UPDATE relay.subscriptions SET secret = $2 WHERE id = $1`, s["id"], s["secret"])
		require.NoError(t, err)
	}
	q := launchRelay(t, dsn, caFile, "RELAY_RETRY_SCHEDULE=1h")
	relaytest.Eventually(t, 15*time.Second, func() bool {
		status, body := q.readyz(t)
		return status == http.StatusServiceUnavailable && strings.Contains(body, mtlsID)
	}, "/readyz did not report the unopenable key:\n%s", tail(q.Output(), 20))
	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		_, got := q.call(t, http.MethodGet, "/v1/subscriptions/"+mtlsID, nil)
		return got["blocked_reason"] != nil
	}, "the subscription was never blocked:\n%s", tail(q.Output(), 20))
	_, got := q.call(t, http.MethodGet, "/v1/subscriptions/"+mtlsID, nil)
	require.Contains(t, got["blocked_reason"], "the relay cannot present this subscription's client certificate")
	require.Contains(t, got["blocked_reason"], "RELAY_ENCRYPTION_KEY")
	require.Len(t, attemptErrors(t, db, mtlsID), 1, "no attempt for the blocked subscription")
	require.Len(t, rc.Requests(), 1, "nothing sent without the certificate")
	relaytest.Eventually(t, 15*time.Second, func() bool { return len(attemptErrors(t, db, plainID)) == 2 },
		"the other subscription does not go on:\n%s", tail(q.Output(), 20))
	require.Len(t, attemptErrors(t, db, mtlsID), 1, "still no attempt for the blocked subscription")
	require.Len(t, rc.Requests(), 1, "still nothing sent without the certificate")
	require.Equal(t, 0, q.stop(t))
}
