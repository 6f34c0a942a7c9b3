package tokens

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"net/http"
)

// Cnf is the confirmation claim of a sender-constrained access token
// (RFC 7800 §3.1): the token is good only with proof of what it names.
type Cnf struct {
	// JKT is the RFC 7638 SHA-256 thumbprint (base64url) of the DPoP
	// key the token is bound to (RFC 9449 §6.1).
	JKT string `json:"jkt,omitempty"`
	// X5tS256 is the base64url SHA-256 of the DER client certificate the
	// token is bound to (RFC 8705 §3.1).
	X5tS256 string `json:"x5t#S256,omitempty"`
}

// CertThumbprint is the RFC 8705 §3.1 x5t#S256 of a certificate:
// base64url (no padding) of the SHA-256 of its DER encoding.
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ConnCertThumbprint is the x5t#S256 of the request's client
// certificate (ClientCert: the TLS connection's, or one a configured
// trusted proxy passed on), or "" when there is none. It never reads a
// header itself: a certificate header could come from anyone.
func ConnCertThumbprint(r *http.Request) string {
	c := ClientCert(r)
	if c == nil {
		return ""
	}
	return CertThumbprint(c)
}

// knownCnf are the confirmation methods (RFC 7800 §3.1 cnf members)
// this module checks: x5t#S256 here, jkt by the DPoP check.
var knownCnf = map[string]bool{"x5t#S256": true, "jkt": true}

// CertBound reports whether a token may be used on this request: a token
// bound to a certificate (cnf x5t#S256) only over a connection that
// presented exactly that certificate (RFC 8705 §3); a token with a
// confirmation method nothing here can check (x5t, jwk, …, from another
// issuer) never, as it is not a bearer token; any other token always.
func (c *AccessClaims) CertBound(r *http.Request) bool {
	if c.Cnf == nil {
		return true
	}
	// Tokens minted here carry only known members (and may have no raw
	// payload); a verified payload is decoded once per cached token.
	if v, ok := c.Claim("cnf"); ok {
		m, obj := v.(map[string]any)
		if !obj || len(m) == 0 {
			return false
		}
		for k := range m {
			if !knownCnf[k] {
				return false
			}
		}
	}
	if c.Cnf.X5tS256 == "" {
		return true
	}
	got := ConnCertThumbprint(r)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(c.Cnf.X5tS256)) == 1
}

// ClientCertHeaderPrefixes are the prefixes (lower case, '-' for '_') of
// the request headers by which proxies pass on a client certificate or
// facts about it: RFC 9440's Client-Cert and Client-Cert-Chain, and the
// names of nginx, HAProxy, Traefik, Envoy, IIS ARR, AWS and Cloudflare.
// A client can send any of them, so oauth_server and oauth_protect
// remove them and never read them.
var ClientCertHeaderPrefixes = []string{
	"client-cert", "ssl-client-", "x-ssl-", "x-client-cert", "x-client-verify",
	"x-client-dn", "x-client-s-dn", "x-client-i-dn", "tls-client-", "x-tls-client-", "x-forwarded-tls-client-",
	"x-forwarded-ssl-client-", "x-forwarded-client-cert", "x-mtls-", "x-amzn-mtls-", "x-arr-clientcert", "cf-client-cert-",
}

// IsClientCertHeader reports whether a request header name starts with
// one of ClientCertHeaderPrefixes, in any case and with '_' for '-'.
func IsClientCertHeader(name string) bool {
	for _, p := range ClientCertHeaderPrefixes {
		if len(name) >= len(p) && foldedEqual(name[:len(p)], p) {
			return true
		}
	}
	return false
}

// foldedEqual compares a header name's prefix with a lower-case,
// '-'-separated one without allocating.
func foldedEqual(name, p string) bool {
	for i := 0; i < len(p); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

// StripClientCertHeaders deletes every certificate header from h.
func StripClientCertHeaders(h http.Header) {
	for name := range h {
		if IsClientCertHeader(name) {
			delete(h, name)
		}
	}
}
