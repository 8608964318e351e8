package main

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/signature"
)

func newKey(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

// TestSecretsEncryptedAtRestAndKeyRotation creates a subscription with RELAY_ENCRYPTION_KEY
// set, checks the database holds no clear secret, then rotates the key (old one in
// RELAY_ENCRYPTION_KEY_PREVIOUS) and checks webhooks still verify.
func TestSecretsEncryptedAtRestAndKeyRotation(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 0)
	oldKey, newKeyValue := newKey(t), newKey(t)
	p := startRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+oldKey)

	status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"target_url": rc.URL + "/hook", "event_types": []string{"*"}})
	require.Equal(t, http.StatusCreated, status, "%v", created)
	secret := created["secret"].(string)
	var stored string
	require.NoError(t, db.Get(&stored, `SELECT secret FROM relay.subscriptions`))
	require.True(t, strings.HasPrefix(stored, "enc:v1:"), "stored %q", stored)
	require.NotContains(t, stored, strings.TrimPrefix(secret, "whsec_"))

	insertEvents(t, db, 1, 1)
	v, err := signature.NewVerifier(secret)
	require.NoError(t, err)
	req := rc.WaitFor(t, 1, 15*time.Second)[0]
	require.NoError(t, v.Verify(req.Header, req.Body))
	require.Equal(t, 0, p.stop(t))

	// Key rotation: the new key seals, the previous one still opens.
	q := startRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+newKeyValue, "RELAY_ENCRYPTION_KEY_PREVIOUS="+oldKey)
	status, got := q.call(t, http.MethodGet, "/v1/subscriptions/"+created["id"].(string)+"/secret", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, secret, got["secret"])
	insertEvents(t, db, 1, 1)
	reqs := rc.WaitFor(t, 2, 15*time.Second)
	require.NoError(t, v.Verify(reqs[1].Header, reqs[1].Body))
	require.Equal(t, 0, q.stop(t))

	// That start resealed the secret with the new key: the old one is no longer needed.
	var resealed string
	require.NoError(t, db.Get(&resealed, `SELECT secret FROM relay.subscriptions`))
	require.NotEqual(t, stored, resealed)
	rawNew, err := base64.StdEncoding.DecodeString(newKeyValue)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resealed, "enc:v1:"+secrets.KeyID(rawNew)+":"), resealed)
	q2 := startRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+newKeyValue)
	insertEvents(t, db, 1, 1)
	reqs = rc.WaitFor(t, 3, 15*time.Second)
	require.NoError(t, v.Verify(reqs[2].Header, reqs[2].Body))
	require.Equal(t, 0, q2.stop(t))

	// A key rotation that forgot RELAY_ENCRYPTION_KEY_PREVIOUS: no configured key opens the
	// secret. Nothing is sent (neither unsigned nor wrongly signed), no attempt is charged
	// to the receiver, start-up says so in one line, /readyz says so, and the delivery waits.
	r := launchRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+newKey(t), "RELAY_RETRY_SCHEDULE=")
	insertEvents(t, db, 1, 1)
	var why string
	relaytest.Eventually(t, 15*time.Second, func() bool {
		status, body := r.readyz(t)
		why = body
		return status == http.StatusServiceUnavailable && strings.Contains(body, "cannot be signed for")
	}, "/readyz did not report the unopenable secret: %s\n%s", why, r.Output())
	require.Contains(t, why, created["id"].(string))
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries`) == 4
	}, "the event was never fanned out")
	time.Sleep(time.Second) // ten polls: a claim would have sent or failed it by now
	require.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending' AND attempt_count = 0 AND lease_owner IS NULL`),
		"the delivery waits, its attempt given back")
	require.Zero(t, countWhere(t, db, `SELECT count(*) FROM relay.attempts a JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.status = 'pending'`))
	require.Len(t, rc.Requests(), 3)
	problems := 0
	for _, line := range strings.Split(r.Output(), "\n") {
		if strings.Contains(line, `"problem":"unknown_key"`) {
			problems++
			require.Contains(t, line, created["id"].(string))
			require.Contains(t, line, secrets.KeyID(rawNew))
		}
	}
	require.Equal(t, 1, problems, "one start-up line per key problem:\n%s", r.Output())
	status, sub := r.call(t, http.MethodGet, "/v1/subscriptions/"+created["id"].(string), nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, sub["blocked_reason"], "unknown key", "the API says why: %v", sub)
	require.Equal(t, 0, r.stop(t))

	// With the right key the waiting delivery goes out by itself.
	r2 := startRelay(t, dsn, "RELAY_ENCRYPTION_KEY="+newKeyValue)
	reqs = rc.WaitFor(t, 4, 15*time.Second)
	require.NoError(t, v.Verify(reqs[3].Header, reqs[3].Body))
	status, sub = r2.call(t, http.MethodGet, "/v1/subscriptions/"+created["id"].(string), nil)
	require.Equal(t, http.StatusOK, status)
	require.Nil(t, sub["blocked_reason"])
	require.Equal(t, 0, r2.stop(t))
	for _, out := range []string{p.Output(), q.Output(), q2.Output(), r.Output(), r2.Output()} {
		require.NotContains(t, out, secret)
		require.NotContains(t, out, oldKey)
		require.NotContains(t, out, newKeyValue)
	}
}

func TestRotateSecretSignsWithBothDuringOverlap(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 0)
	p := startRelay(t, dsn, "RELAY_SECRET_ROTATION_OVERLAP=1h")
	status, created := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"target_url": rc.URL + "/hook", "event_type": "*"})
	require.Equal(t, http.StatusCreated, status)
	oldSecret := created["secret"].(string)
	status, rotated := p.call(t, http.MethodPost, "/v1/subscriptions/"+created["id"].(string)+"/rotate-secret", nil)
	require.Equal(t, http.StatusOK, status)
	newSecret := rotated["secret"].(string)
	require.NotEqual(t, oldSecret, newSecret)

	insertEvents(t, db, 1, 1)
	req := rc.WaitFor(t, 1, 15*time.Second)[0]
	require.Len(t, strings.Fields(req.Header.Get("webhook-signature")), 2, "two signatures during the overlap")
	for _, s := range []string{oldSecret, newSecret} {
		v, err := signature.NewVerifier(s)
		require.NoError(t, err)
		require.NoError(t, v.Verify(req.Header, req.Body), "verifies with either secret")
	}
	require.Equal(t, 0, p.stop(t))
}

// TestPrivateTargetRefusedAtConnectTime puts a loopback target straight into the database,
// past the API's check (as a DNS name that later resolves inside would get past it): the
// relay refuses to connect, and the receiver sees nothing.
func TestPrivateTargetRefusedAtConnectTime(t *testing.T) {
	db, dsn := relaytest.Open(t, relaytest.Migrated)
	rc := newCountingReceiver(t, 0)
	addSubscription(t, db, rc.URL+"/hook")
	p := startRelay(t, dsn, "RELAY_ALLOW_PRIVATE_TARGETS=false", "RELAY_RETRY_SCHEDULE=")

	status, body := p.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"target_url": rc.URL + "/other", "event_type": "*"})
	require.Equal(t, http.StatusUnprocessableEntity, status, "the API refuses a loopback target: %v", body)

	insertEvents(t, db, 1, 1)
	relaytest.Eventually(t, 15*time.Second, func() bool {
		return countWhere(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'failed'`) == 1
	}, "delivery to a private address did not fail")
	var msg string
	require.NoError(t, db.Get(&msg, `SELECT error FROM relay.attempts`))
	require.Contains(t, msg, "private address 127.0.0.1 refused")
	require.Zero(t, rc.total.Load(), "nothing reached the private address")
	require.Equal(t, 0, p.stop(t))
}
