package grants

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// withRegistration turns dynamic client registration on, offering every
// grant type registration can offer (client_credentials is opt-in).
func withRegistration(mod func(*RegistrationConfig)) engineOpt {
	return withConfig(func(c *Config) {
		rc := &RegistrationConfig{GrantTypes: registrableGrants}
		if mod != nil {
			mod(rc)
		}
		c.Registration = rc
	})
}

type regResult struct {
	status int
	hdr    http.Header
	body   map[string]any
	raw    string
}

func (r regResult) str(k string) string { s, _ := r.body[k].(string); return s }

// regDo sends a request to the registration endpoint (target may carry
// ?client_id=) from ip.
func regDo(e *Engine, method, target, body, authz, ip string) regResult {
	r := httptest.NewRequest(method, RegisterPath+target, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	r.RemoteAddr = loopbackAddr
	if ip != "" {
		r.TLS = &tls.ConnectionState{}
		r = r.WithContext(WithFront(r.Context(), &Front{ClientIP: ip}))
	}
	rec := httptest.NewRecorder()
	h, _ := e.Route(r.URL.Path)
	h(rec, r)
	res := regResult{status: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &res.body)
	return res
}

func register(e *Engine, body string) regResult { return regDo(e, http.MethodPost, "", body, "", "") }

func mustRegister(t *testing.T, e *Engine, body string) regResult {
	t.Helper()
	res := register(e, body)
	if res.status != http.StatusCreated {
		t.Fatalf("register: want 201, got %d %s", res.status, res.raw)
	}
	return res
}

// TestRegistrationConformance runs DCR-01..06 (RFC 7591 §3) and the
// refusals of §3.2.2 as a table.
func TestRegistrationConformance(t *testing.T) {
	e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.Rate = 1000 }))
	jwks := string(caJWKS(t, caKey.Public(), "k1", ""))
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		check      func(t *testing.T, r regResult)
	}{
		{"DCR-01 confidential default", `{"redirect_uris":["https://client.test/cb"]}`, 201, "", func(t *testing.T, r regResult) {
			for _, k := range []string{"client_id", "client_secret", "registration_access_token", "registration_client_uri"} {
				if r.str(k) == "" {
					t.Errorf("%s missing: %s", k, r.raw)
				}
			}
			if r.body["client_secret_expires_at"] != float64(0) || r.body["client_id_issued_at"] == nil {
				t.Errorf("client_secret_expires_at / client_id_issued_at: %s", r.raw)
			}
			if r.str("token_endpoint_auth_method") != AuthSecretBasic || r.hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("default auth method / no-store: %s %v", r.raw, r.hdr)
			}
			if got := r.body["redirect_uris"].([]any); len(got) != 1 || got[0] != "https://client.test/cb" {
				t.Errorf("redirect_uris not echoed: %s", r.raw)
			}
			if r.hdr.Get("Location") != r.str("registration_client_uri") || !strings.HasPrefix(r.str("registration_client_uri"), testIssuer+RegisterPath+"?client_id=") {
				t.Errorf("registration_client_uri %q, Location %q", r.str("registration_client_uri"), r.hdr.Get("Location"))
			}
		}},
		{"MCP-03 native public", `{"application_type":"native","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`, 201, "", func(t *testing.T, r regResult) {
			if _, ok := r.body["client_secret"]; ok {
				t.Errorf("public client got a secret: %s", r.raw)
			}
			if _, ok := r.body["client_secret_expires_at"]; ok {
				t.Errorf("client_secret_expires_at without a secret: %s", r.raw)
			}
		}},
		{"private_key_jwt with jwks", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":` + jwks + `}`, 201, "", func(t *testing.T, r regResult) {
			if _, ok := r.body["client_secret"]; ok {
				t.Errorf("private_key_jwt client got a secret: %s", r.raw)
			}
		}},
		{"client_secret_post client_credentials", `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_post"}`, 201, "", func(t *testing.T, r regResult) {
			if rt := r.body["response_types"].([]any); len(rt) != 0 {
				t.Errorf("response_types %v", rt)
			}
		}},
		{"DCR-02 wildcard", `{"redirect_uris":["https://client.test/*"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 relative", `{"redirect_uris":["/cb"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 fragment", `{"redirect_uris":["https://client.test/cb#x"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 non-loopback http", `{"redirect_uris":["http://client.test/cb"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 javascript", `{"redirect_uris":["javascript:alert(1)"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 data", `{"redirect_uris":["data:text/html,x"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 userinfo", `{"redirect_uris":["https://u@client.test/cb"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-02 none for code", `{"grant_types":["authorization_code"]}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-03 redirect_uris string", `{"redirect_uris":"https://client.test/cb"}`, 400, CodeInvalidRedirectURI, nil},
		{"DCR-03 jwks and jwks_uri", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":` + jwks + `,"jwks_uri":"https://client.test/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 unknown auth method", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"magic"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 client_secret_jwt unsupported", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"client_secret_jwt"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 tls_client_auth unsupported", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"tls_client_auth"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 grant/response mismatch", `{"redirect_uris":["https://client.test/cb"],"grant_types":["client_credentials"],"response_types":["code"]}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 token response type", `{"redirect_uris":["https://client.test/cb"],"response_types":["token"]}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 password grant", `{"redirect_uris":["https://client.test/cb"],"grant_types":["authorization_code","password"]}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 refresh alone", `{"grant_types":["refresh_token"],"response_types":[]}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 public client_credentials", `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 private_key_jwt without keys", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 jwks with a secret method", `{"redirect_uris":["https://client.test/cb"],"jwks":` + jwks + `}`, 400, CodeInvalidClientMetadata, nil},
		{"private_key_jwt with jwks_uri", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://client.test/jwks"}`, 201, "", func(t *testing.T, r regResult) {
			if r.str("jwks_uri") != "https://client.test/jwks" {
				t.Errorf("jwks_uri not echoed: %s", r.raw)
			}
		}},
		{"DCR-03 jwks_uri over http", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"http://client.test/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on loopback IP", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://127.0.0.1/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on private IP", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://10.0.0.5/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on link-local IP", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://169.254.169.254/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on IPv6 loopback", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://[::1]/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on IPv4-mapped", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://[::ffff:192.168.1.1]/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on localhost", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://localhost/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on localhost with dot", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://localhost./jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on sub.localhost", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://api.localhost/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"jwks_uri on a public IP", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://8.8.8.8/jwks"}`, 201, "", nil},
		{"DCR-03 jwks_uri number", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":7}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 jwks_uri with a secret method", `{"redirect_uris":["https://client.test/cb"],"jwks_uri":"https://client.test/jwks"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 bad jwks", `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"nope"}]}}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 grant_types string", `{"redirect_uris":["https://client.test/cb"],"grant_types":"authorization_code"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 client_name number", `{"redirect_uris":["https://client.test/cb"],"client_name":7}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 client_name control chars", `{"redirect_uris":["https://client.test/cb"],"client_name":"a\u202eb"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 logo_uri http", `{"redirect_uris":["https://client.test/cb"],"logo_uri":"http://client.test/l.png"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 scope not offered", `{"redirect_uris":["https://client.test/cb"],"scope":"openid admin"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 application_type", `{"redirect_uris":["https://client.test/cb"],"application_type":"tv"}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 not an object", `["https://client.test/cb"]`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 two objects", `{"redirect_uris":["https://client.test/cb"]}{}`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-03 not JSON", `redirect_uris=https://client.test/cb`, 400, CodeInvalidClientMetadata, nil},
		{"DCR-04 unknown dropped", `{"redirect_uris":["https://client.test/cb"],"x_evil":"1","trusted":true,"pkce_optional":true}`, 201, "", func(t *testing.T, r regResult) {
			for _, k := range []string{"x_evil", "trusted", "pkce_optional"} {
				if _, ok := r.body[k]; ok {
					t.Errorf("%s echoed: %s", k, r.raw)
				}
			}
			c, _ := e.lookupClient(t.Context(), r.str("client_id"))
			if c == nil || c.Trusted || c.PKCEOptional || !c.Registered {
				t.Errorf("stored client %+v", c)
			}
		}},
		{"DCR-05 client_id chosen by server", `{"redirect_uris":["https://client.test/cb"],"client_id":"admin","client_secret":"mine"}`, 201, "", func(t *testing.T, r regResult) {
			if id := r.str("client_id"); id == "admin" || !strings.HasPrefix(id, registrationIDPrefix) {
				t.Errorf("client_id %q", id)
			}
			if r.str("client_secret") == "mine" {
				t.Error("client chose its secret")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countStored(t, e)
			r := register(e, tc.body)
			if r.status != tc.status {
				t.Fatalf("want %d, got %d %s", tc.status, r.status, r.raw)
			}
			if tc.code != "" {
				if r.str("error") != tc.code || r.str("error_description") == "" {
					t.Fatalf("want %s with a description, got %s", tc.code, r.raw)
				}
				if n := countStored(t, e); n != before {
					t.Fatalf("a refused registration stored a client (%d -> %d)", before, n)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func countStored(t *testing.T, e *Engine) int {
	t.Helper()
	cs, err := e.storedClients(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

// TestRegistrationLimits: DCR-06 (rate, size, initial access token) and
// the cap on registered clients.
func TestRegistrationLimits(t *testing.T) {
	body := `{"redirect_uris":["https://client.test/cb"]}`
	t.Run("rate per address", func(t *testing.T) {
		e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.Rate = 3 }))
		for i := range 3 {
			if r := regDo(e, http.MethodPost, "", body, "", "203.0.113.7"); r.status != 201 {
				t.Fatalf("registration %d: %d %s", i, r.status, r.raw)
			}
		}
		r := regDo(e, http.MethodPost, "", body, "", "203.0.113.7")
		if r.status != http.StatusTooManyRequests || r.hdr.Get("Retry-After") == "" {
			t.Fatalf("want 429 with Retry-After, got %d %v %s", r.status, r.hdr, r.raw)
		}
		if r := regDo(e, http.MethodPost, "", body, "", "203.0.113.8"); r.status != 201 {
			t.Fatalf("another address was limited: %d %s", r.status, r.raw)
		}
		if n := countStored(t, e); n != 4 {
			t.Fatalf("stored %d clients, want 4", n)
		}
	})
	t.Run("body size", func(t *testing.T) {
		e := newEngine(t, withRegistration(nil))
		big := `{"redirect_uris":["https://client.test/cb"],"client_name":"` + strings.Repeat("a", 70<<10) + `"}`
		if r := register(e, big); r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("want 413, got %d %s", r.status, r.raw)
		}
		if n := countStored(t, e); n != 0 {
			t.Fatalf("stored %d", n)
		}
	})
	t.Run("max clients", func(t *testing.T) {
		e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.MaxClients = 2 }))
		mustRegister(t, e, body)
		mustRegister(t, e, body)
		r := register(e, body)
		if r.status != 400 || r.str("error") != CodeInvalidClientMetadata || !strings.Contains(r.str("error_description"), "as many registered clients") {
			t.Fatalf("want a clear refusal, got %d %s", r.status, r.raw)
		}
	})
	t.Run("initial access token", func(t *testing.T) {
		const iat = "0123456789abcdef-initial"
		e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.InitialAccessToken = iat }))
		for _, authz := range []string{"", "Bearer wrong-token-of-some-len", "Basic " + iat, "Bearer " + iat + "x"} {
			r := regDo(e, http.MethodPost, "", body, authz, "")
			if r.status != http.StatusUnauthorized || r.str("error") != "invalid_token" || !strings.HasPrefix(r.hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%q: want 401 invalid_token, got %d %s", authz, r.status, r.raw)
			}
		}
		if r := regDo(e, http.MethodPost, "", body, "Bearer "+iat, ""); r.status != 201 {
			t.Fatalf("with the token: %d %s", r.status, r.raw)
		}
		// The scheme is case-insensitive (RFC 7235 §2.1).
		if r := regDo(e, http.MethodPost, "", body, "bearer "+iat, ""); r.status != 201 {
			t.Fatalf("with lower-case bearer: %d %s", r.status, r.raw)
		}
	})
	t.Run("initial access token guesses count toward the rate", func(t *testing.T) {
		const iat = "0123456789abcdef-initial"
		e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.InitialAccessToken, c.Rate = iat, 3 }))
		for i := range 3 {
			if r := regDo(e, http.MethodPost, "", body, "Bearer guess-"+string(rune('a'+i)), "203.0.113.9"); r.status != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d %s", i, r.status, r.raw)
			}
		}
		for _, authz := range []string{"Bearer another-guess", "Bearer " + iat} {
			if r := regDo(e, http.MethodPost, "", body, authz, "203.0.113.9"); r.status != http.StatusTooManyRequests || r.hdr.Get("Retry-After") == "" {
				t.Fatalf("%q after 3 guesses: want 429, got %d %s", authz, r.status, r.raw)
			}
		}
		if r := regDo(e, http.MethodPost, "", body, "Bearer "+iat, "203.0.113.10"); r.status != 201 {
			t.Fatalf("another address was limited: %d %s", r.status, r.raw)
		}
	})
	t.Run("methods and content type", func(t *testing.T) {
		e := newEngine(t, withRegistration(nil))
		if r := regDo(e, http.MethodGet, "", "", "", ""); r.status != http.StatusMethodNotAllowed || r.hdr.Get("Allow") != "POST" {
			t.Fatalf("GET: %d %v", r.status, r.hdr)
		}
		req := httptest.NewRequest(http.MethodPost, RegisterPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = loopbackAddr
		rec := httptest.NewRecorder()
		e.serveRegister(rec, req)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), CodeInvalidClientMetadata) {
			t.Fatalf("form body: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		e := newEngine(t)
		if r := register(e, body); r.status != http.StatusNotFound {
			t.Fatalf("want 404, got %d %s", r.status, r.raw)
		}
		m, err := e.metadata(t.Context())
		if err != nil || m.RegistrationEndpoint != "" {
			t.Fatalf("registration_endpoint advertised while off: %+v %v", m.RegistrationEndpoint, err)
		}
	})
	t.Run("config errors", func(t *testing.T) {
		for _, rc := range []RegistrationConfig{{Rate: -1}, {InitialAccessToken: "short"}, {Scopes: []string{"a b"}}, {Audience: []string{"rel"}}} {
			if _, err := startEngine(t, withConfig(func(c *Config) { c.Registration = &rc })); err == nil {
				t.Errorf("%+v accepted", rc)
			}
		}
	})
}

// TestRegistrationMetadata: registration_endpoint, and the methods and
// grants registration offers, with no client configured that has them.
func TestRegistrationMetadata(t *testing.T) {
	e := newEngine(t, withRegistration(nil), withConfig(func(c *Config) { c.Clients = ccClients() }))
	m, err := e.metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m.RegistrationEndpoint != testIssuer+RegisterPath || m.AuthorizationEndpoint == "" {
		t.Fatalf("metadata %+v", m)
	}
	for _, want := range []string{AuthNone, AuthPrivateKeyJWT, AuthSecretBasic} {
		if !strings.Contains(strings.Join(m.TokenEndpointAuthMethodsSupported, " "), want) {
			t.Errorf("auth methods %v lack %s", m.TokenEndpointAuthMethodsSupported, want)
		}
	}
}

// TestRegistrationManagement: RFC 7592 read, update and delete with the
// registration access token; credentials stored hashed only.
func TestRegistrationManagement(t *testing.T) {
	st := openStore(t)
	e := newEngine(t, withRegistration(nil), withStore(st))
	reg := mustRegister(t, e, `{"redirect_uris":["https://client.test/cb"],"client_name":"Notes"}`)
	id, secret, rat := reg.str("client_id"), reg.str("client_secret"), reg.str("registration_access_token")
	target := "?client_id=" + url.QueryEscape(id)

	// Nothing secret is stored in the clear.
	_ = st.View(t.Context(), func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindClients, id)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(rec.Value); strings.Contains(s, secret) || strings.Contains(s, rat) {
			t.Fatalf("a credential is stored in the clear: %s", s)
		}
		if rec.Expires.IsZero() {
			t.Fatal("an unused registered client has no expiry")
		}
		return nil
	})

	for _, authz := range []string{"", "Bearer wrong", "Bearer " + secret} {
		if r := regDo(e, http.MethodGet, target, "", authz, ""); r.status != http.StatusUnauthorized {
			t.Fatalf("GET with %q: %d %s", authz, r.status, r.raw)
		}
	}
	// A config client has no registration token; an unknown id looks the same.
	if r := regDo(e, http.MethodGet, "?client_id=c-web", "", "Bearer "+rat, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("GET of another client: %d", r.status)
	}
	r := regDo(e, http.MethodGet, target, "", "Bearer "+rat, "")
	if r.status != 200 || r.str("client_name") != "Notes" || r.str("client_secret") != "" || r.str("registration_access_token") != "" {
		t.Fatalf("GET: %d %s", r.status, r.raw)
	}

	// PUT: client_id must match; the update keeps the secret.
	if r := regDo(e, http.MethodPut, target, `{"client_id":"other","redirect_uris":["https://client.test/cb2"]}`, "Bearer "+rat, ""); r.status != 400 {
		t.Fatalf("PUT with another client_id: %d %s", r.status, r.raw)
	}
	if r := regDo(e, http.MethodPut, target, `{"client_id":"`+id+`","redirect_uris":["http://evil.test/cb"]}`, "Bearer "+rat, ""); r.str("error") != CodeInvalidRedirectURI {
		t.Fatalf("PUT with a bad redirect: %d %s", r.status, r.raw)
	}
	if r := regDo(e, http.MethodPut, target, `{"client_id":"`+id+`","client_secret":"chosen","redirect_uris":["https://client.test/cb2"]}`, "Bearer "+rat, ""); r.str("error") != CodeInvalidClientMetadata {
		t.Fatalf("PUT choosing a secret: %d %s", r.status, r.raw)
	}
	r = regDo(e, http.MethodPut, target, `{"client_id":"`+id+`","client_secret":"`+secret+`","redirect_uris":["https://client.test/cb2"],"client_name":"Notes 2"}`, "Bearer "+rat, "")
	if r.status != 200 || r.str("client_name") != "Notes 2" || r.str("client_secret") != "" {
		t.Fatalf("PUT: %d %s", r.status, r.raw)
	}
	c, _ := e.lookupClient(t.Context(), id)
	if c == nil || c.RedirectURIs[0] != "https://client.test/cb2" || c.SecretHash != HashSecret(secret) || !c.Registered {
		t.Fatalf("after PUT: %+v", c)
	}
	if tr := postTokenRaw(e, url.Values{"grant_type": {"client_credentials"}}, siBasicAuth(id, secret)); tr.status != http.StatusBadRequest || tr.str("error") != CodeUnauthorizedClient {
		// authenticated (the secret still works), but not registered for the grant
		t.Fatalf("secret after PUT: %d %s", tr.status, tr.raw)
	}

	if r := regDo(e, http.MethodDelete, target, "", "Bearer "+rat, ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.raw)
	}
	if c, _ := e.lookupClient(t.Context(), id); c != nil {
		t.Fatal("client still there after DELETE")
	}
	if r := regDo(e, http.MethodGet, target, "", "Bearer "+rat, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("GET after DELETE: %d", r.status)
	}
}

// TestRegisteredClientFlow: a registered public client gets tokens by
// the code flow with PKCE, is asked for consent every time, and its
// errors are shown on a page rather than redirected (RFC 9700 §4.11.2,
// BCP-04); once it has a token it no longer expires unused.
func TestRegisteredClientFlow(t *testing.T) {
	st := openStore(t)
	e := newEngine(t, withRegistration(nil), withStore(st))
	reg := mustRegister(t, e, `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"scope":"openid offline_access"}`)
	id := reg.str("client_id")
	b := newBrowser(t, e)
	q := func(kv ...string) url.Values {
		v := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1/cb"}, "state": {"s1"},
			"scope": {"openid offline_access"}, "code_challenge_method": {"S256"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}

	// PKCE required: the error is a page, not a redirect.
	rec := b.get(AuthorizePath + "?" + q("code_challenge", "").Encode())
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), "invalid_request") ||
		!strings.Contains(rec.Body.String(), `id="return"`) {
		t.Fatalf("missing PKCE for a registered client: %d %v\n%s", rec.Code, rec.Header(), rec.Body)
	}
	// BCP-04: invalid_scope on a page too.
	rec = b.get(AuthorizePath + "?" + q("scope", "nonexistent", "code_challenge", newChallenge()).Encode())
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), "invalid_scope") {
		t.Fatalf("invalid_scope for a registered client: %d %v\n%s", rec.Code, rec.Header(), rec.Body)
	}

	// Sign in, consent, code.
	verifier, challenge := newPKCE()
	rec = b.get(AuthorizePath + "?" + q("code_challenge", challenge).Encode())
	rec = b.login(rec, "alice", "alice-pw")
	if !isConsentPage(rec) {
		t.Fatalf("no consent page for a registered client:\n%s", rec.Body)
	}
	loc := mustLocation(t, b.consent(rec, "allow"))
	f := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {"http://127.0.0.1/cb"},
		"code_verifier": {verifier}, "client_id": {id}}
	tr := postTokenRaw(e, f, "")
	wantOK(t, tr)
	if tr.str("refresh_token") == "" {
		t.Fatalf("no refresh token: %s", tr.raw)
	}
	_ = st.View(t.Context(), func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindClients, id)
		if err != nil || !rec.Expires.IsZero() {
			t.Fatalf("a used registered client still expires: %v %v", rec.Expires, err)
		}
		return nil
	})

	// Consent again, though the user allowed it before and is signed in.
	rec = b.get(AuthorizePath + "?" + q("code_challenge", newChallenge()).Encode())
	if !isConsentPage(rec) {
		t.Fatalf("second request skipped consent: %d\n%s", rec.Code, rec.Body)
	}
	// A denial is a page with a link back, not a redirect.
	rec = b.consent(rec, "deny")
	if rec.Code == http.StatusFound || !strings.Contains(rec.Body.String(), "access_denied") {
		t.Fatalf("denial for a registered client: %d %v\n%s", rec.Code, rec.Header(), rec.Body)
	}
}

// TestRegisteredNativeClientErrorLink: the page shown instead of an error
// redirect links back to a native app's own scheme too.
func TestRegisteredNativeClientErrorLink(t *testing.T) {
	e := newEngine(t, withRegistration(nil))
	id := mustRegister(t, e, `{"redirect_uris":["com.example.app:/cb"],"token_endpoint_auth_method":"none"}`).str("client_id")
	b := newBrowser(t, e)
	v := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"com.example.app:/cb"}, "state": {"a<b"}, "scope": {"nonexistent"},
		"code_challenge": {newChallenge()}, "code_challenge_method": {"S256"}}
	rec := b.get(AuthorizePath + "?" + v.Encode())
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `href="com.example.app:/cb?error=invalid_scope`) || strings.Contains(rec.Body.String(), "a<b") {
		t.Fatalf("error page for a native registered client: %d\n%s", rec.Code, rec.Body)
	}
}

// TestRegisteredConfidentialClientConsent: a registered confidential
// client is asked for consent every time too (a config client that the
// user allowed is not).
func TestRegisteredConfidentialClientConsent(t *testing.T) {
	e := newEngine(t, withRegistration(nil))
	reg := mustRegister(t, e, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"client_secret_post"}`)
	id, secret := reg.str("client_id"), reg.str("client_secret")
	b := newBrowser(t, e)
	for i := range 2 {
		verifier, challenge := newPKCE()
		v := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"https://client.test/cb"}, "scope": {"openid"},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		rec := b.get(AuthorizePath + "?" + v.Encode())
		if i == 0 {
			rec = b.login(rec, "alice", "alice-pw")
		}
		if !isConsentPage(rec) {
			t.Fatalf("request %d: no consent page:\n%s", i, rec.Body)
		}
		loc := mustLocation(t, b.consent(rec, "allow"))
		tr := postTokenRaw(e, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {"https://client.test/cb"},
			"code_verifier": {verifier}, "client_id": {id}, "client_secret": {secret}}, "")
		wantOK(t, tr)
	}
}

// TestRegisteredPrivateKeyJWT: a client registered with jwks
// authenticates with an assertion signed by its key.
func TestRegisteredPrivateKeyJWT(t *testing.T) {
	e := newEngine(t, withRegistration(nil))
	reg := mustRegister(t, e, `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":`+string(caJWKS(t, caKey.Public(), "k1", ""))+`}`)
	id := reg.str("client_id")
	a := caSign(t, "ES256", caKey, map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"}, caClaims(id, nil))
	w := serve(e, tokenRequest(caForm(a)))
	if w.Code != 200 {
		t.Fatalf("assertion of a registered client: %d %s", w.Code, w.Body)
	}
	other := caSign(t, "ES256", mustEC(), map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"}, caClaims(id, nil))
	if w := serve(e, tokenRequest(caForm(other))); w.Code != 401 {
		t.Fatalf("assertion by another key: %d %s", w.Code, w.Body)
	}
}

// TestRegisteredClientExpiresUnused: a registered client that never got a
// token is gone after unused_client_ttl.
func TestRegisteredClientExpiresUnused(t *testing.T) {
	st := openStore(t)
	e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.UnusedClientTTL = 50 * time.Millisecond }), withStore(st))
	id := mustRegister(t, e, `{"redirect_uris":["https://client.test/cb"]}`).str("client_id")
	if c, _ := e.lookupClient(t.Context(), id); c == nil {
		t.Fatal("client missing right after registering")
	}
	time.Sleep(80 * time.Millisecond)
	if c, _ := e.lookupClient(t.Context(), id); c != nil {
		t.Fatal("an unused registered client outlived unused_client_ttl")
	}
}

// TestRegisteredJWKSURI: a registered private_key_jwt client's jwks_uri
// is fetched through the SSRF-safe fetcher: from a public address its
// keys verify the assertion; when the host resolves to loopback nothing
// is fetched and authentication fails.
func TestRegisteredJWKSURI(t *testing.T) {
	jwks := caJWKS(t, caKey.Public(), "k1", "")
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	defer srv.Close()
	saved := *clientKeys
	t.Cleanup(func() { *clientKeys = saved })
	answer := cimdPublicIP
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	clientKeys.rootCAs = pool
	clientKeys.localAddrs = func() []netip.Addr { return nil }
	clientKeys.lookup = func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{answer}, nil }
	clientKeys.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	for _, tc := range []struct {
		name   string
		answer netip.Addr
		status int
		hits   int32
	}{
		{"public", cimdPublicIP, 200, 1},
		{"loopback", netip.MustParseAddr("127.0.0.1"), 401, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			answer = tc.answer
			e := newEngine(t, withRegistration(nil))
			id := mustRegister(t, e, `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://example.com/jwks.json"}`).str("client_id")
			a := caSign(t, "ES256", caKey, map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"}, caClaims(id, nil))
			if w := serve(e, tokenRequest(caForm(a))); w.Code != tc.status || hits.Load() != tc.hits {
				t.Fatalf("want %d after %d fetches, got %d after %d: %s", tc.status, tc.hits, w.Code, hits.Load(), w.Body)
			}
		})
	}
}

// TestRegisteredClientDeleteRevokes: DESIGN §10, revoking the client
// kills its tokens: after an RFC 7592 DELETE its access token fails at
// the verifier the gate uses, and its secret no longer authenticates.
func TestRegisteredClientDeleteRevokes(t *testing.T) {
	e := newEngine(t, withRegistration(nil))
	reg := mustRegister(t, e, `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_post"}`)
	id, secret := reg.str("client_id"), reg.str("client_secret")
	tr := postTokenRaw(e, url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}, "")
	wantOK(t, tr)
	at := tr.str("access_token")
	if _, err := e.Verifier().Verify(at, time.Now()); err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	if r := regDo(e, http.MethodDelete, "?client_id="+url.QueryEscape(id), "", "Bearer "+reg.str("registration_access_token"), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.raw)
	}
	if _, err := e.Verifier().Verify(at, time.Now()); err == nil {
		t.Fatal("the deleted client's access token still verifies")
	}
	if tr := postTokenRaw(e, url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}, ""); tr.status != http.StatusUnauthorized {
		t.Fatalf("token after DELETE: %d %s", tr.status, tr.raw)
	}
}

// By default a registered client gets only the grants in which a user
// allows it (attack on issue 16: open registration plus client_credentials
// gave anyone tokens for the MCP server with no user); client_credentials
// is the operator's explicit choice.
func TestRegistrationDefaultGrants(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.Registration = &RegistrationConfig{} }))
	r := register(e, `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}`)
	if r.status != http.StatusBadRequest || r.str("error") != CodeInvalidClientMetadata || !strings.Contains(r.str("error_description"), "client_credentials") {
		t.Fatalf("client_credentials by default: %d %s", r.status, r.raw)
	}
	mustRegister(t, e, `{"redirect_uris":["https://client.test/cb"],"grant_types":["authorization_code","refresh_token"]}`)
	if _, err := NewEngine(Config{Issuer: testIssuer, Registration: &RegistrationConfig{GrantTypes: []string{GrantPassword}}}); err == nil {
		t.Error("registration offering the password grant accepted")
	}
}

// TestRegistrationRedirectURISyntax: redirect URIs a browser or a later
// comparison could read differently are refused, the list is bounded and
// de-duplicated, and a member given twice is refused rather than the
// later one silently winning.
func TestRegistrationRedirectURISyntax(t *testing.T) {
	e := newEngine(t, withRegistration(func(c *RegistrationConfig) { c.Rate = 1000 }))
	many := make([]string, 21)
	for i := range many {
		many[i] = `"https://client.test/cb` + string(rune('a'+i)) + `"`
	}
	for name, tc := range map[string]struct{ body, code string }{
		"space":          {`{"redirect_uris":["https://client.test/a b"]}`, CodeInvalidRedirectURI},
		"tab":            {`{"redirect_uris":["https://client.test/a\tb"]}`, CodeInvalidRedirectURI},
		"DEL":            {`{"redirect_uris":["https://client.test/a\u007fb"]}`, CodeInvalidRedirectURI},
		"port 0":         {`{"redirect_uris":["https://client.test:0/cb"]}`, CodeInvalidRedirectURI},
		"port 65536":     {`{"redirect_uris":["https://client.test:65536/cb"]}`, CodeInvalidRedirectURI},
		"IPv6 zone":      {`{"redirect_uris":["https://[fe80::1%25%20accounts.google.com]/cb"]}`, CodeInvalidRedirectURI},
		"loopback 99999": {`{"redirect_uris":["http://127.0.0.1:99999/cb"],"token_endpoint_auth_method":"none"}`, CodeInvalidRedirectURI},
		"21 URIs":        {`{"redirect_uris":[` + strings.Join(many, ",") + `]}`, CodeInvalidRedirectURI},
		"2001 bytes":     {`{"redirect_uris":["https://client.test/` + strings.Repeat("a", 2001-len("https://client.test/")) + `"]}`, CodeInvalidRedirectURI},
		"duplicate key": {`{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"client_secret_basic","token_endpoint_auth_method":"none"}`,
			CodeInvalidClientMetadata},
		"duplicate key escaped": {`{"redirect_uris":["https://client.test/cb"],"scope":"openid","sc\u006fpe":"email"}`, CodeInvalidClientMetadata},
	} {
		if r := register(e, tc.body); r.status != 400 || r.str("error") != tc.code {
			t.Errorf("%s: want 400 %s, got %d %s", name, tc.code, r.status, r.raw)
		}
	}
	if n := countStored(t, e); n != 0 {
		t.Fatalf("stored %d clients", n)
	}
	// At the limits it is accepted; a URI given twice is kept once.
	ok := mustRegister(t, e, `{"redirect_uris":[`+strings.Join(many[:19], ",")+`,"https://client.test/cba","https://client.test:65535/`+
		strings.Repeat("a", 2000-len("https://client.test:65535/"))+`"]}`)
	if got, _ := ok.body["redirect_uris"].([]any); len(got) != 20 {
		t.Fatalf("redirect_uris not de-duplicated: %d %s", len(got), ok.raw)
	}
}

// A registered client keeps only what registration offers now: after the
// operator stops offering client_credentials (or an audience), or turns
// registration off, a client registered before cannot use it (attack
// round 2 on issue 16: user-less tokens for the MCP audience went on).
func TestRegisteredClientFollowsCurrentSettings(t *testing.T) {
	t.Parallel()
	const aud = "https://mcp.test/mcp"
	e := newEngine(t, withRegistration(func(rc *RegistrationConfig) { rc.Audience = []string{aud} }))
	r := mustRegister(t, e, `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}`)
	id, secret := r.str("client_id"), r.str("client_secret")
	cc := url.Values{"grant_type": {GrantClientCredentials}, "resource": {aud}}
	if tr := postTokenRaw(e, cc, siBasicAuth(id, secret)); tr.status != http.StatusOK {
		t.Fatalf("client_credentials while offered: %d %s", tr.status, tr.raw)
	}
	e.registrar.cfg.GrantTypes = DefaultRegistrationGrants
	wantErr(t, postTokenRaw(e, cc, siBasicAuth(id, secret)), 400, CodeUnauthorizedClient)
	// Reading the registration (RFC 7592) tells the client the same.
	if got := regDo(e, http.MethodGet, "?client_id="+id, "", "Bearer "+r.str("registration_access_token"), ""); got.status != http.StatusOK ||
		strings.Contains(got.raw, GrantClientCredentials) {
		t.Errorf("registration read after client_credentials was withdrawn: %d %s", got.status, got.raw)
	}
	e.registrar.cfg.GrantTypes, e.registrar.cfg.Audience = registrableGrants, nil
	wantErr(t, postTokenRaw(e, cc, siBasicAuth(id, secret)), 400, CodeInvalidTarget)
	e.registrar = nil
	wantErr(t, postTokenRaw(e, cc, siBasicAuth(id, secret)), 400, CodeUnauthorizedClient)
}

// The consent page names a native app's scheme, whatever authority the
// URI carries: the code goes to the app that claims the scheme (attack
// round 2 on issue 16: com.evil://accounts.google.com/cb showed a Google
// host).
func TestReturnTarget(t *testing.T) {
	for in, want := range map[string]string{
		"https://client.test/cb":              "client.test",
		"http://127.0.0.1:8976/cb":            "127.0.0.1",
		"com.evil://accounts.google.com/cb":   "com.evil:",
		"com.evil://accounts.google.com:443/": "com.evil:",
		"com.example.app:/cb":                 "com.example.app:",
	} {
		if got := returnTarget(in); got != want {
			t.Errorf("returnTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNumericHost(t *testing.T) {
	for h, want := range map[string]bool{"2130706433": true, "0x7f000001": true, "017700000001": true, "127.1": true,
		"cafe.de": false, "0x.example": false, "example.com": false, "1.example": false} {
		if got := numericHost(h); got != want {
			t.Errorf("numericHost(%q) = %v", h, got)
		}
	}
}

// A jwks_uri host that is not ASCII is refused at registration: IDNA
// mapping turns ①②⑦.0.0.1 or fullwidth digits into 127.0.0.1 (third
// check on issue 16).
func TestRegisteredJWKSURIUnicodeHost(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withRegistration(nil))
	for _, host := range []string{"①②⑦.0.0.1", "１２７.０.０.１", "127。0。0。1", "ｌｏｃａｌｈｏｓｔ"} {
		r := register(e, `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://`+host+`/jwks"}`)
		if r.status != http.StatusBadRequest || r.str("error") != CodeInvalidClientMetadata {
			t.Errorf("jwks_uri host %q: %d %s", host, r.status, r.raw)
		}
	}
}
