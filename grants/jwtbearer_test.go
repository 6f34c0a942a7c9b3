package grants

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

const jbIssuer = "https://idp.partner.test"

func jbClaims(mod func(map[string]any)) map[string]any {
	now := time.Now().Unix()
	m := map[string]any{"iss": jbIssuer, "sub": "user-42", "aud": testIssuer, "exp": now + 60, "iat": now, "jti": tokens.RandomID(12), "email": "u42@partner.test"}
	if mod != nil {
		mod(m)
	}
	return m
}

func jbAssertion(t testing.TB, mod func(map[string]any)) string {
	return caSign(t, "ES256", caOtherKey, map[string]any{"alg": "ES256", "kid": "idp1", "typ": "JWT"}, jbClaims(mod))
}

// jbPost sends a jwt-bearer request as client (client_secret_post).
func jbPost(e *Engine, client, assertion string, kv ...string) *httptest.ResponseRecorder {
	v := url.Values{"grant_type": {GrantJWTBearer}, "client_id": {client}, "client_secret": {postSecret}}
	if assertion != "" {
		v.Set("assertion", assertion)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return serve(e, tokenRequest(v.Encode()))
}

func TestJWTBearerGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withJWTBearer(nil))
	now := time.Now().Unix()
	hdr := func(mod func(map[string]any)) map[string]any {
		h := map[string]any{"alg": "ES256", "kid": "idp1"}
		if mod != nil {
			mod(h)
		}
		return h
	}
	tests := []struct {
		name   string
		client string
		tok    string
		kv     []string
		status int
		code   string
	}{
		{"valid", "c-jb", jbAssertion(t, nil), nil, 200, ""},
		{"aud token endpoint", "c-jb", jbAssertion(t, func(m map[string]any) { m["aud"] = testIssuer + TokenPath }), nil, 200, ""},
		{"JWTB-01 no assertion", "c-jb", "", nil, 400, CodeInvalidRequest},
		{"JWTB-01 garbage", "c-jb", "garbage", nil, 400, CodeInvalidGrant},
		{"JWTB-01 two JWTs", "c-jb", jbAssertion(t, nil) + " " + jbAssertion(t, nil), nil, 400, CodeInvalidGrant},
		{"JWTB-02 unknown iss", "c-jb", jbAssertion(t, func(m map[string]any) { m["iss"] = "https://evil.test" }), nil, 400, CodeInvalidGrant},
		{"JWTB-02 no iss", "c-jb", jbAssertion(t, func(m map[string]any) { delete(m, "iss") }), nil, 400, CodeInvalidGrant},
		{"JWTB-03 no sub", "c-jb", jbAssertion(t, func(m map[string]any) { delete(m, "sub") }), nil, 400, CodeInvalidGrant},
		{"JWTB-04 aud with slash", "c-jb", jbAssertion(t, func(m map[string]any) { m["aud"] = testIssuer + "/" }), nil, 400, CodeInvalidGrant},
		{"JWTB-04 aud other", "c-jb", jbAssertion(t, func(m map[string]any) { m["aud"] = "https://other.test" }), nil, 400, CodeInvalidGrant},
		{"JWTB-04 aud array with other", "c-jb", jbAssertion(t, func(m map[string]any) { m["aud"] = []string{testIssuer, "https://other.test"} }), nil, 400, CodeInvalidGrant},
		{"JWTB-05 expired", "c-jb", jbAssertion(t, func(m map[string]any) { m["exp"] = now - 120 }), nil, 400, CodeInvalidGrant},
		{"JWTB-05 no exp", "c-jb", jbAssertion(t, func(m map[string]any) { delete(m, "exp") }), nil, 400, CodeInvalidGrant},
		{"JWTB-05 lifetime too long", "c-jb", jbAssertion(t, func(m map[string]any) { m["exp"] = now + 3600 }), nil, 400, CodeInvalidGrant},
		{"JWTB-06 nbf future", "c-jb", jbAssertion(t, func(m map[string]any) { m["nbf"] = now + 600 }), nil, 400, CodeInvalidGrant},
		{"JWTB-06 iat old", "c-jb", jbAssertion(t, func(m map[string]any) { m["iat"] = now - 3600 }), nil, 400, CodeInvalidGrant},
		{"JWTB-07 no jti", "c-jb", jbAssertion(t, func(m map[string]any) { delete(m, "jti") }), nil, 400, CodeInvalidGrant},
		{"JWTB-08 alg none", "c-jb", caSign(t, "none", nil, hdr(func(h map[string]any) { h["alg"] = "none" }), jbClaims(nil)), nil, 400, CodeInvalidGrant},
		{"JWTB-08 key not in the JWKS", "c-jb", caSign(t, "ES256", caKey, hdr(nil), jbClaims(nil)), nil, 400, CodeInvalidGrant},
		{"JWTB-08 HS256 with the public key", "c-jb", caSign(t, "HS256", []byte(mustJSON(t, caOtherKey.Public())), hdr(func(h map[string]any) { h["alg"] = "HS256" }), jbClaims(nil)), nil, 400, CodeInvalidGrant},
		{"JWTB-09 crit", "c-jb", caSign(t, "ES256", caOtherKey, hdr(func(h map[string]any) { h["crit"] = []string{"x-foo"} }), jbClaims(nil)), nil, 400, CodeInvalidGrant},
		{"typ at+jwt", "c-jb", caSign(t, "ES256", caOtherKey, hdr(func(h map[string]any) { h["typ"] = "at+jwt" }), jbClaims(nil)), nil, 400, CodeInvalidGrant},
		{"client assertion signed by a client", "c-jb", caPKJ(t, nil), nil, 400, CodeInvalidGrant},
		{"client not allowed for the issuer", "c-jb2", jbAssertion(t, nil), nil, 400, CodeInvalidGrant},
		{"client not registered for the grant", "c-post", jbAssertion(t, nil), nil, 400, CodeUnauthorizedClient},
		{"JWTB-10 bad client credentials", "c-jb", jbAssertion(t, nil), []string{"client_secret", "wrong"}, 401, CodeInvalidClient},
		{"scope beyond the issuer's", "c-jb", jbAssertion(t, nil), []string{"scope", "admin"}, 400, CodeInvalidScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countRecords(t, e, storage.KindAssertions)
			w := jbPost(e, tt.client, tt.tok, tt.kv...)
			if tt.status == 200 {
				m := checkToken(t, w)
				_, claims := segments(t, m["access_token"].(string))
				if claims["ext_sub"] != "user-42" || claims["client_id"] != "c-jb" || claims["scope"] != "read write" {
					t.Errorf("claims %v", claims)
				}
				if _, ok := m["refresh_token"]; ok {
					t.Error("refresh token issued")
				}
				return
			}
			checkError(t, w, tt.status, tt.code)
			if after := countRecords(t, e, storage.KindAssertions); after != before {
				t.Errorf("refused assertion recorded (%d -> %d)", before, after)
			}
		})
	}
}

// RFC 7523 §3 (7): an assertion works once.
func TestJWTBearerReplay(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withJWTBearer(nil))
	a := jbAssertion(t, nil)
	checkToken(t, jbPost(e, "c-jb", a))
	checkError(t, jbPost(e, "c-jb", a), 400, CodeInvalidGrant)
}

func TestJWTBearerSubjectClaim(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withJWTBearer(func(ti *TrustedIssuer) { ti.SubjectClaim = "email" }))
	m := checkToken(t, jbPost(e, "c-jb", jbAssertion(t, nil), "scope", "read"))
	if _, claims := segments(t, m["access_token"].(string)); claims["ext_sub"] != "u42@partner.test" || claims["scope"] != "read" {
		t.Errorf("claims %v", claims)
	}
	checkError(t, jbPost(e, "c-jb", jbAssertion(t, func(m map[string]any) { delete(m, "email") })), 400, CodeInvalidGrant)
}

func TestJWTBearerConfig(t *testing.T) {
	t.Parallel()
	keys, _ := ParseJWKS(caJWKS(t, caOtherKey.Public(), "idp1", ""))
	jb := &Client{ClientSpec: ClientSpec{ID: "c-jb", AuthMethod: AuthSecretPost, GrantTypes: []string{GrantJWTBearer}}, SecretHash: HashSecret(postSecret)}
	cc := &Client{ClientSpec: ClientSpec{ID: "c-cc", AuthMethod: AuthSecretPost, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret(postSecret)}
	tests := []struct {
		name string
		ti   []*TrustedIssuer
		want string
	}{
		{"no keys", []*TrustedIssuer{{Issuer: jbIssuer, AllowedClients: []string{"c-jb"}}}, "jwks"},
		{"no clients", []*TrustedIssuer{{Issuer: jbIssuer, Keys: keys}}, "allowed_clients"},
		{"unknown client", []*TrustedIssuer{{Issuer: jbIssuer, Keys: keys, AllowedClients: []string{"nobody"}}}, "not defined"},
		{"client without the grant", []*TrustedIssuer{{Issuer: jbIssuer, Keys: keys, AllowedClients: []string{"c-cc"}}}, "grant_types"},
		{"twice", []*TrustedIssuer{{Issuer: jbIssuer, Keys: keys, AllowedClients: []string{"c-jb"}}, {Issuer: jbIssuer, Keys: keys, AllowedClients: []string{"c-jb"}}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewEngine(Config{Issuer: testIssuer, AccessTokenTTL: time.Minute, Clients: []*Client{jb, cc}, TrustedIssuers: tt.ti})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewEngine err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	e := newEngine(t, ccFixture(), withJWTBearer(nil))
	if !contains(testMetadata(t, e).GrantTypesSupported, GrantJWTBearer) {
		t.Error("jwt-bearer not in discovery")
	}
	if _, ok := newEngine(t, ccFixture()).grants[GrantJWTBearer]; ok {
		t.Error("jwt-bearer offered without a client for it")
	}
}
