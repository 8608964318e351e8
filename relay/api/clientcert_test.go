package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
)

// clientCertBody answers a client_certificate field's JSON for cert and key.
func clientCertBody(t *testing.T, cert, key []byte) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"cert_pem": string(cert), "key_pem": string(key)})
	require.NoError(t, err)
	return string(b)
}

func TestClientCertificate(t *testing.T) {
	t.Parallel()
	ca := relaytest.NewPrivateCA(t)
	notAfter := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second).UTC()
	cert, key := ca.NewClientCertificate(t, "relay.example.com", notAfter)
	keyBody := strings.TrimSpace(strings.Split(string(key), "-----")[2]) // the base64 of the key

	t.Run("CreateShowsSubjectOnly", func(t *testing.T) {
		t.Parallel()
		b, _ := setupSealed(t)
		res := b.call(t, http.MethodPost, "/v1/subscriptions", "t1",
			`{"target_url": "https://hooks.example.com/mtls", "event_types": ["*"], "client_certificate": `+clientCertBody(t, cert, key)+`}`)
		require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
		require.NotContains(t, string(res.body), keyBody)
		require.NotContains(t, string(res.body), "PRIVATE KEY")
		require.NotContains(t, string(res.body), "BEGIN CERTIFICATE")
		created := res.json(t)
		want := map[string]any{"subject": "CN=relay.example.com,O=outbox-relay tests", "not_after": notAfter.Format(time.RFC3339)}
		require.Equal(t, want, created["client_certificate"])
		id := created["id"].(string)

		for _, path := range []string{"/v1/subscriptions/" + id, "/v1/subscriptions", "/v1/subscriptions/" + id + "?reveal=headers"} {
			res := b.call(t, http.MethodGet, path, "t1", "")
			require.Equal(t, http.StatusOK, res.status)
			require.NotContains(t, string(res.body), keyBody, path)
			require.NotContains(t, string(res.body), "PRIVATE KEY", path)
			require.Contains(t, string(res.body), `"client_certificate":{"subject":"CN=relay.example.com,O=outbox-relay tests"`, path)
		}

		// Sealed at rest: the key column holds no PEM, the certificate is in clear.
		var chain, stored string
		require.NoError(t, b.db.QueryRow(`SELECT client_cert, client_key FROM relay.subscriptions WHERE id = $1`, id).Scan(&chain, &stored))
		require.True(t, strings.HasPrefix(stored, "enc:v1:"), "key stored as %.12s...", stored)
		require.NotContains(t, stored, keyBody)
		require.Contains(t, chain, "BEGIN CERTIFICATE")

		// PATCH null removes it, from the answer and from the row.
		res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "t1", `{"client_certificate": null}`)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		require.Nil(t, res.json(t)["client_certificate"])
		var n int
		require.NoError(t, b.db.QueryRow(`SELECT count(*) FROM relay.subscriptions WHERE id = $1 AND client_cert IS NULL AND client_key IS NULL`, id).Scan(&n))
		require.Equal(t, 1, n)

		// PATCH sets one; a PATCH without the field keeps it.
		res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "t1", `{"client_certificate": `+clientCertBody(t, cert, key)+`}`)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		require.NotContains(t, string(res.body), keyBody)
		require.Equal(t, want, res.json(t)["client_certificate"])
		res = b.call(t, http.MethodPatch, "/v1/subscriptions/"+id, "t1", `{"description": "still mTLS"}`)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
		require.Equal(t, want, res.json(t)["client_certificate"])
	})

	t.Run("WithoutKeyStoredInClear", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		created := b.create(t, "", `{"target_url": "https://hooks.example.com/clear", "event_types": ["*"], "client_certificate": `+clientCertBody(t, cert, key)+`}`)
		var stored string
		require.NoError(t, b.db.QueryRow(`SELECT client_key FROM relay.subscriptions WHERE id = $1`, created["id"]).Scan(&stored))
		require.Contains(t, stored, "BEGIN PRIVATE KEY")
	})

	t.Run("ExpiredAccepted", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		expiredAt := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
		oldCert, oldKey := ca.NewClientCertificate(t, "old", expiredAt)
		created := b.create(t, "", `{"target_url": "https://hooks.example.com/old", "event_types": ["*"], "client_certificate": `+clientCertBody(t, oldCert, oldKey)+`}`)
		require.Equal(t, expiredAt.Format(time.RFC3339), created["client_certificate"].(map[string]any)["not_after"])
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, otherKey := ca.NewClientCertificate(t, "other", notAfter)
		id := b.createURL(t, "", "https://hooks.example.com/invalid")
		for name, field := range map[string]string{
			"MismatchedKey": clientCertBody(t, cert, otherKey),
			"GarbagePEM":    clientCertBody(t, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), key),
			"NoPEM":         clientCertBody(t, []byte("hello"), []byte("world")),
			"KeyOnly":       clientCertBody(t, key, key),
			"MissingKey":    `{"cert_pem": ` + mustJSON(t, string(cert)) + `}`,
			"UnknownField":  `{"cert_pem": "", "key_pem": "", "password": ""}`,
			"NotAnObject":   `"PEM"`,
		} {
			for _, call := range []struct{ method, path, body string }{
				{http.MethodPost, "/v1/subscriptions", `{"target_url": "https://hooks.example.com/` + name + `", "event_types": ["*"], "client_certificate": ` + field + `}`},
				{http.MethodPatch, "/v1/subscriptions/" + id, `{"client_certificate": ` + field + `}`},
			} {
				res := b.call(t, call.method, call.path, "", call.body)
				require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s %s: %s", name, call.method, res.body)
				require.Equal(t, "invalid_client_certificate", res.code(t), name)
				require.Contains(t, res.message(t), "client_certificate", name)
				require.NotContains(t, string(res.body), keyBody, name)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
