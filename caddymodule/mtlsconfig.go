package caddymodule

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

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
