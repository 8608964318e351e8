package secrets

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ErrBadClientCertificate means a client certificate and key, as given or as stored, are
// not a PEM certificate chain with the private key of its first certificate.
var ErrBadClientCertificate = errors.New("not a PEM certificate chain (leaf first) with the private key of its leaf")

// NormalizeClientCertificate checks a client certificate given to the API: certPEM a PEM
// certificate chain, leaf first, keyPEM the leaf's private key in PEM (PKCS #1, PKCS #8 or
// SEC 1). It answers both re-encoded (the chain's CERTIFICATE blocks only, the key as PKCS
// #8), so that what is stored is exactly what was parsed, and the leaf. Errors never quote
// the key.
func NormalizeClientCertificate(certPEM, keyPEM string) (chain, key string, leaf *x509.Certificate, err error) {
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		// tls's messages name what is wrong without quoting the input.
		return "", "", nil, fmt.Errorf("%w: %s", ErrBadClientCertificate, err.Error())
	}
	for i, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", "", nil, fmt.Errorf("%w: certificate %d does not parse: %s", ErrBadClientCertificate, i+1, err.Error())
		}
		if i == 0 {
			leaf = c
		}
		chain += string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	der, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		return "", "", nil, fmt.Errorf("%w: the private key cannot be stored: %s", ErrBadClientCertificate, err.Error())
	}
	return chain, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), leaf, nil
}

// ClientCertificate turns a subscription's stored client certificate (the chain in clear,
// the key as stored) into the certificate the deliverer presents: the key opened with open
// when sealed (open is a Box's Open; nil means stored in clear). A key no configured key
// opens is an error Unopenable recognises, so the subscription waits like one whose
// signing secret cannot be opened, instead of sending without its certificate.
func ClientCertificate(chain, storedKey string, open func(string) (string, error)) (tls.Certificate, error) {
	plain := storedKey
	if open != nil {
		var err error
		if plain, err = open(storedKey); err != nil {
			return tls.Certificate{}, fmt.Errorf(openingClientKey+"%w", err)
		}
	}
	pair, err := tls.X509KeyPair([]byte(chain), []byte(plain))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf(clientCertPrefix+"%w: %s", ErrBadClientCertificate, err.Error())
	}
	return pair, nil
}

// IsClientCertificateProblem reports whether problem, the text of an error, is one of
// ClientCertificate's: for messages made far from the error, such as blocked_reason.
func IsClientCertificateProblem(problem string) bool {
	return strings.HasPrefix(problem, openingClientKey) || strings.HasPrefix(problem, clientCertPrefix)
}

const (
	openingClientKey = "opening the client certificate's key: "
	clientCertPrefix = "client certificate: "
)

// LeafOf answers the first certificate of a PEM chain, for showing its subject and expiry.
func LeafOf(chain string) (*x509.Certificate, error) {
	rest := []byte(chain)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, ErrBadClientCertificate
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}
