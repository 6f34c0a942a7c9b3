package grants

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// OIDC Discovery §3 / RFC 8414 §2: the introspection and revocation
// endpoints list the JWT client authentication methods they accept (they
// authenticate exactly like the token endpoint; introspection refuses
// none), with the algorithms those methods can verify.
func TestDiscoveryEndpointAuthMethods(t *testing.T) {
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
