package grants

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/dpoptest"
)

// proofKey is a DPoP client's key.
type proofKey struct {
	*dpoptest.Key
	jkt string
}

func newProofKey(t testing.TB) *proofKey {
	t.Helper()
	k, err := dpoptest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &proofKey{Key: k, jkt: k.JKT}
}

// proof is an ES256 proof for POST to the token endpoint; mod changes
// the claims.
func (k *proofKey) proof(t testing.TB, mod func(map[string]any)) string {
	t.Helper()
	c := map[string]any{"jti": tokens.RandomID(12), "htm": "POST", "htu": testIssuer + TokenPath, "iat": time.Now().Unix()}
	if mod != nil {
		mod(c)
	}
	s, err := k.Proof(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenRequestAs is a token request authenticated as clientID by its
// method (a client_id alone for the others), with DPoP headers (none
// when proofs is empty).
func tokenRequestAs(e *Engine, clientID string, form url.Values, proofs ...string) *http.Request {
	form = cloneValues(form)
	var authz string
	switch e.clients[clientID].AuthMethod {
	case AuthSecretBasic:
		authz = siBasicAuth(clientID, testSecrets[clientID])
	case AuthSecretPost:
		form.Set("client_id", clientID)
		form.Set("client_secret", testSecrets[clientID])
	default:
		form.Set("client_id", clientID)
	}
	r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = loopbackAddr
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	return r
}

// postTokenDPoP is postToken with DPoP headers (none when proofs is
// empty).
func postTokenDPoP(e *Engine, clientID string, form url.Values, proofs ...string) tokenResult {
	r := tokenRequestAs(e, clientID, form, proofs...)
	// A spoofed Host changes nothing: htu comes from the issuer.
	r.Host = "evil.test"
	r.Header.Set("X-Forwarded-Host", "evil.test")
	return serveResult(e, r)
}

// wantDPoP checks a DPoP-bound answer: token_type DPoP and an access
// token whose cnf.jkt is the key's thumbprint, shown by introspection.
func wantDPoP(t *testing.T, e *Engine, tr tokenResult, k *proofKey, introspector string) {
	t.Helper()
	wantOK(t, tr)
	if tr.str("token_type") != "DPoP" {
		t.Fatalf("token_type = %q, want DPoP", tr.str("token_type"))
	}
	at := tr.str("access_token")
	if !strings.HasPrefix(at, tokens.OpaquePrefix) {
		_, c := segments(t, at)
		cnf, _ := c["cnf"].(map[string]any)
		if cnf["jkt"] != k.jkt {
			t.Fatalf("cnf = %v, want jkt %s", c["cnf"], k.jkt)
		}
	}
	if introspector == "" {
		return
	}
	in := opPost(e, e.serveIntrospect, IntrospectPath, introspector, opForm("token", at), "")
	cnf, _ := in.body["cnf"].(map[string]any)
	if in.body["active"] != true || in.body["token_type"] != "DPoP" || cnf["jkt"] != k.jkt {
		t.Fatalf("INT-07: introspection of a DPoP token: %s", in.raw)
	}
}

// DPOP-15, INT-07: client_credentials with a proof.
func TestDPoPClientCredentials(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a := newProofKey(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	p := a.proof(t, nil)
	wantDPoP(t, e, postTokenDPoP(e, "c-basic", cc, p), a, "c-basic")
	// DPOP-12: the same proof again.
	tr := postTokenDPoP(e, "c-basic", cc, p)
	wantErr(t, tr, 400, CodeInvalidDPoPProof)
	// Without a proof the token is a bearer token, with no cnf.
	tr = postTokenDPoP(e, "c-basic", cc)
	wantOK(t, tr)
	if _, c := segments(t, tr.str("access_token")); tr.str("token_type") != "Bearer" || c["cnf"] != nil {
		t.Fatalf("bearer answer: %s", tr.raw)
	}
	// An opaque token keeps its cnf in storage.
	e2 := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-basic" {
				cl.AccessTokenFormat = FormatOpaque
			}
		}
	}))
	wantDPoP(t, e2, postTokenDPoP(e2, "c-basic", cc, a.proof(t, nil)), a, "c-basic")
}

// DPOP-01..11 at the token endpoint: each bad proof is a 400
// invalid_dpop_proof with no token (the verifier's table test covers
// every case; these show the endpoint answers them right).
func TestDPoPTokenEndpointRefusals(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a := newProofKey(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	for name, proofs := range map[string][]string{
		"DPOP-01 two headers":         {a.proof(t, nil), a.proof(t, nil)},
		"DPOP-02 not a JWS":           {"a.b"},
		"DPOP-08 htm GET":             {a.proof(t, set("htm", "GET"))},
		"DPOP-09 htu of the Host":     {a.proof(t, set("htu", "https://evil.test/oauth/token"))},
		"DPOP-09 htu of another path": {a.proof(t, set("htu", testIssuer+RevokePath))},
		"DPOP-11 iat an hour old":     {a.proof(t, set("iat", time.Now().Unix()-3600))},
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, postTokenDPoP(e, "c-basic", cc, proofs...), 400, CodeInvalidDPoPProof)
		})
	}
	// DPOP-09: the accepted normalisation.
	wantDPoP(t, e, postTokenDPoP(e, "c-basic", cc, a.proof(t, set("htu", "https://AS.TEST:443/oauth/token?x=1"))), a, "")
}

// DPOP-10: nonces on: a proof without one gets use_dpop_nonce and a
// DPoP-Nonce, and the retry with it succeeds.
func TestDPoPNonce(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.DPoP.Nonce = true }))
	a := newProofKey(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	tr := postTokenDPoP(e, "c-basic", cc, a.proof(t, nil))
	wantErr(t, tr, 400, CodeUseDPoPNonce)
	nonce := tr.hdr.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce with use_dpop_nonce")
	}
	tr = postTokenDPoP(e, "c-basic", cc, a.proof(t, func(m map[string]any) { m["nonce"] = nonce }))
	wantDPoP(t, e, tr, a, "")
	if tr.hdr.Get("DPoP-Nonce") == "" {
		t.Fatal("no fresh DPoP-Nonce on success")
	}
	wantErr(t, postTokenDPoP(e, "c-basic", cc, a.proof(t, func(m map[string]any) { m["nonce"] = "forged" })), 400, CodeUseDPoPNonce)
	// Without nonces, a request with no proof gets no nonce header.
	if tr := postTokenDPoP(e, "c-basic", cc); tr.hdr.Get("DPoP-Nonce") != "" {
		t.Fatal("DPoP-Nonce without a proof")
	}
}

// RFC 9449 §5.2: a client registered with dpop_bound_access_tokens must
// send a proof.
func TestDPoPBoundClient(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-basic" {
				cl.DPoPBoundAccessTokens = true
			}
		}
	}))
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	wantErr(t, postTokenDPoP(e, "c-basic", cc), 400, CodeInvalidDPoPProof)
	a := newProofKey(t)
	wantDPoP(t, e, postTokenDPoP(e, "c-basic", cc, a.proof(t, nil)), a, "c-basic")
}

// DPOP-16: a public client's refresh tokens are bound to its DPoP key; a
// confidential client's are bound to its authentication, so its refresh
// may bind the new access token to another key.
func TestDPoPRefreshBinding(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a, b := newProofKey(t), newProofKey(t)
	br := newBrowser(t, e)
	code, verifier := br.getCode("c-pub", "scope", "openid read")
	red := url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-pub"]}, "code_verifier": {verifier}}
	tr := postTokenDPoP(e, "c-pub", red, a.proof(t, nil))
	wantDPoP(t, e, tr, a, "")
	rt := tr.str("refresh_token")
	ref := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {rt}}
	wantErr(t, postTokenDPoP(e, "c-pub", ref, b.proof(t, nil)), 400, CodeInvalidGrant)
	wantErr(t, postTokenDPoP(e, "c-pub", ref), 400, CodeInvalidGrant)
	// The refusals revoked nothing: the key's holder refreshes.
	tr = postTokenDPoP(e, "c-pub", ref, a.proof(t, nil))
	wantDPoP(t, e, tr, a, "")
	// And the rotated token is bound too (the slow path of a refresh).
	ref.Set("refresh_token", tr.str("refresh_token"))
	wantErr(t, postTokenDPoP(e, "c-pub", ref, b.proof(t, nil)), 400, CodeInvalidGrant)

	// A public client's grant made without DPoP stays unbound.
	code, verifier = newBrowser(t, e).getCode("c-pub", "scope", "openid read")
	red.Set("code", code)
	red.Set("code_verifier", verifier)
	tr = postTokenDPoP(e, "c-pub", red)
	wantOK(t, tr)
	wantDPoP(t, e, postTokenDPoP(e, "c-pub", url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.str("refresh_token")}}, b.proof(t, nil)), b, "")

	// Confidential: the refresh token is not bound to the key.
	code, verifier = newBrowser(t, e).getCode("c-web", "scope", "openid read")
	tr = postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, a.proof(t, nil))
	wantDPoP(t, e, tr, a, "c-web")
	wantDPoP(t, e, postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.str("refresh_token")}}, b.proof(t, nil)), b, "c-web")
}

// DPOP-17: dpop_jkt binds the code to a key.
func TestDPoPCodeBinding(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a, b := newProofKey(t), newProofKey(t)
	redeemWith := func(proofs ...string) tokenResult {
		code, verifier := newBrowser(t, e).getCode("c-pub", "scope", "openid read", "dpop_jkt", a.jkt)
		red := url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-pub"]}, "code_verifier": {verifier}}
		return postTokenDPoP(e, "c-pub", red, proofs...)
	}
	wantErr(t, redeemWith(b.proof(t, nil)), 400, CodeInvalidGrant)
	wantErr(t, redeemWith(), 400, CodeInvalidGrant)
	wantDPoP(t, e, redeemWith(a.proof(t, nil)), a, "")
	// A proof that fails its own checks is refused before the code is
	// looked at, and the code is still good (docs/dpop.md, Bindings).
	code, verifier := newBrowser(t, e).getCode("c-pub", "scope", "openid read", "dpop_jkt", a.jkt)
	red := url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-pub"]}, "code_verifier": {verifier}}
	wantErr(t, postTokenDPoP(e, "c-pub", red, a.proof(t, func(c map[string]any) { c["htm"] = "GET" })), 400, CodeInvalidDPoPProof)
	wantErr(t, postTokenDPoP(e, "c-pub", red, "not.a.jws"), 400, CodeInvalidDPoPProof)
	wantDPoP(t, e, postTokenDPoP(e, "c-pub", red, a.proof(t, nil)), a, "")
	// A malformed dpop_jkt is refused at the authorization endpoint.
	_, challenge := newPKCE()
	q := authzQuery("c-pub", challenge, "dpop_jkt", "not-a-thumbprint")
	w := newBrowser(t, e).get(e.basePath + AuthorizePath + "?" + q.Encode())
	loc, _ := url.Parse(w.Header().Get("Location"))
	if loc == nil || loc.Query().Get("error") != CodeInvalidRequest || !strings.Contains(loc.Query().Get("error_description"), "dpop_jkt") {
		t.Fatalf("malformed dpop_jkt: %d %s", w.Code, w.Header().Get("Location"))
	}
}

// A spent code stays spent: a redemption refused for the key burns it.
func TestDPoPCodeBindingBurnsCode(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a, b := newProofKey(t), newProofKey(t)
	code, verifier := newBrowser(t, e).getCode("c-pub", "scope", "openid read", "dpop_jkt", a.jkt)
	red := url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-pub"]}, "code_verifier": {verifier}}
	wantErr(t, postTokenDPoP(e, "c-pub", red, b.proof(t, nil)), 400, CodeInvalidGrant)
	wantErr(t, postTokenDPoP(e, "c-pub", red, a.proof(t, nil)), 400, CodeInvalidGrant)
}

func TestDPoPMetadata(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.DPoP.Algs = []string{"ES256", "EdDSA"} }))
	m, err := e.metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.DPoPSigningAlgValuesSupported, " "); got != "ES256 EdDSA" {
		t.Fatalf("dpop_signing_alg_values_supported = %q", got)
	}
	if _, err := startEngine(t, withConfig(func(c *Config) { c.DPoP.Algs = []string{"HS256"} })); err == nil {
		t.Fatal("HS256 accepted for DPoP")
	}
}

// dpop_bound_access_tokens on a client registered at run time (the admin
// API's path) is kept and enforced.
func TestDPoPBoundRuntimeClient(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	secret, err := e.AddClient(t.Context(), &Client{ClientSpec: ClientSpec{ID: "rt-dpop", AuthMethod: AuthSecretBasic,
		GrantTypes: []string{GrantClientCredentials}, DPoPBoundAccessTokens: true}})
	if err != nil {
		t.Fatal(err)
	}
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	wantErr(t, postTokenRaw(e, cc, siBasicAuth("rt-dpop", secret)), 400, CodeInvalidDPoPProof)
}

// DPOP-18 at userinfo: a DPoP-bound token is not a bearer token there
// either; the same grant's bearer token is.
func TestDPoPUserinfoNoDowngrade(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a := newProofKey(t)
	code, verifier := newBrowser(t, e).getCode("c-web", "scope", "openid read")
	tr := postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, a.proof(t, nil))
	wantDPoP(t, e, tr, a, "")
	rec, _ := userinfo(e, http.MethodGet, UserinfoPath, "Bearer "+tr.str("access_token"))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("userinfo with a DPoP-bound token as Bearer: %d %s", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	bearer := postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.str("refresh_token")}})
	wantOK(t, bearer)
	if rec, _ := userinfo(e, http.MethodGet, UserinfoPath, "Bearer "+bearer.str("access_token")); rec.Code != http.StatusOK {
		t.Fatalf("userinfo with a bearer token: %d", rec.Code)
	}
}

// RFC 9449 §7 at userinfo: a DPoP-bound token works with the DPoP scheme
// and a proof for the userinfo URL of the configured issuer (ath of the
// token), on every request; not without a proof, not with a replayed or
// another key's proof, and an unbound token is refused with the DPoP
// scheme.
func TestDPoPUserinfo(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a, b := newProofKey(t), newProofKey(t)
	code, verifier := newBrowser(t, e).getCode("c-web", "scope", "openid read")
	tr := postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, a.proof(t, nil))
	wantDPoP(t, e, tr, a, "")
	at := tr.str("access_token")
	sum := sha256.Sum256([]byte(at))
	ath := base64.RawURLEncoding.EncodeToString(sum[:])
	forUserinfo := func(k *proofKey, mod func(map[string]any)) string {
		return k.proof(t, func(c map[string]any) {
			c["htm"], c["htu"], c["ath"] = "GET", testIssuer+UserinfoPath, ath
			if mod != nil {
				mod(c)
			}
		})
	}
	call := func(authz string, proofs ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, UserinfoPath, nil)
		r.RemoteAddr = loopbackAddr
		r.Header.Set("Authorization", authz)
		for _, p := range proofs {
			r.Header.Add("DPoP", p)
		}
		rec := httptest.NewRecorder()
		e.serveUserinfo(rec, r)
		return rec
	}
	good := forUserinfo(a, nil)
	if rec := call("DPoP "+at, good); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"sub"`) {
		t.Fatalf("userinfo with DPoP and a proof: %d %s", rec.Code, rec.Body)
	}
	for name, tc := range map[string]struct {
		authz  string
		proofs []string
		code   string
	}{
		"replayed proof":               {"DPoP " + at, []string{good}, "invalid_dpop_proof"},
		"no proof":                     {"DPoP " + at, nil, "invalid_dpop_proof"},
		"another key":                  {"DPoP " + at, []string{forUserinfo(b, nil)}, "invalid_dpop_proof"},
		"proof for the token endpoint": {"DPoP " + at, []string{forUserinfo(a, func(c map[string]any) { c["htu"] = testIssuer + TokenPath })}, "invalid_dpop_proof"},
		"bearer downgrade":             {"Bearer " + at, nil, "invalid_token"},
	} {
		rec := call(tc.authz, tc.proofs...)
		ch := rec.Header().Get("WWW-Authenticate")
		if rec.Code != http.StatusUnauthorized || !strings.Contains(ch, `DPoP realm="`+testIssuer+`", algs="`) || !strings.Contains(ch, `error="`+tc.code+`"`) {
			t.Errorf("%s: %d %q, want 401 with a DPoP challenge and %s", name, rec.Code, ch, tc.code)
		}
	}
	// An unbound token with the DPoP scheme.
	bearer := postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.str("refresh_token")}})
	wantOK(t, bearer)
	if rec := call("DPoP "+bearer.str("access_token"), forUserinfo(a, nil)); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("an unbound token as DPoP: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
}

// RFC 9449 §7.1 at userinfo: every answer to a token uses the scheme it
// came with (insufficient_scope and a malformed header too), and a
// request with no token is offered both schemes.
func TestDPoPUserinfoChallenges(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a := newProofKey(t)
	code, verifier := newBrowser(t, e).getCode("c-web", "scope", "read")
	tr := postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, a.proof(t, nil))
	wantDPoP(t, e, tr, a, "")
	at := tr.str("access_token")
	sum := sha256.Sum256([]byte(at))
	proof := a.proof(t, func(c map[string]any) {
		c["htm"], c["htu"], c["ath"] = "GET", testIssuer+UserinfoPath, base64.RawURLEncoding.EncodeToString(sum[:])
	})
	call := func(authz string, proofs ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, UserinfoPath, nil)
		r.RemoteAddr = loopbackAddr
		if authz != "-" {
			r.Header.Set("Authorization", authz)
		}
		for _, p := range proofs {
			r.Header.Add("DPoP", p)
		}
		rec := httptest.NewRecorder()
		e.serveUserinfo(rec, r)
		return rec
	}
	dpopRealm := `DPoP realm="` + testIssuer + `", algs="`
	for name, tc := range map[string]struct {
		authz  string
		proofs []string
		status int
		want   []string
		not    []string
	}{
		"no openid scope": {"DPoP " + at, []string{proof}, 403,
			[]string{dpopRealm, `error="insufficient_scope"`, `scope="openid"`}, []string{"Bearer"}},
		"empty DPoP token": {"DPoP ", nil, 400,
			[]string{dpopRealm, `error="invalid_request"`, "as DPoP, with a DPoP proof"}, []string{"Bearer"}},
		"unknown DPoP token": {"DPoP not-a-token", nil, 401,
			[]string{dpopRealm, `error="invalid_token"`}, []string{"Bearer"}},
		"no token": {"-", nil, 401,
			[]string{`Bearer realm="` + testIssuer + `"`, dpopRealm}, []string{"error="}},
		"empty Bearer token": {"Bearer ", nil, 400,
			[]string{`Bearer realm=`, "as Bearer"}, []string{"DPoP"}},
	} {
		rec := call(tc.authz, tc.proofs...)
		ch := rec.Header().Get("WWW-Authenticate")
		if rec.Code != tc.status {
			t.Errorf("%s: %d %q, want %d", name, rec.Code, ch, tc.status)
		}
		for _, w := range tc.want {
			if !strings.Contains(ch, w) {
				t.Errorf("%s: challenge %q lacks %q", name, ch, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(ch, n) {
				t.Errorf("%s: challenge %q has %q", name, ch, n)
			}
		}
	}
}
