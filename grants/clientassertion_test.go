package grants

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Fixtures for client assertions: c-jwt (client_secret_jwt) and c-pkj
// (private_key_jwt with an ES256 key, kid "k1").
const caSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" // 64 bytes: HS512 too

var (
	caKey, _    = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caOtherKey  = mustEC()
	caRSAKey, _ = rsa.GenerateKey(rand.Reader, 2048)
)

func mustEC() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }

// caJWKS is the JWKS document of pub with kid and (optionally) alg.
func caJWKS(t testing.TB, pub crypto.PublicKey, kid, alg string) []byte {
	t.Helper()
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	if alg != "" {
		_ = k.Set(jwk.AlgorithmKey, alg)
	}
	set := jwk.NewSet()
	_ = set.AddKey(k)
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func caClients(t testing.TB) []*Client {
	keys, err := ParseJWKS(caJWKS(t, caKey.Public(), "k1", ""))
	if err != nil {
		t.Fatal(err)
	}
	return []*Client{
		{ClientSpec: ClientSpec{ID: "c-jwt", AuthMethod: AuthSecretJWT, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}}, Secret: []byte(caSecret)},
		{ClientSpec: ClientSpec{ID: "c-pkj", AuthMethod: AuthPrivateKeyJWT, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}}, Keys: keys},
	}
}

// caSign builds a compact JWS from a header and claims given as maps (or
// raw JSON strings), signed with key under alg; alg "none" leaves the
// signature empty.
func caSign(t testing.TB, alg string, key any, hdr, claims any) string {
	t.Helper()
	enc := func(v any) string {
		if s, ok := v.(string); ok {
			return base64.RawURLEncoding.EncodeToString([]byte(s))
		}
		return base64.RawURLEncoding.EncodeToString([]byte(mustJSON(t, v)))
	}
	input := enc(hdr) + "." + enc(claims)
	if alg == "none" {
		return input + "."
	}
	a, _ := jwa.LookupSignatureAlgorithm(alg)
	signer, err := jws.SignerFor(a)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(key, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// caClaims are valid assertion claims for client id; mod adjusts them.
func caClaims(id string, mod func(map[string]any)) map[string]any {
	now := time.Now().Unix()
	m := map[string]any{"iss": id, "sub": id, "aud": testIssuer, "exp": now + 60, "iat": now, "jti": tokens.RandomID(12)}
	if mod != nil {
		mod(m)
	}
	return m
}

func caPKJ(t testing.TB, mod func(map[string]any)) string {
	return caSign(t, "ES256", caKey, map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"}, caClaims("c-pkj", mod))
}

func caHS(t testing.TB, alg string, mod func(map[string]any)) string {
	return caSign(t, alg, []byte(caSecret), map[string]any{"alg": alg}, caClaims("c-jwt", mod))
}

// caForm is a client_credentials request authenticated by assertion.
func caForm(assertion string, extra ...string) string {
	v := url.Values{"grant_type": {GrantClientCredentials}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {assertion}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v.Encode()
}

func TestClientAssertion(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withAssertionClients())
	now := time.Now().Unix()
	pkjHdr := func(mod func(map[string]any)) map[string]any {
		h := map[string]any{"alg": "ES256", "kid": "k1"}
		if mod != nil {
			mod(h)
		}
		return h
	}
	pubDER, _ := json.Marshal(caKey.Public())
	ours, _ := e.keyRing().Current.MintAccessToken(tokens.NewAccessClaims(testIssuer, "c-pkj", "c-pkj", []string{testIssuer}, nil, time.Now(), time.Minute))
	attackerJWK, _ := jwk.Import(caOtherKey.Public())
	valid := caPKJ(t, nil)
	tests := []struct {
		name   string
		body   string
		auth   string
		status int
	}{
		{"private_key_jwt", caForm(caPKJ(t, nil)), "", 200},
		{"client_secret_jwt HS256", caForm(caHS(t, "HS256", nil)), "", 200},
		{"client_secret_jwt HS512", caForm(caHS(t, "HS512", nil)), "", 200},
		{"typ client-authentication+jwt", caForm(caSign(t, "ES256", caKey, pkjHdr(func(h map[string]any) { h["typ"] = "client-authentication+jwt" }), caClaims("c-pkj", nil))), "", 200},
		{"no typ, no kid", caForm(caSign(t, "ES256", caKey, map[string]any{"alg": "ES256"}, caClaims("c-pkj", nil))), "", 200},
		{"aud array of the issuer alone", caForm(caPKJ(t, func(m map[string]any) { m["aud"] = []string{testIssuer} })), "", 200},
		{"client_id matches", caForm(caPKJ(t, nil), "client_id", "c-pkj"), "", 200},
		// RFC 7523 §2.2
		{"CA-04 wrong assertion type", strings.Replace(caForm(valid), "jwt-bearer", "saml2-bearer", 1), "", 401},
		{"CA-04 type without assertion", url.Values{"grant_type": {GrantClientCredentials}, "client_assertion_type": {ClientAssertionType}}.Encode(), "", 401},
		{"CA-04 two JWTs", caForm(caPKJ(t, nil) + " " + caPKJ(t, nil)), "", 401},
		{"CA-04 JWE shape", caForm("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"), "", 401},
		{"CA-04 JSON serialization", caForm(`{"payload":"e30","signatures":[{"protected":"e30","signature":"AA"}]}`), "", 401},
		{"CA-04 garbage", caForm("a.b.c"), "", 401},
		// RFC 7523 §3 (1,2), OIDC Core §9
		{"CA-05 sub is another client", caForm(caPKJ(t, func(m map[string]any) { m["sub"] = "c-other" })), "", 401},
		{"CA-05 no iss", caForm(caPKJ(t, func(m map[string]any) { delete(m, "iss") })), "", 401},
		// RFC 7523 §3 (3), OIDC Core §9: audience injection
		{"CA-06 aud evil", caForm(caPKJ(t, func(m map[string]any) { m["aud"] = "https://evil.test" })), "", 401},
		{"CA-06 aud array with another AS", caForm(caPKJ(t, func(m map[string]any) { m["aud"] = []string{testIssuer, "https://other-as.test"} })), "", 401},
		{"CA-06 aud with trailing slash", caForm(caPKJ(t, func(m map[string]any) { m["aud"] = testIssuer + "/" })), "", 401},
		{"CA-06 aud token endpoint (strict)", caForm(caPKJ(t, func(m map[string]any) { m["aud"] = testIssuer + TokenPath })), "", 401},
		{"CA-06 no aud", caForm(caPKJ(t, func(m map[string]any) { delete(m, "aud") })), "", 401},
		// RFC 7523 §3 (4): numeric claim abuse
		{"CA-07 no exp", caForm(caPKJ(t, func(m map[string]any) { delete(m, "exp") })), "", 401},
		{"CA-07 expired", caForm(caPKJ(t, func(m map[string]any) { m["exp"] = now - 120 })), "", 401},
		{"CA-07 a day long", caForm(caPKJ(t, func(m map[string]any) { m["exp"] = now + 86400 })), "", 401},
		{"A-11 exp string", caForm(caPKJ(t, func(m map[string]any) { m["exp"] = "9999999999" })), "", 401},
		{"A-11 exp 1e20", caForm(caPKJ(t, func(m map[string]any) { m["exp"] = 1e20 })), "", 401},
		{"A-11 exp -1", caForm(caPKJ(t, func(m map[string]any) { m["exp"] = -1 })), "", 401},
		{"A-11 nbf object", caForm(caPKJ(t, func(m map[string]any) { m["nbf"] = map[string]any{} })), "", 401},
		// RFC 7523 §3 (5,6)
		{"CA-08 nbf future", caForm(caPKJ(t, func(m map[string]any) { m["nbf"] = now + 300 })), "", 401},
		{"CA-08 iat an hour ago", caForm(caPKJ(t, func(m map[string]any) { m["iat"] = now - 3600 })), "", 401},
		{"CA-08 iat future", caForm(caPKJ(t, func(m map[string]any) { m["iat"] = now + 300 })), "", 401},
		// RFC 7523 §3 (7), OIDC Core §9: jti, used once
		{"CA-09 no jti", caForm(caPKJ(t, func(m map[string]any) { delete(m, "jti") })), "", 401},
		// RFC 7523 §3 (9), RFC 8725 §3.1-3.2: alg none, algorithm confusion
		{"A-01 alg none", caForm(caSign(t, "none", nil, map[string]any{"alg": "none", "kid": "k1"}, caClaims("c-pkj", nil))), "", 401},
		{"A-02 HS256 keyed with the public key", caForm(caSign(t, "HS256", pubDER, pkjHdr(func(h map[string]any) { h["alg"] = "HS256" }), caClaims("c-pkj", nil))), "", 401},
		{"CA-10 c-jwt with ES256", caForm(caSign(t, "ES256", caKey, map[string]any{"alg": "ES256"}, caClaims("c-jwt", nil))), "", 401},
		{"CA-10 c-jwt wrong secret", caForm(caSign(t, "HS256", []byte(strings.Repeat("x", 32)), map[string]any{"alg": "HS256"}, caClaims("c-jwt", nil))), "", 401},
		{"CA-10 c-pkj signed by another key", caForm(caSign(t, "ES256", caOtherKey, pkjHdr(nil), caClaims("c-pkj", nil))), "", 401},
		{"CA-10 c-pkj ES256 header over RS256 signature", caForm(caSign(t, "RS256", caRSAKey, pkjHdr(nil), caClaims("c-pkj", nil))), "", 401},
		// RFC 8725 §3.11: token confusion
		{"CA-11 typ at+jwt", caForm(caSign(t, "ES256", caKey, pkjHdr(func(h map[string]any) { h["typ"] = "at+jwt" }), caClaims("c-pkj", nil))), "", 401},
		{"CA-11 typ dpop+jwt", caForm(caSign(t, "ES256", caKey, pkjHdr(func(h map[string]any) { h["typ"] = "dpop+jwt" }), caClaims("c-pkj", nil))), "", 401},
		{"CA-11 our access token", caForm(ours), "", 401},
		// RFC 7521 §4.2
		{"CA-12 client_id differs", caForm(caPKJ(t, nil), "client_id", "c-basic"), "", 401},
		// OIDC Core §9, RFC 6749 §2.3: the registered method only, one per request
		{"CA-02 c-basic cannot use an assertion", caForm(caSign(t, "HS256", []byte(basicSecret+strings.Repeat("x", 32)), map[string]any{"alg": "HS256"}, caClaims("c-basic", nil))), "", 401},
		{"CA-02 c-pkj with a Basic secret", "grant_type=client_credentials", basicAuth("c-pkj", "anything"), 401},
		{"CA-02 c-jwt with its secret in the body", "grant_type=client_credentials&client_id=c-jwt&client_secret=" + caSecret, "", 401},
		{"TOK-15 Basic plus assertion", caForm(caPKJ(t, nil)), basicAuth("c-basic", basicSecret), 401},
		// RFC 8725 §3.10, RFC 7515 §4.1: hostile kid, jku and x5u, embedded jwk
		// and x5c, crit, duplicate members
		{"A-03 unknown kid", caForm(caSign(t, "ES256", caKey, pkjHdr(func(h map[string]any) { h["kid"] = "../../../../dev/null" }), caClaims("c-pkj", nil))), "", 401},
		{"A-03 huge kid", caForm(caSign(t, "ES256", caKey, pkjHdr(func(h map[string]any) { h["kid"] = strings.Repeat("k", 10000) }), caClaims("c-pkj", nil))), "", 401},
		{"A-04 jku to an attacker key", caForm(caSign(t, "ES256", caOtherKey, pkjHdr(func(h map[string]any) { h["jku"] = "https://evil.test/jwks" }), caClaims("c-pkj", nil))), "", 401},
		{"A-05 embedded jwk", caForm(caSign(t, "ES256", caOtherKey, pkjHdr(func(h map[string]any) { h["jwk"] = attackerJWK }), caClaims("c-pkj", nil))), "", 401},
		{"A-06 crit", caForm(caSign(t, "ES256", caKey, pkjHdr(func(h map[string]any) { h["crit"] = []string{"exp"} }), caClaims("c-pkj", nil))), "", 401},
		{"A-07 duplicate alg", caForm(caSign(t, "ES256", caKey, `{"alg":"ES256","kid":"k1","alg":"none"}`, caClaims("c-pkj", nil))), "", 401},
		{"A-07 duplicate sub", caForm(caSign(t, "ES256", caKey, pkjHdr(nil),
			`{"iss":"c-pkj","sub":"c-pkj","sub":"c-other","aud":"`+testIssuer+`","exp":`+itoa(now+60)+`,"jti":"dup"}`)), "", 401},
		{"A-10 deep nesting", caForm(caSign(t, "ES256", caKey, pkjHdr(nil), `{"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`)), "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countRecords(t, e, storage.KindAssertions)
			r := tokenRequest(tt.body)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			w := serve(e, r)
			if tt.status == 200 {
				checkToken(t, w)
				return
			}
			checkError(t, w, tt.status, CodeInvalidClient)
			if after := countRecords(t, e, storage.KindAssertions); after != before {
				t.Errorf("a refused assertion was recorded (%d -> %d records)", before, after)
			}
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// RFC 7523 §3 (7), OIDC Core §9: an assertion works once, for either method.
func TestClientAssertionReplay(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withAssertionClients())
	for _, a := range []string{caPKJ(t, nil), caHS(t, "HS256", nil)} {
		checkToken(t, serve(e, tokenRequest(caForm(a))))
		checkError(t, serve(e, tokenRequest(caForm(a))), 401, CodeInvalidClient)
	}
	// The same jti from two clients is two assertions.
	jti := func(m map[string]any) { m["jti"] = "shared" }
	checkToken(t, serve(e, tokenRequest(caForm(caPKJ(t, jti)))))
	checkToken(t, serve(e, tokenRequest(caForm(caHS(t, "HS256", jti)))))
}

func TestClientAssertionMetadata(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withAssertionClients())
	m := testMetadata(t, e)
	for _, want := range []string{AuthSecretBasic, AuthSecretPost, AuthSecretJWT, AuthPrivateKeyJWT} {
		if !contains(m.TokenEndpointAuthMethodsSupported, want) {
			t.Errorf("token_endpoint_auth_methods_supported = %v lacks %s", m.TokenEndpointAuthMethodsSupported, want)
		}
	}
	for _, want := range []string{"HS256", "ES256"} {
		if !contains(m.TokenEndpointAuthSigningAlgsSupported, want) {
			t.Errorf("signing algs = %v lack %s", m.TokenEndpointAuthSigningAlgsSupported, want)
		}
	}
	// c-pkj's one key is ES256: nothing else can verify its assertions.
	for _, unverifiable := range []string{"EdDSA", "PS256", "RS256"} {
		if contains(m.TokenEndpointAuthSigningAlgsSupported, unverifiable) {
			t.Errorf("signing algs = %v list %s, which no client key verifies", m.TokenEndpointAuthSigningAlgsSupported, unverifiable)
		}
	}
	if contains(m.TokenEndpointAuthSigningAlgsSupported, "none") {
		t.Error("none is advertised")
	}
	if m := testMetadata(t, newEngine(t, ccFixture())); m.TokenEndpointAuthSigningAlgsSupported != nil {
		t.Errorf("signing algs advertised without assertion clients: %v", m.TokenEndpointAuthSigningAlgsSupported)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	priv, _ := jwk.Import(caKey)
	privSet := jwk.NewSet()
	_ = privSet.AddKey(priv)
	privDoc, _ := json.Marshal(privSet)
	tests := []struct {
		name string
		doc  []byte
		ok   bool
	}{
		{"EC public", caJWKS(t, caKey.Public(), "k1", ""), true},
		{"RSA PS256", caJWKS(t, caRSAKey.Public(), "r", "PS256"), true},
		{"private key", privDoc, false},
		{"symmetric key", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), false},
		{"EC key with RS256", caJWKS(t, caKey.Public(), "k1", "RS256"), false},
		{"EC key with HS256", caJWKS(t, caKey.Public(), "k1", "HS256"), false},
		{"empty", []byte(`{"keys":[]}`), false},
		{"not JSON", []byte(`{"keys":`), false},
		{"duplicate members", []byte(`{"keys":[],"keys":[]}`), false},
		{"too large", append([]byte(`{"keys":[],"x":"`), append([]byte(strings.Repeat("a", MaxJWKSBytes)), '"', '}')...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJWKS(tt.doc)
			if (err == nil) != tt.ok {
				t.Errorf("ParseJWKS err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	for _, u := range []string{"http://keys.test/jwks", "keys.test/jwks", "https://u:p@keys.test/", "https:///x"} {
		if _, err := RemoteJWKS(u); err == nil {
			t.Errorf("RemoteJWKS(%q) accepted", u)
		}
	}
}

// private_key_jwt with a jwks_uri: fetched on first use, cached,
// refreshed for an unknown kid no more often than jwksMinRefresh, and a
// document over the size cap is refused.
func TestClientAssertionRemoteJWKS(t *testing.T) {
	t.Parallel()
	var doc atomic.Value
	doc.Store(caJWKS(t, caKey.Public(), "k1", ""))
	var fetches atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(doc.Load().([]byte))
	}))
	t.Cleanup(srv.Close)
	keys, err := RemoteJWKS(srv.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	keys.client.Transport = srv.Client().Transport
	e := newEngine(t, ccFixture(), withConfig(func(c *Config) {
		c.Clients = append(c.Clients, &Client{ClientSpec: ClientSpec{ID: "c-pkj", AuthMethod: AuthPrivateKeyJWT, GrantTypes: []string{GrantClientCredentials}}, Keys: keys})
	}))
	checkToken(t, serve(e, tokenRequest(caForm(caPKJ(t, nil)))))
	checkToken(t, serve(e, tokenRequest(caForm(caPKJ(t, nil)))))
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetched %d times, want 1 (cached)", n)
	}
	// The client rotates to a new key with kid k2.
	doc.Store(caJWKS(t, caOtherKey.Public(), "k2", ""))
	rotated := caSign(t, "ES256", caOtherKey, map[string]any{"alg": "ES256", "kid": "k2"}, caClaims("c-pkj", nil))
	checkError(t, serve(e, tokenRequest(caForm(rotated))), 401, CodeInvalidClient) // within the refresh floor
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetched %d times within the refresh floor, want 1", n)
	}
	keys.mu.Lock()
	keys.tried = time.Now().Add(-time.Minute)
	keys.mu.Unlock()
	rotated = caSign(t, "ES256", caOtherKey, map[string]any{"alg": "ES256", "kid": "k2"}, caClaims("c-pkj", nil))
	checkToken(t, serve(e, tokenRequest(caForm(rotated))))
	// An oversized document is refused; the cached keys stay.
	doc.Store([]byte(`{"keys":[],"pad":"` + strings.Repeat("a", 100<<10) + `"}`))
	keys.mu.Lock()
	keys.tried, keys.fetched = time.Time{}, time.Time{}
	keys.mu.Unlock()
	checkToken(t, serve(e, tokenRequest(caForm(caSign(t, "ES256", caOtherKey, map[string]any{"alg": "ES256", "kid": "k2"}, caClaims("c-pkj", nil))))))
}

// FuzzSplitAssertion feeds arbitrary assertions through everything that
// reads them before and after the signature check: it must never panic,
// and what it accepts must be one compact JWS with object header and
// payload.
func FuzzSplitAssertion(f *testing.F) {
	t0 := time.Unix(1_700_000_000, 0)
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJjIn0.AA")
	f.Add(`eyJhbGciOiJub25lIn0.e30.`)
	f.Add("a.b.c.d.e")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","alg":"none"}`)) + ".e30.AA")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","crit":["exp"]}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"exp":1e999,"aud":["a","b"],"nbf":{}}`)) + ".AA")
	f.Fuzz(func(t *testing.T, tok string) {
		h, payload, err := splitAssertion(tok)
		if err != nil {
			return
		}
		if strings.Count(tok, ".") != 2 || h.Alg == "" || h.Crit != nil {
			t.Fatalf("accepted %q", tok)
		}
		c, err := decodeAssertionClaims(payload)
		if err != nil {
			return
		}
		_ = c.check([]string{testIssuer}, t0)
	})
}

// JOSE names are case-sensitive: encoding/json would read "ISS" as iss and
// let a later "SUB" replace sub, so neither reaches the claim checks.
func TestJOSENamesCaseSensitive(t *testing.T) {
	for obj, ok := range map[string]bool{
		`{"iss":"a","sub":"b"}`:              true,
		`{"x5t#S256":"a","Roles":["x"]}`:     true,
		`{"ISS":"a"}`:                        false,
		`{"sub":"alice","SUB":"admin"}`:      false,
		`{"Custom":"a","custom":"b"}`:        false,
		`{"Alg":"ES256"}`:                    false,
		`{"keys":[],"Keys":[{"kty":"oct"}]}`: false,
	} {
		if err := checkJSONObject([]byte(obj)); (err == nil) != ok {
			t.Errorf("checkJSONObject(%s) = %v, want ok %v", obj, err, ok)
		}
	}
	e := newEngine(t, ccFixture(), withAssertionClients())
	tok := caSign(t, "ES256", caKey, map[string]any{"alg": "ES256", "kid": "k1"},
		caClaims("c-pkj", func(m map[string]any) { m["ISS"] = m["iss"]; delete(m, "iss") }))
	checkError(t, serve(e, tokenRequest(caForm(tok))), 401, CodeInvalidClient)
	je := newEngine(t, ccFixture(), withJWTBearer(nil))
	checkError(t, jbPost(je, "c-jb", jbAssertion(t, func(m map[string]any) { m["SUB"] = "admin" })), 400, CodeInvalidGrant)
}
