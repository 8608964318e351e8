package api

import (
	"database/sql"
	"time"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

// clientCertificate is a validated client_certificate: the chain and key re-encoded by
// secrets.NormalizeClientCertificate, the key still in clear.
type clientCertificate struct {
	Chain, Key string
}

// clientCertificateJSON is what answers show of a client certificate: never the PEMs.
type clientCertificateJSON struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

var clientCertificateFields = []string{"cert_pem", "key_pem"}

// parseClientCertificate reads client_certificate: {"cert_pem", "key_pem"}, both required,
// a PEM certificate chain (leaf first) and the leaf's private key. It answers nil for null.
// An expired (or not yet valid) certificate is accepted: answers show its not_after, and
// whether the receiver takes it is the receiver's call. Messages never quote the key.
func parseClientCertificate(obj jsonObject) (*clientCertificate, error) {
	raw := obj["client_certificate"]
	if isNull(raw) {
		return nil, nil
	}
	inner, err := decodeObject(raw, clientCertificateFields)
	if err != nil {
		return nil, invalid(codeInvalidClientCertificate, "client_certificate must be an object {\"cert_pem\": \"...\", \"key_pem\": \"...\"}")
	}
	certPEM, okCert, err1 := field[string](inner, "cert_pem", "a string")
	keyPEM, okKey, err2 := field[string](inner, "key_pem", "a string")
	if err1 != nil || err2 != nil || !okCert || !okKey {
		return nil, invalid(codeInvalidClientCertificate, "client_certificate must have cert_pem and key_pem, both PEM strings")
	}
	chain, key, _, err := secrets.NormalizeClientCertificate(certPEM, keyPEM)
	if err != nil {
		return nil, invalid(codeInvalidClientCertificate, "client_certificate: %s", err.Error())
	}
	return &clientCertificate{Chain: chain, Key: key}, nil
}

// showClientCertificate answers the stored chain as answers show it, or nil (null) when
// there is none. A chain that no longer parses (written by hand) shows as null.
func showClientCertificate(chain sql.NullString) *clientCertificateJSON {
	if !chain.Valid {
		return nil
	}
	leaf, err := secrets.LeafOf(chain.String)
	if err != nil {
		return nil
	}
	return &clientCertificateJSON{Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter.UTC()}
}

// sealClientCertificate answers the columns to store for c: the chain, and the key sealed
// through Config.SealSecret; both NULL for nil.
func (a *API) sealClientCertificate(c *clientCertificate) (chain, key sql.NullString, err error) {
	if c == nil {
		return chain, key, nil
	}
	sealed, err := a.sealSecret(c.Key)
	if err != nil {
		return chain, key, err
	}
	return sql.NullString{String: c.Chain, Valid: true}, sql.NullString{String: sealed, Valid: true}, nil
}
