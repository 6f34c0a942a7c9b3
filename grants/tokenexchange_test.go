package grants

import (
	"net/url"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// txAccessToken mints one of our access tokens for sub with scope and
// extra claims.
func txAccessToken(t testing.TB, e *Engine, sub, scope string, mod func(*tokens.AccessClaims)) string {
	c := tokens.NewAccessClaims(testIssuer, sub, "c-web", []string{testIssuer}, nil, time.Now(), time.Minute)
	c.Scope = scope
	if mod != nil {
		mod(c)
	}
	tok, err := e.keyRing().Current.MintAccessToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func txPost(e *Engine, kv ...string) tokenResult {
	v := url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"c-tx"}, "client_secret": {postSecret}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return postTokenRaw(e, v, "")
}

func TestTokenExchange(t *testing.T) {
	e := newEngine(t, withExchange())
	at := txAccessToken(t, e, "alice", "read write", nil)
	u, _ := e.users.Lookup(t.Context(), "alice")
	idc := newIDClaims(testIssuer, u, "c-tx", "", []string{"openid"}, time.Now(), time.Now(), time.Minute)
	idt, _ := e.keyRing().Current.MintIDToken(idc)
	expired := txAccessToken(t, e, "alice", "read", func(c *tokens.AccessClaims) { c.IssuedAt -= 7200; c.ExpiresAt = time.Now().Add(-time.Hour).Unix() })
	actorA := txAccessToken(t, e, "svc-a", "", nil)
	actorB := txAccessToken(t, e, "svc-b", "", nil)
	restricted := signRaw(t, e.keyRing().Current, mustJSON(t, hdrMap(e.keyRing().Current, nil)), mustJSON(t, map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testIssuer, "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(),
		"jti": "mayact", "client_id": "c-web", "scope": "read", "may_act": map[string]any{"sub": "svc-a"}}))
	chained := txAccessToken(t, e, "alice", "read", func(c *tokens.AccessClaims) { c.Act = map[string]any{"sub": "svc-old"} })
	ext := caSign(t, "ES256", caOtherKey, map[string]any{"alg": "ES256", "kid": "idp1"}, map[string]any{
		"iss": jbIssuer, "sub": "partner-7", "aud": testIssuer, "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(), "jti": "tx-ext-1"})

	const atT, idT, jwtT = TokenTypeAccessToken, TokenTypeIDToken, TokenTypeJWT
	tests := []struct {
		name   string
		kv     []string
		status int
		code   string
		check  func(t *testing.T, claims map[string]any)
	}{
		{"TX-06 access token", []string{"subject_token", at, "subject_token_type", atT, "requested_token_type", atT}, 200, "", func(t *testing.T, c map[string]any) {
			if c["sub"] != "alice" || c["client_id"] != "c-tx" || c["scope"] != "read write" {
				t.Errorf("claims %v", c)
			}
		}},
		{"narrower scope and audience", []string{"subject_token", at, "subject_token_type", atT, "scope", "read", "audience", "urn:svc:b"}, 200, "", func(t *testing.T, c map[string]any) {
			if c["scope"] != "read" || c["aud"] != "urn:svc:b" {
				t.Errorf("claims %v", c)
			}
		}},
		{"resource", []string{"subject_token", at, "subject_token_type", atT, "resource", "https://b.test"}, 200, "", func(t *testing.T, c map[string]any) {
			if c["aud"] != "https://b.test" {
				t.Errorf("aud %v", c["aud"])
			}
		}},
		{"ID token", []string{"subject_token", idt, "subject_token_type", idT}, 200, "", func(t *testing.T, c map[string]any) {
			if c["sub"] != "alice" || c["scope"] != nil {
				t.Errorf("claims %v", c)
			}
		}},
		{"trusted issuer JWT", []string{"subject_token", ext, "subject_token_type", jwtT}, 200, "", func(t *testing.T, c map[string]any) {
			if c["sub"] != externalSubject(jbIssuer, "partner-7") || c["ext_sub"] != "partner-7" || c["ext_iss"] != jbIssuer || c["scope"] != "read" {
				t.Errorf("claims %v", c)
			}
		}},
		{"TX-08 delegation", []string{"subject_token", at, "subject_token_type", atT, "actor_token", actorA, "actor_token_type", atT}, 200, "", func(t *testing.T, c map[string]any) {
			if act, _ := c["act"].(map[string]any); act["sub"] != "svc-a" {
				t.Errorf("act %v", c["act"])
			}
		}},
		{"TX-08 may_act allows svc-a", []string{"subject_token", restricted, "subject_token_type", atT, "actor_token", actorA, "actor_token_type", atT}, 200, "", nil},
		{"TX-08 nested act", []string{"subject_token", chained, "subject_token_type", atT, "actor_token", actorB, "actor_token_type", atT}, 200, "", func(t *testing.T, c map[string]any) {
			act, _ := c["act"].(map[string]any)
			inner, _ := act["act"].(map[string]any)
			if act["sub"] != "svc-b" || inner["sub"] != "svc-old" {
				t.Errorf("act %v", c["act"])
			}
		}},
		{"TX-01 no subject_token", []string{"subject_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-01 no subject_token_type", []string{"subject_token", at}, 400, CodeInvalidRequest, nil},
		{"TX-02 actor_token without type", []string{"subject_token", at, "subject_token_type", atT, "actor_token", actorA}, 400, CodeInvalidRequest, nil},
		{"TX-02 actor_token_type alone", []string{"subject_token", at, "subject_token_type", atT, "actor_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-03 ID token declared as access token", []string{"subject_token", idt, "subject_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-03 access token declared as ID token", []string{"subject_token", at, "subject_token_type", idT}, 400, CodeInvalidRequest, nil},
		{"TX-03 unknown type", []string{"subject_token", at, "subject_token_type", "urn:example:nope"}, 400, CodeInvalidRequest, nil},
		{"TX-04 expired", []string{"subject_token", expired, "subject_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-04 garbage", []string{"subject_token", "x.y.z", "subject_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-04 untrusted JWT", []string{"subject_token", caPKJ(t, nil), "subject_token_type", jwtT}, 400, CodeInvalidRequest, nil},
		{"TX-04 bad actor token", []string{"subject_token", at, "subject_token_type", atT, "actor_token", "x.y.z", "actor_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-05 audience not allowed", []string{"subject_token", at, "subject_token_type", atT, "audience", "urn:nope"}, 400, CodeInvalidTarget, nil},
		{"TX-05 resource with fragment", []string{"subject_token", at, "subject_token_type", atT, "resource", "https://b.test#x"}, 400, CodeInvalidTarget, nil},
		{"TX-05 resource not allowed", []string{"subject_token", at, "subject_token_type", atT, "resource", "https://a.test"}, 400, CodeInvalidTarget, nil},
		{"TX-07 saml2 requested", []string{"subject_token", at, "subject_token_type", atT, "requested_token_type", "urn:ietf:params:oauth:token-type:saml2"}, 400, CodeInvalidRequest, nil},
		{"TX-08 may_act refuses svc-b", []string{"subject_token", restricted, "subject_token_type", atT, "actor_token", actorB, "actor_token_type", atT}, 400, CodeInvalidRequest, nil},
		{"TX-09 scope beyond the subject token", []string{"subject_token", idt, "subject_token_type", idT, "scope", "read"}, 400, CodeInvalidScope, nil},
		{"TX-09 scope beyond the subject access token", []string{"subject_token", restricted, "subject_token_type", atT, "scope", "write"}, 400, CodeInvalidScope, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countRecords(t, e, storage.KindAssertions)
			tr := txPost(e, tt.kv...)
			if tt.status != 200 {
				wantErr(t, tr, tt.status, tt.code)
				return
			}
			wantOK(t, tr)
			if tr.str("issued_token_type") != TokenTypeAccessToken || tr.str("token_type") != "Bearer" {
				t.Errorf("answer %s", tr.raw)
			}
			_, claims := segments(t, tr.str("access_token"))
			if tt.check != nil {
				tt.check(t, claims)
			}
			if !verifies(e, tr.str("access_token")) {
				t.Error("the exchanged token does not verify")
			}
			// Only a trusted issuer's JWT is single-use, as in the
			// jwt-bearer grant.
			want := before
			if tt.kv[3] == jwtT {
				want++
			}
			if n := countRecords(t, e, storage.KindAssertions); n != want {
				t.Errorf("%d assertion ids recorded, want %d", n, want)
			}
		})
	}
}

// TX-10: only clients registered for the grant, never public ones.
func TestTokenExchangeClients(t *testing.T) {
	e := newEngine(t, withExchange())
	at := txAccessToken(t, e, "alice", "read", nil)
	wantErr(t, postToken(e, "c-web", url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {at}, "subject_token_type": {TokenTypeAccessToken}}),
		400, CodeUnauthorizedClient)
	pub := &Client{ClientSpec: ClientSpec{ID: "p", AuthMethod: AuthNone, GrantTypes: []string{GrantTokenExchange}}}
	if err := pub.Validate(); err == nil {
		t.Error("public token-exchange client accepted")
	}
	if !contains(testMetadata(t, e).GrantTypesSupported, GrantTokenExchange) {
		t.Error("token exchange not in discovery")
	}
}
