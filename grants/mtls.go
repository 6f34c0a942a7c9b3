package grants

import (
	"context"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Mutual-TLS client authentication (RFC 8705 §2).
const (
	// AuthTLSClient authenticates the client by a certificate that
	// chains to a trusted CA and carries the client's registered subject
	// (RFC 8705 §2.1).
	AuthTLSClient = "tls_client_auth"
	// AuthSelfSignedTLSClient authenticates the client by a certificate
	// whose public key is in the client's registered JWKS (RFC 8705 §2.2).
	AuthSelfSignedTLSClient = "self_signed_tls_client_auth"
)

// TLSClientSubject is the one subject a tls_client_auth client's
// certificate must carry (RFC 8705 §2.1.2): exactly one field is set.
type TLSClientSubject struct {
	// SubjectDN is the certificate's subject distinguished name in
	// RFC 4514 form, most specific first, as `openssl x509 -noout
	// -subject -nameopt RFC2253` prints it (CN=svc,O=Example), compared
	// exactly.
	SubjectDN string `json:"tls_client_auth_subject_dn,omitempty"`
	// SANDNS is a dNSName the certificate's subject alternative names
	// must include (compared case-insensitively).
	SANDNS string `json:"tls_client_auth_san_dns,omitempty"`
	// SANURI is a uniformResourceIdentifier the certificate's SANs must
	// include (compared exactly).
	SANURI string `json:"tls_client_auth_san_uri,omitempty"`
	// SANIP is an iPAddress the certificate's SANs must include.
	SANIP string `json:"tls_client_auth_san_ip,omitempty"`
	// SANEmail is an rfc822Name the certificate's SANs must include
	// (compared exactly).
	SANEmail string `json:"tls_client_auth_san_email,omitempty"`
}

// isMTLS reports whether the method authenticates by client certificate.
func isMTLS(method string) bool {
	return method == AuthTLSClient || method == AuthSelfSignedTLSClient
}

// validMTLS checks the registration of a certificate-authenticated
// client.
func (c *Client) validMTLS() error {
	if c.SecretHash != ([32]byte{}) || len(c.Secret) > 0 {
		return fmt.Errorf("client %q: a %s client has no secret; remove secret or secret_hash", c.ID, c.AuthMethod)
	}
	if c.AuthMethod == AuthSelfSignedTLSClient {
		if c.Keys == nil {
			return fmt.Errorf("client %q: self_signed_tls_client_auth needs jwks, jwks_file or jwks_uri holding the public key of the client's certificate", c.ID)
		}
		if c.TLSClientSubject != (TLSClientSubject{}) {
			return fmt.Errorf("client %q: tls_client_auth_subject_dn and tls_client_auth_san_* are for auth_method tls_client_auth", c.ID)
		}
		return nil
	}
	s := c.TLSClientSubject
	n := 0
	for _, v := range []string{s.SubjectDN, s.SANDNS, s.SANURI, s.SANIP, s.SANEmail} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("client %q: tls_client_auth needs exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri, tls_client_auth_san_ip and tls_client_auth_san_email (RFC 8705 §2.1.2)", c.ID)
	}
	if s.SANIP != "" && net.ParseIP(s.SANIP) == nil {
		return fmt.Errorf("client %q: tls_client_auth_san_ip %q is not an IP address", c.ID, s.SANIP)
	}
	if c.TLSClientCAs == nil {
		return fmt.Errorf("client %q: tls_client_auth needs the CAs that issue its certificates: tls_client_ca_file on the client or in the oauth app", c.ID)
	}
	if c.Keys != nil {
		return fmt.Errorf("client %q: jwks, jwks_file and jwks_uri are not used by tls_client_auth (they are for private_key_jwt and self_signed_tls_client_auth)", c.ID)
	}
	return nil
}

// authenticateCert authenticates a client registered for an mTLS method
// by the request's client certificate (tokens.ClientCertChain: Caddy's
// TLS handshake, or a configured trusted proxy's header); c is nil when
// the named client does not exist.
func (e *Engine) authenticateCert(ctx context.Context, r *http.Request, c *Client, failed *Error) (*Client, *Error) {
	certs := tokens.ClientCertChain(r)
	if c == nil || !isMTLS(c.AuthMethod) || len(certs) == 0 {
		return nil, failed
	}
	var ok bool
	if c.AuthMethod == AuthTLSClient {
		ok = c.chainsAndMatches(certs, time.Now())
	} else {
		ok = c.Keys.hasPublicKey(ctx, certs[0].PublicKey, time.Now())
	}
	if !ok {
		return nil, failed
	}
	return c, nil
}

// chainsAndMatches applies RFC 8705 §2.1: the leaf chains to one of the
// client's trusted CAs, is valid now, may be used for client
// authentication, and carries the registered subject.
func (c *Client) chainsAndMatches(certs []*x509.Certificate, now time.Time) bool {
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.TLSClientCAs, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return false
	}
	s := c.TLSClientSubject
	switch {
	case s.SubjectDN != "":
		return leaf.Subject.String() == s.SubjectDN
	case s.SANDNS != "":
		return slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, s.SANDNS) })
	case s.SANURI != "":
		return slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == s.SANURI })
	case s.SANIP != "":
		want := net.ParseIP(s.SANIP)
		return slices.ContainsFunc(leaf.IPAddresses, want.Equal)
	case s.SANEmail != "":
		return slices.Contains(leaf.EmailAddresses, s.SANEmail)
	}
	return false
}

// hasPublicKey reports whether pub is one of the set's keys (a fixed set,
// or a jwks_uri fetched as for assertions).
func (s *JWKS) hasPublicKey(ctx context.Context, pub crypto.PublicKey, now time.Time) bool {
	if s == nil {
		return false
	}
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uri != "" && now.Sub(s.fetched) > jwksMaxAge && now.Sub(s.tried) > jwksMinRefresh {
		s.refresh(ctx, now)
	}
	return slices.ContainsFunc(s.keys, func(k verifyKey) bool { return eq.Equal(k.key) })
}

// certBindingKey carries the x5t#S256 of the token request's client
// certificate to issueAccessToken.
type certBindingKey struct{}

// withCertBinding makes the access tokens issued in ctx bound to the
// client certificate of the request's TLS connection, if it has one
// (RFC 8705 §3: any client that presents a certificate, however it
// authenticated).
func withCertBinding(ctx context.Context, r *http.Request) context.Context {
	if th := tokens.ConnCertThumbprint(r); th != "" {
		return context.WithValue(ctx, certBindingKey{}, th)
	}
	return ctx
}

// bindToCert sets the token's cnf x5t#S256 when ctx carries one.
func bindToCert(ctx context.Context, claims *tokens.AccessClaims) {
	if th, _ := ctx.Value(certBindingKey{}).(string); th != "" {
		if claims.Cnf == nil {
			claims.Cnf = &tokens.Cnf{}
		}
		claims.Cnf.X5tS256 = th
	}
}

// refreshCertBinding is the certificate a new grant's refresh tokens are
// bound to: a public client's, of the request that made the grant (RFC
// 8705 §4, as refreshBinding does for DPoP keys). A confidential client
// authenticates every refresh with its own method, so its refresh tokens
// are not bound to a certificate (and it may move to a new one).
func refreshCertBinding(ctx context.Context, c *Client) string {
	if c.AuthMethod != AuthNone {
		return ""
	}
	th, _ := ctx.Value(certBindingKey{}).(string)
	return th
}

// certHeld reports whether the refresh request in ctx may use the
// grant's refresh token: over a connection with the grant's
// certificate, when it has one. The refresh then issues a token bound to
// that certificate again (bindToCert), never an unbound one.
func (f *familyRecord) certHeld(ctx context.Context) bool {
	if f.X5tS256 == "" {
		return true
	}
	th, _ := ctx.Value(certBindingKey{}).(string)
	return th != "" && subtle.ConstantTimeCompare([]byte(th), []byte(f.X5tS256)) == 1
}

// errCertBound refuses a refresh of a certificate-bound public grant
// without its certificate.
var errCertBound = errCode(CodeInvalidGrant, "this refresh token is bound to a client certificate: refresh over a TLS connection that presents that certificate")
