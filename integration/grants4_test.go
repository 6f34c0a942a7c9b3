package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// Ports of the grants tests (issue 4): 19300 authorization server.
const (
	g4Issuer   = "http://localhost:19300"
	g4TokenURL = g4Issuer + "/oauth/token"
	g4HSSecret = "hs-secret-0123456789abcdef0123456789abcdef"
	g4Password = "alice-password-0123"
)

// g4Caddyfile runs the authorization server with the clients of the
// assertion-based features: private_key_jwt with a JWKS file and with an
// inline JWKS, and client_secret_jwt.
func g4Caddyfile(t *testing.T, dir string, pub *ecdsa.PublicKey) string {
	hash, err := bcrypt.GenerateFromPassword([]byte(g4Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	doc, _ := json.Marshal(set)
	if err := os.WriteFile(filepath.Join(dir, "client.jwks"), doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19380
	https_port 19381
	skip_install_trust
	grace_period 1ns
	oauth {
		issuer %s
		storage_path %s/oauth.db
		client pkj-file {
			auth_method private_key_jwt
			jwks_file %s/client.jwks
			grant_types client_credentials
			scopes invoices:read
		}
		client pkj-inline {
			auth_method private_key_jwt
			jwks `+"`%s`"+`
			grant_types client_credentials
			scopes invoices:read
		}
		client hs-client {
			auth_method client_secret_jwt
			secret %s
			grant_types client_credentials
			scopes invoices:read
		}
		client legacy-cli {
			secret legacy-secret-0123456789
			grant_types password refresh_token
			scopes openid email invoices:read
		}
		user alice {
			password_hash %s
			claim email alice@example.com
		}
		client partner-app {
			secret partner-secret-0123456789
			auth_method client_secret_post
			grant_types urn:ietf:params:oauth:grant-type:jwt-bearer
			scopes openid invoices:read invoices:write
			audience http://localhost:19302
		}
		client api-gateway {
			secret gateway-secret-0123456789
			grant_types urn:ietf:params:oauth:grant-type:token-exchange
			scopes openid email invoices:read
			exchange {
				audience urn:example:billing
			}
		}
		trust_issuer https://idp.partner.test {
			jwks_file %s/client.jwks
			allowed_clients partner-app
			scopes openid invoices:read
		}
	}
}
http://localhost:19300 {
	oauth_server
}
# What the partner's users reach: the gate shows who they are.
http://localhost:19302 {
	bind 127.0.0.1
	oauth_protect {
		scopes invoices:read
		audience http://localhost:19302
		forward_header X-Forwarded-User sub
	}
	respond "sub={oauth.sub} ext_sub={oauth.claim.ext_sub} ext_iss={oauth.claim.ext_iss}"
}
`, adminAddr, g4Issuer, dir, dir, doc, g4HSSecret, hash, dir)
}

func startG4(t *testing.T) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	startCaddy(t, g4Caddyfile(t, t.TempDir(), &key.PublicKey))
	return key
}

// g4Assertion builds a client assertion with jwx, as a client library
// would.
func g4Assertion(t *testing.T, clientID, aud string, alg jwa.SignatureAlgorithm, key any, kid string) string {
	tok, err := jwt.NewBuilder().Issuer(clientID).Subject(clientID).Audience([]string{aud}).
		IssuedAt(time.Now()).Expiration(time.Now().Add(time.Minute)).JwtID(fmt.Sprint(time.Now().UnixNano())).Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if kid != "" {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// g4Post sends a token request and decodes the JSON answer.
func g4Post(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	return postToken(t, g4TokenURL, form)
}

// postToken sends a token request to tokenURL and decodes the JSON answer.
func postToken(t *testing.T, tokenURL string, form url.Values) (int, map[string]any) {
	t.Helper()
	req := newRequest(t, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := httpDo(t, req)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("token answer %q is not JSON: %v", body, err)
	}
	return resp.StatusCode, m
}

func g4AssertionForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {assertion}}
}

// TestClientAssertionEndToEnd authenticates clients with private_key_jwt
// (JWKS file and inline) and client_secret_jwt through Caddy, and checks
// replay, audience and discovery (RFC 7523 §2.2 and §3,
// OIDC Core §9).
func TestClientAssertionEndToEnd(t *testing.T) {
	key := startG4(t)
	cases := []struct {
		name      string
		assertion string
		status    int
	}{
		{"pkj jwks_file", g4Assertion(t, "pkj-file", g4Issuer, jwa.ES256(), key, "k1"), 200},
		{"pkj inline jwks", g4Assertion(t, "pkj-inline", g4Issuer, jwa.ES256(), key, "k1"), 200},
		{"client_secret_jwt", g4Assertion(t, "hs-client", g4Issuer, jwa.HS256(), []byte(g4HSSecret), ""), 200},
		{"aud token endpoint", g4Assertion(t, "pkj-file", g4TokenURL, jwa.ES256(), key, "k1"), 401},
		{"aud another server", g4Assertion(t, "pkj-file", "https://other-as.test", jwa.ES256(), key, "k1"), 401},
		{"hs-client signed with a wrong secret", g4Assertion(t, "hs-client", g4Issuer, jwa.HS256(), []byte(strings.Repeat("w", 40)), ""), 401},
		{"unknown client", g4Assertion(t, "nobody", g4Issuer, jwa.ES256(), key, "k1"), 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := g4Post(t, g4AssertionForm(tc.assertion))
			if status != tc.status {
				t.Fatalf("status %d, want %d (%v)", status, tc.status, body)
			}
			if tc.status == 200 {
				if body["access_token"] == nil || body["token_type"] != "Bearer" {
					t.Fatalf("no token in %v", body)
				}
				// RFC 7523 §3 (7): the same assertion works once.
				if status, body := g4Post(t, g4AssertionForm(tc.assertion)); status != 401 || body["error"] != "invalid_client" {
					t.Fatalf("replay: %d %v", status, body)
				}
			} else if body["error"] != "invalid_client" {
				t.Fatalf("error = %v", body["error"])
			}
		})
	}
	_, meta := getJSON(t, g4Issuer+"/.well-known/oauth-authorization-server")
	methods := fmt.Sprint(meta["token_endpoint_auth_methods_supported"])
	algs := fmt.Sprint(meta["token_endpoint_auth_signing_alg_values_supported"])
	if !strings.Contains(methods, "private_key_jwt") || !strings.Contains(methods, "client_secret_jwt") ||
		!strings.Contains(algs, "ES256") || !strings.Contains(algs, "HS256") || strings.Contains(algs, "none") {
		t.Errorf("discovery: methods %s, algs %s", methods, algs)
	}
}

// g4PasswordClient is the legacy-cli client as golang.org/x/oauth2 sees it.
func g4PasswordClient(scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: "legacy-cli", ClientSecret: "legacy-secret-0123456789",
		Endpoint: oauth2.Endpoint{TokenURL: g4TokenURL, AuthStyle: oauth2.AuthStyleInHeader}, Scopes: scopes}
}

// TestPasswordGrantEndToEnd signs in with the password grant through
// Caddy using golang.org/x/oauth2, as a legacy client would (ROPC-*).
func TestPasswordGrantEndToEnd(t *testing.T) {
	startG4(t)
	ctx := clientContext(t)
	conf := g4PasswordClient("openid", "email")
	tok, err := conf.PasswordCredentialsToken(ctx, "alice", g4Password)
	if err != nil {
		t.Fatalf("password grant: %v", err)
	}
	_, claims := jwtParts(t, tok.AccessToken)
	if claims["sub"] != "alice" || claims["scope"] != "openid email" || tok.RefreshToken == "" {
		t.Fatalf("token: claims %v, refresh %q", claims, tok.RefreshToken)
	}
	idTok, _ := tok.Extra("id_token").(string)
	if _, id := jwtParts(t, idTok); id["sub"] != "alice" || id["aud"] != "legacy-cli" || id["email"] != "alice@example.com" {
		t.Fatalf("ID token claims %v", id)
	}
	// go-oidc's default verifier accepts RS256 only, as many relying
	// parties do (OIDC Core §15.1): the ID token is RS256 although access
	// tokens are ES256, its key is in the JWKS, and at_hash matches.
	rp := oidc.NewVerifier(g4Issuer, oidc.NewRemoteKeySet(ctx, g4Issuer+"/oauth/jwks"), &oidc.Config{ClientID: "legacy-cli"})
	idt, err := rp.Verify(ctx, idTok)
	if err != nil {
		t.Fatalf("go-oidc (RS256 only) refuses the ID token: %v", err)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	if hdr, _ := jwtParts(t, tok.AccessToken); hdr["alg"] != "ES256" {
		t.Fatalf("access token alg %v, want ES256 (signing_alg default)", hdr["alg"])
	}
	provider, err := oidc.NewProvider(ctx, g4Issuer)
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&disc); err != nil || !slices.Equal(disc.Algs, []string{"RS256", "ES256"}) {
		t.Fatalf("id_token_signing_alg_values_supported = %v (%v)", disc.Algs, err)
	}
	// The refresh token works through the library's refreshing source.
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	next, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil || next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v", err)
	}
	// Wrong password and unknown user: the same invalid_grant. An unknown
	// user costs a bcrypt at the production cost (RFC 6749 §4.3.2, §5.2), too slow for
	// the race detector; grants' unit tests cover it there.
	users := []string{"alice", "mallory"}
	if raceEnabled {
		users = []string{"alice", "alice"}
	}
	var bodies []string
	for _, user := range users {
		_, err := conf.PasswordCredentialsToken(ctx, user, "wrong-password")
		re := retrieveError(t, err)
		if re.Response.StatusCode != 400 || re.ErrorCode != "invalid_grant" {
			t.Fatalf("%s: %d %s", user, re.Response.StatusCode, re.ErrorCode)
		}
		bodies = append(bodies, string(re.Body))
	}
	if bodies[0] != bodies[1] {
		t.Errorf("unknown user and wrong password differ: %s / %s", bodies[0], bodies[1])
	}
	// A client not registered for the grant.
	other := *conf
	other.ClientID, other.ClientSecret = "hs-client", g4HSSecret
	if _, err := other.PasswordCredentialsToken(ctx, "alice", g4Password); retrieveError(t, err).ErrorCode != "invalid_client" {
		t.Errorf("hs-client with a secret: %v", err)
	}
	_, meta := getJSON(t, g4Issuer+"/.well-known/oauth-authorization-server")
	if !strings.Contains(fmt.Sprint(meta["grant_types_supported"]), "password") {
		t.Errorf("grant_types_supported = %v", meta["grant_types_supported"])
	}
}

// TestJWTBearerEndToEnd exchanges a partner IdP's JWT, built with jwx,
// for an access token through Caddy (JWTB-*).
func TestJWTBearerEndToEnd(t *testing.T) {
	key := startG4(t)
	assertion := func(iss, aud string) string { return g4PartnerAssertion(t, key, iss, aud, "partner-user-7") }
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {a},
			"client_id": {"partner-app"}, "client_secret": {"partner-secret-0123456789"}}
	}
	good := assertion("https://idp.partner.test", g4Issuer)
	status, body := g4Post(t, form(good))
	if status != 200 {
		t.Fatalf("status %d: %v", status, body)
	}
	_, claims := jwtParts(t, body["access_token"].(string))
	if claims["ext_sub"] != "partner-user-7" || claims["ext_iss"] != "https://idp.partner.test" ||
		!strings.HasPrefix(claims["sub"].(string), "ext#") || claims["scope"] != "openid invoices:read" || body["refresh_token"] != nil {
		t.Fatalf("token %v, claims %v", body, claims)
	}
	for name, a := range map[string]string{
		"replay":         good,
		"unknown issuer": assertion("https://idp.evil.test", g4Issuer),
		"other audience": assertion("https://idp.partner.test", "https://other.test"),
	} {
		if status, body := g4Post(t, form(a)); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if status, body := g4Post(t, form("not-a-jwt")); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("garbage: %d %v", status, body)
	}
	// Token endpoint audience is accepted for the grant.
	if status, body := g4Post(t, form(assertion("https://idp.partner.test", g4TokenURL))); status != 200 {
		t.Errorf("token endpoint audience: %d %v", status, body)
	}
}

// TestExternalSubjectAtGateAndUserinfo: a partner IdP asserting the name
// of local user alice (or of a client) gets neither: the gate forwards the
// namespaced subject with ext_sub/ext_iss, and userinfo never answers with
// alice's claims (issue 10 §1).
func TestExternalSubjectAtGateAndUserinfo(t *testing.T) {
	key := startG4(t)
	for _, asserted := range []string{"alice", "api-gateway"} {
		status, body := g4Post(t, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
			"assertion": {g4PartnerAssertion(t, key, "https://idp.partner.test", g4Issuer, asserted)}, "scope": {"openid invoices:read"},
			"client_id": {"partner-app"}, "client_secret": {"partner-secret-0123456789"}})
		if status != 200 {
			t.Fatalf("%s: %d %v", asserted, status, body)
		}
		tok := body["access_token"].(string)
		resp, got := callAPI(t, "http://localhost:19302/", "Bearer "+tok)
		want := "ext_sub=" + asserted + " ext_iss=https://idp.partner.test"
		if resp.StatusCode != 200 || !strings.HasPrefix(got, "sub=ext#") || !strings.HasSuffix(got, want) {
			t.Errorf("%s: gate %d %q", asserted, resp.StatusCode, got)
		}
		req := newRequest(t, http.MethodGet, g4Issuer+"/oauth/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, ui := httpDo(t, req)
		if resp.StatusCode != 200 || strings.Contains(ui, "alice@example.com") || strings.Contains(ui, `"sub":"`+asserted+`"`) ||
			!strings.Contains(ui, `"ext_sub":"`+asserted+`"`) {
			t.Errorf("%s: userinfo %d %s", asserted, resp.StatusCode, ui)
		}
	}
}

// g4PartnerAssertion is the partner IdP's JWT for sub, built with jwx.
func g4PartnerAssertion(t *testing.T, key *ecdsa.PrivateKey, iss, aud, sub string) string {
	tok, err := jwt.NewBuilder().Issuer(iss).Subject(sub).Audience([]string{aud}).
		IssuedAt(time.Now()).Expiration(time.Now().Add(time.Minute)).JwtID(fmt.Sprint(time.Now().UnixNano())).Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// TestTokenExchangeEndToEnd: a user's access token from the password
// grant is exchanged by a gateway, with an actor, for a billing token
// (TX-*).
func TestTokenExchangeEndToEnd(t *testing.T) {
	startG4(t)
	ctx := clientContext(t)
	user, err := g4PasswordClient("openid", "invoices:read").PasswordCredentialsToken(ctx, "alice", g4Password)
	if err != nil {
		t.Fatal(err)
	}
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {user.AccessToken},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	post := func(v url.Values) (int, map[string]any) {
		req := newRequest(t, http.MethodPost, g4TokenURL, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("api-gateway", "gateway-secret-0123456789")
		resp, body := httpDo(t, req)
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		return resp.StatusCode, m
	}
	// An ID token is for the client it was issued to (legacy-cli) alone:
	// the gateway may not present it.
	idTok, _ := user.Extra("id_token").(string)
	if status, body := post(form("subject_token", idTok, "subject_token_type", "urn:ietf:params:oauth:token-type:id_token")); status != 400 || body["error"] != "invalid_request" {
		t.Errorf("another client's ID token: %d %v", status, body)
	}
	status, body := post(form("audience", "urn:example:billing", "scope", "invoices:read",
		"actor_token", user.AccessToken, "actor_token_type", "urn:ietf:params:oauth:token-type:access_token"))
	if status != 200 || body["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" || body["token_type"] != "Bearer" {
		t.Fatalf("exchange: %d %v", status, body)
	}
	_, claims := jwtParts(t, body["access_token"].(string))
	if act, _ := claims["act"].(map[string]any); claims["sub"] != "alice" || claims["aud"] != "urn:example:billing" ||
		claims["client_id"] != "api-gateway" || act["sub"] != "alice" {
		t.Fatalf("claims %v", claims)
	}
	for name, tc := range map[string]struct {
		v    url.Values
		code string
	}{
		"audience not allowed": {form("audience", "urn:nope"), "invalid_target"},
		"scope wider":          {form("scope", "email"), "invalid_scope"},
		"bad subject token":    {form("subject_token", "x.y.z"), "invalid_request"},
		"saml2 requested":      {form("requested_token_type", "urn:ietf:params:oauth:token-type:saml2"), "invalid_request"},
	} {
		if status, body := post(tc.v); status != 400 || body["error"] != tc.code {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
}
