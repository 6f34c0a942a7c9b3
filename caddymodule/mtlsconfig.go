package caddymodule

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"

	jwxcert "github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// loadCAFile reads a PEM file of CA certificates for tls_client_auth.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls_client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls_client_ca_file %q: %w", path, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tls_client_ca_file %q holds no PEM CERTIFICATE", path)
	}
	return pool, nil
}

// buildTLSClientCAs gives a tls_client_auth client its trusted CAs: its
// own tls_client_ca_file, else the app's (appPool, nil when unset).
func (cc ClientConfig) buildTLSClientCAs(c *grants.Client, appPool *x509.CertPool) error {
	switch {
	case cc.TLSClientCAFile != "" && c.AuthMethod != grants.AuthTLSClient:
		return fmt.Errorf("client %q: tls_client_ca_file is for auth_method tls_client_auth", cc.ID)
	case cc.TLSClientCAFile != "":
		pool, err := loadCAFile(cc.TLSClientCAFile)
		if err != nil {
			return fmt.Errorf("client %q: %w", cc.ID, err)
		}
		c.TLSClientCAs = pool
	case c.AuthMethod == grants.AuthTLSClient:
		c.TLSClientCAs = appPool
	}
	return nil
}

// buildSelfSignedCerts registers a self_signed_tls_client_auth client's
// certificates from a PEM file, as the JWKS (with x5c) RFC 8705 §2.2
// describes, so that operators need not write one by hand.
func (cc ClientConfig) buildSelfSignedCerts(c *grants.Client) error {
	switch {
	case cc.TLSClientCertFile == "":
		return nil
	case c.AuthMethod != grants.AuthSelfSignedTLSClient:
		return fmt.Errorf("client %q: tls_client_cert_file is for auth_method self_signed_tls_client_auth", cc.ID)
	case c.Keys != nil:
		return fmt.Errorf("client %q: use tls_client_cert_file or jwks, jwks_file, jwks_uri, not both", cc.ID)
	}
	data, err := os.ReadFile(cc.TLSClientCertFile)
	if err != nil {
		return fmt.Errorf("client %q: tls_client_cert_file: %w", cc.ID, err)
	}
	var keys []jwk.Key
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		crt, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("client %q: tls_client_cert_file %q: %w", cc.ID, cc.TLSClientCertFile, err)
		}
		k, err := jwk.Import(crt.PublicKey)
		if err != nil {
			return fmt.Errorf("client %q: tls_client_cert_file %q: %w", cc.ID, cc.TLSClientCertFile, err)
		}
		var chain jwxcert.Chain
		if err := chain.AddString(base64.StdEncoding.EncodeToString(crt.Raw)); err != nil {
			return err
		}
		if err := k.Set(jwk.X509CertChainKey, &chain); err != nil {
			return err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return fmt.Errorf("client %q: tls_client_cert_file %q holds no PEM CERTIFICATE", cc.ID, cc.TLSClientCertFile)
	}
	doc, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		return err
	}
	if c.Keys, err = grants.ParseJWKS(doc); err != nil {
		return fmt.Errorf("client %q: tls_client_cert_file %q: %w", cc.ID, cc.TLSClientCertFile, err)
	}
	return nil
}
