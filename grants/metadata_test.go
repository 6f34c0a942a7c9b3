package grants

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

func getMetadata(t *testing.T, e *Engine, method string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	e.serveMetadata(w, httptest.NewRequest(method, "/.well-known/oauth-authorization-server", nil))
	return w
}

func checkPublicJSON(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d: %s", w.Code, w.Body.String())
	}
	h := w.Header()
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := h.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control = %q", got)
	}
	if got := h.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	w := getMetadata(t, e, http.MethodGet)
	checkPublicJSON(t, w)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	var m Metadata
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m.Issuer != testIssuer {
		t.Errorf("issuer = %q, want exactly %q", m.Issuer, testIssuer)
	}
	for got, want := range map[string]string{
		m.TokenEndpoint: testIssuer + TokenPath, m.JWKSURI: testIssuer + JWKSPath,
		m.UserinfoEndpoint:   testIssuer + UserinfoPath,
		m.EndSessionEndpoint: testIssuer + LogoutPath,
	} {
		if got != want {
			t.Errorf("endpoint = %q, want %q", got, want)
		}
	}
	if !slices.Equal(m.GrantTypesSupported, []string{GrantClientCredentials}) {
		t.Errorf("grant_types_supported = %v", m.GrantTypesSupported)
	}
	if !slices.Equal(m.TokenEndpointAuthMethodsSupported, []string{AuthSecretBasic, AuthSecretPost}) {
		t.Errorf("token_endpoint_auth_methods_supported = %v", m.TokenEndpointAuthMethodsSupported)
	}
	if !slices.Equal(m.ScopesSupported, []string{"read", "write"}) {
		t.Errorf("scopes_supported = %v, want the sorted union", m.ScopesSupported)
	}
	// No test client uses the code flow: nothing of it is advertised.
	if len(m.ResponseTypesSupported) != 0 || m.CodeChallengeMethodsSupported != nil || m.AuthorizationEndpoint != "" {
		t.Errorf("code flow advertised without a client for it: %s", w.Body.String())
	}
	if !slices.Equal(m.SubjectTypesSupported, []string{"public"}) || !slices.Equal(m.IDTokenSigningAlgValuesSupported, []string{"RS256", "ES256"}) {
		t.Errorf("subject_types_supported = %v, id_token_signing_alg_values_supported = %v", m.SubjectTypesSupported, m.IDTokenSigningAlgValuesSupported)
	}
	for k, v := range raw {
		if string(v) == "null" {
			t.Errorf("%s is null", k)
		}
	}
}

func TestMetadataNoClients(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withConfig(func(c *Config) { c.Clients = nil }))
	w := getMetadata(t, e, http.MethodGet)
	checkPublicJSON(t, w)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["grant_types_supported"]) != "[]" {
		t.Errorf("grant_types_supported = %s, want []", raw["grant_types_supported"])
	}
	if _, ok := raw["scopes_supported"]; ok {
		t.Errorf("scopes_supported present with no scopes: %s", raw["scopes_supported"])
	}
}

func TestReadOnlyEndpoints(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	endpoints := map[string]func(http.ResponseWriter, *http.Request){
		"as_meta":   e.serveMetadata,
		"oidc_meta": e.serveMetadata,
		"jwks":      e.serveJWKS,
	}
	for name, h := range endpoints {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
			http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			t.Run(name+" "+m, func(t *testing.T) {
				w := httptest.NewRecorder()
				h(w, httptest.NewRequest(m, "/x", strings.NewReader("a=b")))
				if m == http.MethodGet || m == http.MethodHead {
					checkPublicJSON(t, w)
					return
				}
				if m == http.MethodOptions { // answered for CORS (cors.go)
					if w.Code != http.StatusNoContent || w.Header().Get("Allow") != "GET, HEAD, OPTIONS" {
						t.Errorf("OPTIONS: %d, Allow %q", w.Code, w.Header().Get("Allow"))
					}
					return
				}
				checkError(t, w, http.StatusMethodNotAllowed, CodeInvalidRequest)
				if got := w.Header().Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q", got)
				}
			})
		}
	}
}

// TestJWKS starts three engines on one store with three algorithms, so
// the ring holds an EC, an OKP and an RSA key (the RSA key is also the
// ID-token key of the first two), and checks what is published.
func TestJWKS(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	var e *Engine
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		e = newEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) {
			*c = Config{Issuer: testIssuer, AccessTokenTTL: time.Minute, SigningAlg: alg}
		}))
	}
	w := httptest.NewRecorder()
	e.serveJWKS(w, httptest.NewRequest(http.MethodGet, testIssuer+JWKSPath, nil))
	checkPublicJSON(t, w)

	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 3 {
		t.Fatalf("%d keys published, want 3: %s", len(doc.Keys), w.Body.String())
	}
	kids := map[string]bool{}
	ktys := map[string]string{}
	for _, k := range doc.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %v publishes private member %q", k["kid"], private)
			}
		}
		kid, _ := k["kid"].(string)
		if kid == "" || kids[kid] {
			t.Errorf("kid %q missing or repeated", kid)
		}
		kids[kid] = true
		alg, _ := k["alg"].(string)
		if alg == "" {
			t.Errorf("key %s has no alg", kid)
		}
		if k["use"] != "sig" {
			t.Errorf("key %s use = %v", kid, k["use"])
		}
		ktys[alg], _ = k["kty"].(string)
		if rk, ok := e.keyRing().Lookup(kid); !ok || rk.Alg.String() != alg {
			t.Errorf("published kid %s / alg %s does not match the ring", kid, alg)
		}
	}
	if ktys["ES256"] != "EC" || ktys["EdDSA"] != "OKP" || ktys["RS256"] != "RSA" {
		t.Errorf("kty by alg = %v", ktys)
	}
	// jwx reads it back as a public key set.
	set, err := jwk.Parse(w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range set.Len() {
		k, _ := set.Key(i)
		if isPriv, err := jwk.IsPrivateKey(k); err != nil || isPriv {
			t.Errorf("key %d is private (%v)", i, err)
		}
	}
	// The newest key signs, and OIDC metadata advertises its algorithm.
	if e.keyRing().Current.Alg.String() != "RS256" {
		t.Errorf("Current = %s", e.keyRing().Current.Alg)
	}
	var m Metadata
	_ = json.Unmarshal(getMetadata(t, e, http.MethodGet).Body.Bytes(), &m)
	if !slices.Equal(m.IDTokenSigningAlgValuesSupported, []string{"RS256"}) {
		t.Errorf("id_token_signing_alg_values_supported = %v", m.IDTokenSigningAlgValuesSupported)
	}
}

func TestPathsAndIssuerWithPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		issuer string
		paths  map[string]string
		token  string
		jwks   string
	}{
		{testIssuer, map[string]string{
			"token": "/oauth/token", "jwks": "/oauth/jwks",
			"as_meta": "/.well-known/oauth-authorization-server", "oidc_meta": "/.well-known/openid-configuration",
		}, testIssuer + "/oauth/token", testIssuer + "/oauth/jwks"},
		{"https://h/tenant", map[string]string{
			"token": "/tenant/oauth/token", "jwks": "/tenant/oauth/jwks",
			"as_meta": "/.well-known/oauth-authorization-server/tenant", "oidc_meta": "/tenant/.well-known/openid-configuration",
		}, "https://h/tenant/oauth/token", "https://h/tenant/oauth/jwks"},
		{"https://h:8443/a/b", map[string]string{
			"token": "/a/b/oauth/token", "jwks": "/a/b/oauth/jwks",
			"as_meta": "/.well-known/oauth-authorization-server/a/b", "oidc_meta": "/a/b/.well-known/openid-configuration",
		}, "https://h:8443/a/b/oauth/token", "https://h:8443/a/b/oauth/jwks"},
		// paths() are decoded (what a router matches on); published URLs
		// keep the issuer's own spelling.
		{"https://h/t%C3%A9", map[string]string{
			"token": "/té/oauth/token", "jwks": "/té/oauth/jwks",
			"as_meta": "/.well-known/oauth-authorization-server/té", "oidc_meta": "/té/.well-known/openid-configuration",
		}, "https://h/t%C3%A9/oauth/token", "https://h/t%C3%A9/oauth/jwks"},
		{"http://127.0.0.1:9000", map[string]string{
			"token": "/oauth/token", "jwks": "/oauth/jwks",
			"as_meta": "/.well-known/oauth-authorization-server", "oidc_meta": "/.well-known/openid-configuration",
		}, "http://127.0.0.1:9000/oauth/token", "http://127.0.0.1:9000/oauth/jwks"},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			e := newEngine(t, ccFixture(), withConfig(func(c *Config) { c.Issuer = tt.issuer }))
			got := e.paths()
			for k, v := range tt.paths {
				if got[k] != v {
					t.Errorf("paths()[%s] = %q, want %q", k, got[k], v)
				}
			}
			var m Metadata
			w := getMetadata(t, e, http.MethodGet)
			if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if m.Issuer != tt.issuer || m.TokenEndpoint != tt.token || m.JWKSURI != tt.jwks {
				t.Errorf("issuer %q token_endpoint %q jwks_uri %q", m.Issuer, m.TokenEndpoint, m.JWKSURI)
			}
			// The realm of the Basic challenge is the issuer.
			r := tokenRequest(ccForm)
			r.Header.Set("Authorization", basicAuth("c-basic", "wrong"))
			if got := serve(e, r).Header().Get("WWW-Authenticate"); got != `Basic realm="`+tt.issuer+`"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestValidateIssuer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		iss string
		ok  bool
	}{
		{"https://as.test", true},
		{"https://as.test:8443", true},
		{"https://as.test/tenant", true},
		{"https://as.test/a/b", true},
		{"http://localhost", true},
		{"http://localhost:8080", true},
		{"http://127.0.0.1:9000", true},
		{"http://[::1]:9000", true},
		{"http://as.test", false},
		{"http://127.0.0.2", false},
		{"http://localhost.evil.test", false},
		{"ftp://as.test", false},
		{"as.test", false},
		{"/oauth", false},
		{"", false},
		{"https://", false},
		{"https://as.test/", false},
		{"https://as.test/tenant/", false},
		{"https://as.test?x=1", false},
		{"https://as.test?", false},
		{"https://as.test#frag", false},
		{"https://as.test#", false},
		{"https://user@as.test", false},
		{"https://user:pw@as.test", false},
		{`https://as.test/a"b`, false},
		{`https://as.test/a\b`, false},
		{"https://as.test/a b", false},
		{"https://as .test", false},
		{"https://as.test\n", false},
	}
	for _, tt := range tests {
		err := ValidateIssuer(tt.iss)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateIssuer(%q) = %v, want ok=%v", tt.iss, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "issuer") {
			t.Errorf("ValidateIssuer(%q) error %q does not say which setting", tt.iss, err)
		}
	}
}

func TestClientValidate(t *testing.T) {
	t.Parallel()
	ok := func() *Client {
		return &Client{
			ClientSpec: ClientSpec{
				ID:         "c",
				AuthMethod: AuthSecretBasic,
				GrantTypes: []string{GrantClientCredentials},
				Scopes:     []string{"a", "b:c"},
			},
			SecretHash: HashSecret("s"),
		}
	}
	tests := []struct {
		name string
		mod  func(*Client)
		want string // "" = valid
	}{
		{"valid", func(*Client) {}, ""},
		{"post", func(c *Client) { c.AuthMethod = AuthSecretPost }, ""},
		{"empty id", func(c *Client) { c.ID = "" }, "client id"},
		{"id with spaces around", func(c *Client) { c.ID = " c" }, "client id"},
		{"id with colon", func(c *Client) { c.ID = "a:b" }, "client id"},
		{"id with quote", func(c *Client) { c.ID = `a"b` }, "client id"},
		{"id with backslash", func(c *Client) { c.ID = `a\b` }, "client id"},
		{"no secret", func(c *Client) { c.SecretHash = [32]byte{} }, "secret"},
		{"no auth method", func(c *Client) { c.AuthMethod = "" }, "auth_method"},
		{"none with a secret", func(c *Client) { c.AuthMethod = "none" }, "public client"},
		{"private_key_jwt without keys", func(c *Client) { c.AuthMethod = "private_key_jwt" }, "jwks"},
		{"client_secret_jwt without plain secret", func(c *Client) { c.AuthMethod = "client_secret_jwt" }, "32 bytes"},
		{"unknown auth method", func(c *Client) { c.AuthMethod = "attest_jwt_client_auth" }, "auth_method"},
		{"tls_client_auth with a secret", func(c *Client) { c.AuthMethod = AuthTLSClient }, "no secret"},
		{"tls_client_auth without a subject", func(c *Client) { c.AuthMethod, c.SecretHash = AuthTLSClient, [32]byte{} }, "exactly one"},
		{"tls_client_auth with two subjects", func(c *Client) {
			c.AuthMethod, c.SecretHash = AuthTLSClient, [32]byte{}
			c.TLSClientSubject = TLSClientSubject{SANDNS: "a.test", SANEmail: "a@a.test"}
		}, "exactly one"},
		{"tls_client_auth with a bad IP", func(c *Client) {
			c.AuthMethod, c.SecretHash, c.TLSClientSubject.SANIP = AuthTLSClient, [32]byte{}, "10.0.0"
		}, "not an IP"},
		{"tls_client_auth without CAs", func(c *Client) {
			c.AuthMethod, c.SecretHash, c.TLSClientSubject.SANDNS = AuthTLSClient, [32]byte{}, "a.test"
		}, "tls_client_ca_file"},
		{"self_signed_tls_client_auth without keys", func(c *Client) { c.AuthMethod, c.SecretHash = AuthSelfSignedTLSClient, [32]byte{} }, "jwks"},
		{"a subject for another method", func(c *Client) { c.TLSClientSubject.SANDNS = "a.test" }, "tls_client_auth"},
		{"no grants", func(c *Client) { c.GrantTypes = nil }, "grant_types"},
		{"unknown grant", func(c *Client) { c.GrantTypes = []string{"urn:example:nope"} }, "not supported"},
		{"bad scope space", func(c *Client) { c.Scopes = []string{"a b"} }, "scope"},
		{"bad scope empty", func(c *Client) { c.Scopes = []string{""} }, "scope"},
		{"bad scope quote", func(c *Client) { c.Scopes = []string{`a"`} }, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseSecretHash(t *testing.T) {
	t.Parallel()
	want := HashSecret(basicSecret)
	good := "sha256:" + hex.EncodeToString(want[:])
	if got, err := ParseSecretHash(good); err != nil || got != want {
		t.Errorf("ParseSecretHash(%q) = %x, %v", good, got, err)
	}
	if got, err := ParseSecretHash(strings.ToUpper(good[:7]) + good[7:]); err == nil {
		t.Errorf("upper-case prefix accepted: %x", got)
	}
	for _, bad := range []string{"", "sha256:", "sha256:zz", good[7:], "sha512:" + good[7:], good + "00", good[:len(good)-2],
		"bcrypt:$2a$14$abc"} {
		if _, err := ParseSecretHash(bad); err == nil || !strings.Contains(err.Error(), "sha256:<64 hex digits>") {
			t.Errorf("ParseSecretHash(%q) = %v", bad, err)
		}
	}
}

func TestMetadataCodeFlow(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withConfig(func(c *Config) {
		c.Clients = append(c.Clients, &Client{
			ClientSpec: ClientSpec{
				ID:           "spa",
				AuthMethod:   AuthNone,
				GrantTypes:   []string{GrantAuthorizationCode},
				RedirectURIs: []string{"https://spa.test/cb"},
			},
		})
	}))
	var m Metadata
	if err := json.Unmarshal(getMetadata(t, e, http.MethodGet).Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m.AuthorizationEndpoint != testIssuer+AuthorizePath || !slices.Equal(m.ResponseTypesSupported, []string{"code"}) ||
		!slices.Equal(m.CodeChallengeMethodsSupported, []string{"S256"}) || !m.AuthorizationResponseISSParamSupported {
		t.Errorf("code flow metadata = %+v", m)
	}
	if !slices.Contains(m.TokenEndpointAuthMethodsSupported, AuthNone) {
		t.Errorf("a public client exists but none is not advertised: %v", m.TokenEndpointAuthMethodsSupported)
	}
}

// testMetadata is the discovery document e serves.
func testMetadata(t testing.TB, e *Engine) *Metadata {
	t.Helper()
	m, err := e.metadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// OIDC Discovery §3 / RFC 8414 §2: the introspection and revocation
// endpoints list the JWT client authentication methods they accept (they
// authenticate exactly like the token endpoint; introspection refuses
// none), with the algorithms those methods can verify.
func TestDiscoveryEndpointAuthMethods(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withConfig(func(c *Config) {
		c.Clients = append(c.Clients, caClients(t)...)
		c.Clients = append(c.Clients, &Client{
			ClientSpec: ClientSpec{
				ID:           "spa",
				AuthMethod:   AuthNone,
				GrantTypes:   []string{GrantAuthorizationCode},
				RedirectURIs: []string{"https://spa.test/cb"},
			},
		})
	}))
	m := testMetadata(t, e)
	for _, want := range []string{AuthSecretBasic, AuthSecretPost, AuthSecretJWT, AuthPrivateKeyJWT} {
		if !slices.Contains(m.IntrospectionAuthMethodsSupported, want) {
			t.Errorf("introspection_endpoint_auth_methods_supported = %v lacks %s", m.IntrospectionAuthMethodsSupported, want)
		}
		if !slices.Contains(m.RevocationEndpointAuthMethodsSupported, want) {
			t.Errorf("revocation_endpoint_auth_methods_supported = %v lacks %s", m.RevocationEndpointAuthMethodsSupported, want)
		}
	}
	if slices.Contains(m.IntrospectionAuthMethodsSupported, AuthNone) {
		t.Errorf("introspection advertises none: %v", m.IntrospectionAuthMethodsSupported)
	}
	if !slices.Contains(m.RevocationEndpointAuthMethodsSupported, AuthNone) {
		t.Errorf("revocation of a public client's tokens: none missing from %v", m.RevocationEndpointAuthMethodsSupported)
	}
	for name, algs := range map[string][]string{"introspection": m.IntrospectionAuthSigningAlgsSupported, "revocation": m.RevocationAuthSigningAlgsSupported} {
		if !slices.Equal(algs, m.TokenEndpointAuthSigningAlgsSupported) {
			t.Errorf("%s signing algs %v, want the token endpoint's %v", name, algs, m.TokenEndpointAuthSigningAlgsSupported)
		}
	}
	// The JWT methods really work there.
	w := httptest.NewRecorder()
	r := tokenRequest(caForm(caPKJ(t, nil)) + "&token=x")
	r.URL.Path = IntrospectPath
	e.serveIntrospect(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("introspection with private_key_jwt: %d %s", w.Code, w.Body.String())
	}
}

// token_endpoint_auth_signing_alg_values_supported lists what the
// configured clients can verify: HMAC algorithms the secret is long
// enough for, the algorithms of fixed keys; a jwks_uri may publish any.
func TestDiscoveryAssertionAlgs(t *testing.T) {
	t.Parallel()
	rsaKeys, err := ParseJWKS(caJWKS(t, caRSAKey.Public(), "r1", "PS384"))
	if err != nil {
		t.Fatal(err)
	}
	short := []byte("0123456789abcdef0123456789abcdef") // 32 bytes: HS256 only
	e := newEngine(t, ccFixture(), withConfig(func(c *Config) {
		c.Clients = append(c.Clients, caClients(t)...) // HS256..HS512 (64-byte secret), ES256 key
		c.Clients = append(c.Clients,
			&Client{ClientSpec: ClientSpec{ID: "c-jwt-short", AuthMethod: AuthSecretJWT, GrantTypes: []string{GrantClientCredentials}}, Secret: short},
			&Client{ClientSpec: ClientSpec{ID: "c-pkj-rsa", AuthMethod: AuthPrivateKeyJWT, GrantTypes: []string{GrantClientCredentials}}, Keys: rsaKeys})
	}))
	want := []string{"ES256", "PS384", "HS256", "HS384", "HS512"}
	if got := testMetadata(t, e).TokenEndpointAuthSigningAlgsSupported; !slices.Equal(got, want) {
		t.Fatalf("token_endpoint_auth_signing_alg_values_supported = %v, want %v", got, want)
	}
	e = newEngine(t, ccFixture(), withConfig(func(c *Config) {
		c.Clients = append(c.Clients, &Client{ClientSpec: ClientSpec{ID: "c-jwt-short", AuthMethod: AuthSecretJWT, GrantTypes: []string{GrantClientCredentials}}, Secret: short})
	}))
	if got := testMetadata(t, e).TokenEndpointAuthSigningAlgsSupported; !slices.Equal(got, []string{"HS256"}) {
		t.Fatalf("a 32-byte secret: %v, want [HS256]", got)
	}
	remote, err := RemoteJWKS("https://keys.test/jwks")
	if err != nil {
		t.Fatal(err)
	}
	e = newEngine(t, ccFixture(), withConfig(func(c *Config) {
		c.Clients = append(c.Clients, &Client{ClientSpec: ClientSpec{ID: "c-remote", AuthMethod: AuthPrivateKeyJWT, GrantTypes: []string{GrantClientCredentials}}, Keys: remote})
	}))
	if got := testMetadata(t, e).TokenEndpointAuthSigningAlgsSupported; !slices.Equal(got, AssertionAlgs) {
		t.Fatalf("a jwks_uri client: %v, want every assertion algorithm", got)
	}
}

// OIDC Discovery §3: authorization_endpoint is REQUIRED of an OpenID
// provider, so the openid-configuration document always has it (with the
// code flow it serves); the RFC 8414 document keeps RFC 8414's rule
// (only when a client can use it).
func TestDiscoveryAuthorizationEndpointOIDC(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture()) // client_credentials clients only
	get := func(path string) map[string]any {
		w := httptest.NewRecorder()
		e.serveMetadata(w, httptest.NewRequest(http.MethodGet, path, nil))
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	oidc := get("/.well-known/openid-configuration")
	if oidc["authorization_endpoint"] != testIssuer+AuthorizePath {
		t.Errorf("openid-configuration authorization_endpoint = %v", oidc["authorization_endpoint"])
	}
	if rt, _ := oidc["response_types_supported"].([]any); len(rt) != 1 || rt[0] != "code" {
		t.Errorf("openid-configuration response_types_supported = %v", oidc["response_types_supported"])
	}
	if as := get("/.well-known/oauth-authorization-server"); as["authorization_endpoint"] != nil {
		t.Errorf("RFC 8414 document advertises an authorization endpoint no client can use: %v", as["authorization_endpoint"])
	}
}

// TestMetadataWhileStorageFails: the discovery documents depend on the
// run-time clients; while storage fails, the last ones served are served
// again (each under its own path), and before any was served the answer
// is 503.
func TestMetadataWhileStorageFails(t *testing.T) {
	t.Parallel()
	fs := &failStore{Store: openStore(t)}
	e := newEngine(t, withStore(fs))
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		e.serveMetadata(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	const as, oidc = "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"
	fs.mode.Store(failAll)
	if w := get(oidc); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("OIDC discovery before any was served, storage failing: %d, want 503", w.Code)
	}
	fs.mode.Store(failNone)
	goodAS := get(as)
	if goodAS.Code != http.StatusOK {
		t.Fatalf("metadata: %d", goodAS.Code)
	}
	fs.mode.Store(failAll)
	if w := get(as); w.Code != http.StatusOK || w.Body.String() != goodAS.Body.String() {
		t.Errorf("metadata while storage fails: %d %s, want the last one served", w.Code, w.Body)
	}
	if w := get(oidc); w.Code != http.StatusServiceUnavailable {
		t.Errorf("OIDC discovery (never served) while storage fails: %d, want 503", w.Code)
	}
}
