package grants

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
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
	t.Parallel()
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

// RFC 8693 §2.1: only clients registered for the grant, never public ones.
func TestTokenExchangeClients(t *testing.T) {
	t.Parallel()
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

// Issue 10 §2 and §4: token exchange inside the rules of the tokens it
// came from; no leeway on our own tokens; repeated exchange targets.

// introspectAsTX asks introspection about tok as c-tx.
func introspectAsTX(e *Engine, tok string) tokenResult {
	return opPost(e, e.serveIntrospect, IntrospectPath, "", url.Values{"client_id": {"c-tx"}, "client_secret": {postSecret}, "token": {tok}}, "")
}

// §2: a token exchanged from a grant's access token dies with the grant,
// the user and the original client, at the verifier and at introspection.
func TestExchangedTokenRevokedWithItsGrant(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"refresh token", "subject", "client"} {
		t.Run(how, func(t *testing.T) {
			e := newEngine(t, withExchange())
			g := firstGrant(t, e, "c-web")
			tr := txPost(e, "subject_token", g.str("access_token"), "subject_token_type", TokenTypeAccessToken)
			wantOK(t, tr)
			x := tr.str("access_token")
			if !verifies(e, x) || introspectAsTX(e, x).body["active"] != true {
				t.Fatal("the exchanged token is not live")
			}
			var err error
			switch how {
			case "refresh token":
				if tr := opRevoke(e, "c-web", "token", g.str("refresh_token")); tr.status != 200 {
					t.Fatalf("revoke: %d %s", tr.status, tr.raw)
				}
			case "subject":
				_, err = e.RevokeSubject(context.Background(), "alice")
			case "client":
				_, err = e.RevokeClient(context.Background(), "c-web")
			}
			if err != nil {
				t.Fatal(err)
			}
			if verifies(e, x) {
				t.Error("the exchanged token still verifies")
			}
			opInactive(t, introspectAsTX(e, x))
		})
	}
}

// §2: an exchanged token never outlives its subject or actor token, so
// re-exchanging cannot extend the chain.
func TestExchangedTokenNeverOutlivesItsParents(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	soon := time.Now().Add(20 * time.Second).Unix()
	subj := txAccessToken(t, e, "alice", "read", func(c *tokens.AccessClaims) { c.ExpiresAt = soon })
	tr := txPost(e, "subject_token", subj, "subject_token_type", TokenTypeAccessToken)
	wantOK(t, tr)
	x := tr.str("access_token")
	if _, c := segments(t, x); expOf(c) > soon {
		t.Errorf("exchanged exp %v after the subject's %d", c["exp"], soon)
	}
	if n, _ := tr.body["expires_in"].(float64); n > 20 || n <= 0 {
		t.Errorf("expires_in %v", n)
	}
	again := txPost(e, "subject_token", x, "subject_token_type", TokenTypeAccessToken)
	wantOK(t, again)
	if _, c := segments(t, again.str("access_token")); expOf(c) > soon {
		t.Errorf("re-exchange extended the chain to %v", c["exp"])
	}
	fresh := txAccessToken(t, e, "alice", "read", nil)
	actor := txAccessToken(t, e, "svc-a", "", func(c *tokens.AccessClaims) { c.ExpiresAt = soon })
	tr = txPost(e, "subject_token", fresh, "subject_token_type", TokenTypeAccessToken, "actor_token", actor, "actor_token_type", TokenTypeAccessToken)
	wantOK(t, tr)
	if _, c := segments(t, tr.str("access_token")); expOf(c) > soon {
		t.Errorf("exchanged exp %v after the actor's %d", c["exp"], soon)
	}
}

// §2 and §4: our own tokens get no expiry leeway: an access token or ID
// token that expired a few seconds ago neither exchanges, nor introspects
// as active, nor opens userinfo.
func TestOwnExpiredTokensGetNoLeeway(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	past := time.Now().Add(-5 * time.Second).Unix()
	at := txAccessToken(t, e, "alice", "openid read", func(c *tokens.AccessClaims) { c.IssuedAt -= 60; c.ExpiresAt = past })
	wantErr(t, txPost(e, "subject_token", at, "subject_token_type", TokenTypeAccessToken), 400, CodeInvalidRequest)
	opInactive(t, opIntrospect(e, "c-web", "token", at))
	if rec, _ := userinfo(e, "GET", UserinfoPath, "Bearer "+at); rec.Code != 401 {
		t.Errorf("userinfo answered %d for an expired token", rec.Code)
	}
	u, _ := e.users.Lookup(t.Context(), "alice")
	idc := newIDClaims(testIssuer, u, "c-tx", "", []string{"openid"}, time.Now(), time.Now().Add(-time.Minute), 55*time.Second)
	idt, _ := e.keyRing().Current.MintIDToken(idc)
	wantErr(t, txPost(e, "subject_token", idt, "subject_token_type", TokenTypeIDToken), 400, CodeInvalidRequest)
}

// §2: users that no longer exist get nothing.
func TestExchangeRemovedUser(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "dora", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	at := txAccessToken(t, e, "dora", "read", nil)
	wantOK(t, txPost(e, "subject_token", at, "subject_token_type", TokenTypeAccessToken))
	if _, err := e.users.Remove(ctx, "dora"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, txPost(e, "subject_token", at, "subject_token_type", TokenTypeAccessToken), 400, CodeInvalidRequest)
	wantErr(t, txPost(e, "subject_token", txAccessToken(t, e, "ghost", "read", nil), "subject_token_type", TokenTypeAccessToken), 400, CodeInvalidRequest)
}

// §2: an ID token exchanges only for the client it was issued to, and
// not after its user was revoked.
func TestExchangeIDTokenRules(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	u, _ := e.users.Lookup(t.Context(), "alice")
	mint := func(aud string) string {
		idc := newIDClaims(testIssuer, u, aud, "", []string{"openid"}, time.Now(), time.Now().Add(-2*time.Second), time.Minute)
		tok, err := e.keyRing().Current.MintIDToken(idc)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	wantErr(t, txPost(e, "subject_token", mint("c-web"), "subject_token_type", TokenTypeIDToken), 400, CodeInvalidRequest)
	own := mint("c-tx")
	wantOK(t, txPost(e, "subject_token", own, "subject_token_type", TokenTypeIDToken))
	if _, err := e.RevokeSubject(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, txPost(e, "subject_token", own, "subject_token_type", TokenTypeIDToken), 400, CodeInvalidRequest)
}

// §2: a token exchanged from a code grant's ID token carries the grant id
// and dies with the grant.
func TestExchangeIDTokenCarriesGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	e.clients["c-tx"].RedirectURIs = []string{"https://tx.test/cb"}
	e.clients["c-tx"].GrantTypes = append(e.clients["c-tx"].GrantTypes, GrantAuthorizationCode, GrantRefreshToken)
	e.clients["c-tx"].Trusted = true
	code, verifier := newBrowser(t, e).getCode("c-tx", "scope", "openid read", "redirect_uri", "https://tx.test/cb")
	g := postTokenRaw(e, url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"https://tx.test/cb"}, "client_id": {"c-tx"}, "client_secret": {postSecret}}, "")
	wantOK(t, g)
	if g.str("id_token") == "" {
		t.Fatal("no ID token")
	}
	tr := txPost(e, "subject_token", g.str("id_token"), "subject_token_type", TokenTypeIDToken)
	wantOK(t, tr)
	x := tr.str("access_token")
	if tr := opPost(e, e.serveRevoke, RevokePath, "", url.Values{"client_id": {"c-tx"}, "client_secret": {postSecret}, "token": {g.str("refresh_token")}}, ""); tr.status != 200 {
		t.Fatalf("revoke: %d %s", tr.status, tr.raw)
	}
	if verifies(e, x) {
		t.Error("a token exchanged from the ID token outlived its grant")
	}
	wantErr(t, txPost(e, "subject_token", g.str("id_token"), "subject_token_type", TokenTypeIDToken), 400, CodeInvalidRequest)
}

// §2: a trusted issuer's JWT as subject_token obeys the jwt-bearer rules:
// allowed_clients, single-use jti, the exp horizon.
func TestExchangeTrustedJWTFollowsJWTBearerRules(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	e.clients["c-tx2"] = &Client{
		ClientSpec: ClientSpec{
			ID:         "c-tx2",
			AuthMethod: AuthSecretPost,
			GrantTypes: []string{GrantTokenExchange},
			Scopes:     []string{"read"},
		},
		SecretHash: HashSecret(postSecret),
	}
	ext := txExternal(t, "partner-7", nil)
	other := url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"c-tx2"}, "client_secret": {postSecret},
		"subject_token": {ext}, "subject_token_type": {TokenTypeJWT}}
	wantErr(t, postTokenRaw(e, other, ""), 400, CodeInvalidRequest)
	wantOK(t, txPost(e, "subject_token", ext, "subject_token_type", TokenTypeJWT))
	wantErr(t, txPost(e, "subject_token", ext, "subject_token_type", TokenTypeJWT), 400, CodeInvalidRequest)
	noJTI := txExternal(t, "partner-7", func(m map[string]any) { delete(m, "jti") })
	wantErr(t, txPost(e, "subject_token", noJTI, "subject_token_type", TokenTypeJWT), 400, CodeInvalidRequest)
	far := txExternal(t, "partner-7", func(m map[string]any) { m["exp"] = time.Now().Add(time.Hour).Unix() })
	wantErr(t, txPost(e, "subject_token", far, "subject_token_type", TokenTypeJWT), 400, CodeInvalidRequest)
	// The same jti cannot be spent once in each path.
	shared := txExternal(t, "partner-7", nil)
	checkToken(t, jbPost(e, "c-tx", shared))
	wantErr(t, txPost(e, "subject_token", shared, "subject_token_type", TokenTypeJWT), 400, CodeInvalidRequest)
}

// §4: audience and resource may repeat in token exchange (RFC 8693
// §2.1); any target the policy does not allow is invalid_target; other
// grants still refuse repeats.
func TestExchangeRepeatedTargets(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	e.clients["c-tx"].Exchange.Audiences = []string{"urn:svc:b", "urn:svc:c"}
	at := txAccessToken(t, e, "alice", "read", nil)
	form := func(extra url.Values) url.Values {
		v := url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"c-tx"}, "client_secret": {postSecret},
			"subject_token": {at}, "subject_token_type": {TokenTypeAccessToken}}
		for k, vs := range extra {
			v[k] = vs
		}
		return v
	}
	tr := postTokenRaw(e, form(url.Values{"audience": {"urn:svc:b", "urn:svc:c"}, "resource": {"https://b.test"}}), "")
	wantOK(t, tr)
	_, c := segments(t, tr.str("access_token"))
	aud, _ := c["aud"].([]any)
	if len(aud) != 3 {
		t.Errorf("aud %v", c["aud"])
	}
	// A resource matches with scheme and host case folded; aud keeps the
	// policy's spelling.
	tr = postTokenRaw(e, form(url.Values{"resource": {"HTTPS://B.Test"}}), "")
	wantOK(t, tr)
	if _, c := segments(t, tr.str("access_token")); c["aud"] != "https://b.test" {
		t.Errorf("aud %v, want the registered https://b.test", c["aud"])
	}
	wantErr(t, postTokenRaw(e, form(url.Values{"audience": {"urn:svc:b", "urn:nope"}}), ""), 400, CodeInvalidTarget)
	wantErr(t, postTokenRaw(e, form(url.Values{"resource": {"https://b.test", "https://a.test"}}), ""), 400, CodeInvalidTarget)
	wantErr(t, postTokenRaw(e, form(url.Values{"audience": {"urn:svc:b", ""}}), ""), 400, CodeInvalidRequest)
	wantErr(t, postTokenRaw(e, form(url.Values{"scope": {"read", "read"}}), ""), 400, CodeInvalidRequest)
	cc := url.Values{"grant_type": {GrantClientCredentials}, "resource": {testRS, testRS}}
	wantErr(t, postToken(e, "c-basic", cc), 400, CodeInvalidRequest)
}

// expOf is a decoded token's exp.
func expOf(c map[string]any) int64 {
	switch v := c["exp"].(type) {
	case json.Number:
		n, _ := v.Int64()
		return n
	case float64:
		return int64(v)
	}
	return 0
}
