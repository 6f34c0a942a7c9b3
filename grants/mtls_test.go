package grants

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// mtlsFixture is a test CA with the certificates of RFC 8705 clients.
type mtlsFixture struct {
	ca, otherCA                   *certtest.Cert
	mtls, mtlsDN, wrongSAN, alien *certtest.Cert
	self, otherSelf               *certtest.Cert
}

func newMTLSFixture(t testing.TB) *mtlsFixture {
	f := &mtlsFixture{ca: certtest.NewCA(t, "Test CA"), otherCA: certtest.NewCA(t, "Other CA")}
	f.mtls = certtest.Issue(t, f.ca, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	f.mtlsDN = certtest.Issue(t, f.ca, certtest.Names{CN: "svc", Org: "Example"})
	f.wrongSAN = certtest.Issue(t, f.ca, certtest.Names{CN: "c-mtls", DNS: []string{"other.test"}})
	f.alien = certtest.Issue(t, f.otherCA, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	f.self = certtest.Issue(t, nil, certtest.Names{CN: "c-self"})
	f.otherSelf = certtest.Issue(t, nil, certtest.Names{CN: "c-self"})
	return f
}

// jwksOf is a JWKS document holding the certificates' public keys.
func jwksOf(t testing.TB, certs ...*certtest.Cert) []byte {
	t.Helper()
	var keys []jwk.Key
	for _, c := range certs {
		k, err := jwk.Import(c.Cert.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *mtlsFixture) clients(t testing.TB) engineOpt {
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	keys, err := ParseJWKS(jwksOf(t, f.self))
	if err != nil {
		t.Fatal(err)
	}
	cc := []string{GrantClientCredentials}
	return withClients(
		&Client{ClientSpec: ClientSpec{ID: "c-mtls", AuthMethod: AuthTLSClient, GrantTypes: cc, Scopes: []string{"read"},
			Audience: []string{testRS}, TLSClientSubject: TLSClientSubject{SANDNS: "c-mtls.test"}}, TLSClientCAs: pool},
		&Client{ClientSpec: ClientSpec{ID: "c-mtls-dn", AuthMethod: AuthTLSClient, GrantTypes: cc,
			Audience: []string{testRS}, TLSClientSubject: TLSClientSubject{SubjectDN: "CN=svc,O=Example"}}, TLSClientCAs: pool},
		&Client{ClientSpec: ClientSpec{ID: "c-self", AuthMethod: AuthSelfSignedTLSClient, GrantTypes: cc,
			Audience: []string{testRS}}, Keys: keys},
	)
}

// certRequest is a token request over a TLS connection on which the
// client presented cert (none when nil).
func certRequest(body string, cert *certtest.Cert) *http.Request {
	return certtest.OverTLS(tokenRequest(body), cert)
}

// boundTo reads the cnf x5t#S256 of a JWT access token.
func boundTo(t testing.TB, tok string) string {
	t.Helper()
	_, claims := segments(t, tok)
	cnf, _ := claims["cnf"].(map[string]any)
	s, _ := cnf["x5t#S256"].(string)
	return s
}

// TestMTLSClientAuth: RFC 8705 §2 client authentication (CA-13, CA-14,
// the certificate-header rule) and §3 binding (MTLS-01, INT-07).
func TestMTLSClientAuth(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	e := newEngine(t, ccFixture(), f.clients(t))
	cc := "grant_type=client_credentials&client_id="
	for _, tt := range []struct {
		name, client string
		cert         *certtest.Cert
	}{
		{"tls_client_auth, SAN dNSName", "c-mtls", f.mtls},
		{"tls_client_auth, subject DN", "c-mtls-dn", f.mtlsDN},
		{"self_signed_tls_client_auth", "c-self", f.self},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := checkToken(t, serve(e, certRequest(cc+tt.client, tt.cert)))
			tok := m["access_token"].(string)
			if got, want := boundTo(t, tok), tokens.CertThumbprint(tt.cert.Cert); got != want {
				t.Fatalf("cnf x5t#S256 = %q, want %q", got, want)
			}
			sum := sha256Sum(tt.cert.Cert.Raw)
			if got := boundTo(t, tok); got != base64.RawURLEncoding.EncodeToString(sum[:]) {
				t.Fatalf("x5t#S256 %q is not base64url SHA-256 of the DER", got)
			}
			// INT-07: introspection says what the token is bound to.
			in := introspectAs(t, e, tt.cert, tt.client, tok)
			cnf, _ := in["cnf"].(map[string]any)
			if in["active"] != true || cnf["x5t#S256"] != boundTo(t, tok) {
				t.Fatalf("introspection of a bound token: %v", in)
			}
		})
	}
	refusals := []struct {
		name string
		r    *http.Request
	}{
		{"CA-13 SAN other.test", certRequest(cc+"c-mtls", f.wrongSAN)},
		{"CA-13 no certificate", certRequest(cc+"c-mtls", nil)},
		{"CA-13 certificate of another CA", certRequest(cc+"c-mtls", f.alien)},
		{"CA-13 subject DN of another client", certRequest(cc+"c-mtls-dn", f.mtls)},
		{"CA-13 no client_id", certRequest("grant_type=client_credentials", f.mtls)},
		{"CA-14 another self-signed certificate", certRequest(cc+"c-self", f.otherSelf)},
		{"CA-14 a CA-issued certificate for a self-signed client", certRequest(cc+"c-self", f.mtls)},
		{"unknown client with a certificate", certRequest(cc+"nosuch", f.mtls)},
		{"self-signed certificate for tls_client_auth", certRequest(cc+"c-mtls", f.self)},
		{"secret client with only a certificate", certRequest(cc+"c-basic", f.mtls)},
		{"CA-15 Client-Cert header, no TLS client cert", func() *http.Request {
			r := certRequest(cc+"c-mtls", nil)
			r.Header.Set("Client-Cert", ":"+base64.StdEncoding.EncodeToString(f.mtls.Cert.Raw)+":")
			r.Header.Set("X-SSL-Client-Cert", url.QueryEscape(string(f.mtls.PEM())))
			return r
		}()},
	}
	var body string
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(e, tt.r)
			checkError(t, w, http.StatusUnauthorized, CodeInvalidClient)
			if strings.Contains(tt.name, "certificate") && !strings.Contains(tt.name, "no certificate") {
				// TOK-14: a wrong certificate and an unknown client read alike.
				if body == "" {
					body = w.Body.String()
				} else if w.Body.String() != body {
					t.Fatalf("body %s differs from %s", w.Body.String(), body)
				}
			}
		})
	}
}

// TestMTLSBindsAnyClient: a client that authenticates with a secret over
// a connection with a certificate gets a bound token too (RFC 8705 §3);
// without a certificate, a bearer token.
func TestMTLSBindsAnyClient(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	e := newEngine(t, ccFixture())
	r := certRequest("grant_type=client_credentials", f.self)
	r.Header.Set("Authorization", basicAuth("c-basic", basicSecret))
	tok := checkToken(t, serve(e, r))["access_token"].(string)
	if boundTo(t, tok) != tokens.CertThumbprint(f.self.Cert) {
		t.Fatalf("token of c-basic over a connection with a certificate is not bound: %s", tok)
	}
	r = certRequest("grant_type=client_credentials", nil)
	r.Header.Set("Authorization", basicAuth("c-basic", basicSecret))
	tok = checkToken(t, serve(e, r))["access_token"].(string)
	if _, claims := segments(t, tok); claims["cnf"] != nil {
		t.Fatalf("a token without a certificate has cnf: %v", claims["cnf"])
	}
}

// TestMTLSMetadata: MTLS-02 and META-05, the methods listed only when a
// client uses them.
func TestMTLSMetadata(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	m := testMetadata(t, newEngine(t, ccFixture(), f.clients(t)))
	if !m.TLSClientCertBoundAccessTokens {
		t.Fatal("tls_client_certificate_bound_access_tokens is not true")
	}
	// Only where a certificate can reach the token endpoint: not over
	// plain HTTP, nor behind a TLS-terminating proxy, unless a trusted
	// proxy's header brings it.
	for _, tc := range []struct {
		issuer       string
		behind, head bool
		want         bool
	}{
		{"http://localhost:9480", false, false, false},
		{"https://as.test", true, false, false},
		{"https://as.test", true, true, true},
		{"http://localhost:9480", false, true, true},
	} {
		m := testMetadata(t, newEngine(t, withConfig(func(c *Config) {
			c.Issuer, c.BehindTLSProxy, c.ClientCertHeader = tc.issuer, tc.behind, tc.head
		})))
		if m.TLSClientCertBoundAccessTokens != tc.want {
			t.Errorf("%+v: tls_client_certificate_bound_access_tokens %v", tc, m.TLSClientCertBoundAccessTokens)
		}
	}
	for _, want := range []string{AuthTLSClient, AuthSelfSignedTLSClient} {
		if !contains(m.TokenEndpointAuthMethodsSupported, want) || !contains(m.IntrospectionAuthMethodsSupported, want) {
			t.Fatalf("auth methods %v / %v lack %s", m.TokenEndpointAuthMethodsSupported, m.IntrospectionAuthMethodsSupported, want)
		}
	}
	m = testMetadata(t, newEngine(t, ccFixture()))
	if contains(m.TokenEndpointAuthMethodsSupported, AuthTLSClient) || contains(m.TokenEndpointAuthMethodsSupported, AuthSelfSignedTLSClient) {
		t.Fatalf("mTLS methods listed with no client using them: %v", m.TokenEndpointAuthMethodsSupported)
	}
}

// introspectAs introspects tok as an mTLS client over a connection with
// cert.
func introspectAs(t testing.TB, e *Engine, cert *certtest.Cert, clientID, tok string) map[string]any {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, testIssuer+IntrospectPath,
		strings.NewReader(url.Values{"client_id": {clientID}, "token": {tok}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert.Cert}}
	w := httptest.NewRecorder()
	e.serveIntrospect(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("introspection: %d %s", w.Code, w.Body.String())
	}
	return decodeBody(t, w)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestMTLSRuntimeClientRefused: run-time registration (admin API, CLI)
// refuses the mTLS methods with what to do instead, and stores nothing.
func TestMTLSRuntimeClientRefused(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	for _, m := range []string{AuthTLSClient, AuthSelfSignedTLSClient} {
		_, err := e.AddClient(t.Context(), &Client{ClientSpec: ClientSpec{ID: "rt-" + m, AuthMethod: m,
			GrantTypes: []string{GrantClientCredentials}, TLSClientSubject: TLSClientSubject{SANDNS: "a.test"}}})
		if err == nil || !strings.Contains(err.Error(), "Caddyfile") {
			t.Fatalf("%s: %v", m, err)
		}
		if c, err := e.lookupClient(t.Context(), "rt-"+m); c != nil || err != nil {
			t.Fatalf("%s: stored %v %v", m, c, err)
		}
	}
}
