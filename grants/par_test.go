package grants

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// parForm is a valid pushed request of the client with PKCE; kv adds or
// (with an empty value) removes parameters, as authzQuery does.
func parForm(clientID, challenge string, kv ...string) url.Values {
	return authzQuery(clientID, challenge, kv...)
}

// parPost pushes form to the PAR endpoint as the client (authz, when
// set, replaces its credentials), with DPoP proofs when given.
func parPost(e *Engine, clientID string, form url.Values, authz string, proofs ...string) tokenResult {
	return opPost(e, e.servePAR, PARPath, clientID, form, authz, proofs...)
}

func parServe(e *Engine, r *http.Request) tokenResult { return record(e.servePAR, r) }

// wantPushed checks a 201 answer (PAR-02) and returns its request_uri.
func wantPushed(t testing.TB, tr tokenResult, ttl int) string {
	t.Helper()
	if tr.status != http.StatusCreated {
		t.Fatalf("want 201, got %d %s", tr.status, tr.raw)
	}
	uri := tr.str("request_uri")
	if !strings.HasPrefix(uri, RequestURIPrefix) || len(uri) < len(RequestURIPrefix)+40 {
		t.Fatalf("request_uri %q", uri)
	}
	if n, ok := tr.body["expires_in"].(float64); !ok || int(n) != ttl {
		t.Fatalf("expires_in = %v, want %d", tr.body["expires_in"], ttl)
	}
	if tr.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("201 without Cache-Control: no-store")
	}
	return uri
}

// pushedCount is how many pushed requests storage holds.
func pushedCount(t testing.TB, e *Engine) int {
	t.Helper()
	n := 0
	if err := e.store.View(context.Background(), func(tx storage.Tx) error {
		return tx.ForEach(storage.KindPushed, func(string, storage.Record) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// parAuthorize is the browser's authorization request for a request_uri.
func parAuthorize(clientID, uri string, extra ...string) string {
	q := url.Values{"client_id": {clientID}, "request_uri": {uri}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return AuthorizePath + "?" + q.Encode()
}

// wantRequestURIInvalid checks the error page of an unusable request_uri.
func wantRequestURIInvalid(t testing.TB, rec *httptest.ResponseRecorder) {
	t.Helper()
	wantErrorPage(t, rec, http.StatusBadRequest)
	if !strings.Contains(rec.Body.String(), "invalid_request_uri") {
		t.Fatalf("page does not say invalid_request_uri:\n%s", rec.Body.String())
	}
}

// noCodeClient may not use the code flow.
var noCodeClient = &Client{ClientSpec: ClientSpec{ID: "c-cconly", AuthMethod: AuthSecretBasic,
	GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}}, SecretHash: HashSecret("cconly-secret")}

// TestPARRefusals: every refusal of the PAR endpoint (RFC 9126 §2) is
// JSON, never a redirect, and persists nothing (PAR-01, PAR-03, PAR-04).
func TestPARRefusals(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withClients(noCodeClient))
	ch := newChallenge()
	other := newProofKey(t)
	parProof := func(k *proofKey, mod func(map[string]any)) string {
		return k.proof(t, func(c map[string]any) {
			c["htu"] = testIssuer + PARPath
			if mod != nil {
				mod(c)
			}
		})
	}
	cases := []struct {
		name   string
		client string
		form   url.Values
		authz  string
		proofs []string
		status int
		code   string
	}{
		{"PAR-01 no credentials", "", parForm("c-web", ch), "", nil, 401, CodeInvalidClient},
		{"PAR-01 wrong secret", "", parForm("c-web", ch), siBasicAuth("c-web", "nope"), nil, 401, CodeInvalidClient},
		{"PAR-01 unknown client", "", parForm("nobody", ch), siBasicAuth("nobody", "x"), nil, 401, CodeInvalidClient},
		{"PAR-01 client_id of another client", "", parForm("c-basic", ch), siBasicAuth("c-web", webSecret), nil, 400, CodeInvalidRequest},
		{"PAR-01 secret in the body of a Basic client", "", parForm("c-web", ch, "client_secret", webSecret), "", nil, 401, CodeInvalidClient},
		{"PAR-01 public client with a made-up secret", "", parForm("c-pub", ch, "client_secret", "x"), "", nil, 401, CodeInvalidClient},
		{"PAR-03 request_uri pushed", "c-web", parForm("c-web", ch, "request_uri", RequestURIPrefix+"abc"), "", nil, 400, CodeInvalidRequest},
		{"PAR-03 request_uri of another kind pushed", "c-web", parForm("c-web", ch, "request_uri", "https://client.test/req"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 unregistered redirect_uri", "c-web", parForm("c-web", ch, "redirect_uri", "https://evil.test/cb"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 no redirect_uri with openid", "c-web", parForm("c-web", ch, "redirect_uri", "", "scope", "openid"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 no response_type", "c-web", parForm("c-web", ch, "response_type", ""), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 response_type token", "c-web", parForm("c-web", ch, "response_type", "token"), "", nil, 400, "unsupported_response_type"},
		{"PAR-04 no PKCE", "c-web", parForm("c-web", "", "code_challenge_method", ""), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 plain PKCE", "c-web", parForm("c-web", ch, "code_challenge_method", "plain"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 scope not allowed", "c-web", parForm("c-web", ch, "scope", "admin"), "", nil, 400, CodeInvalidScope},
		{"PAR-04 resource not allowed", "c-web", parForm("c-web", ch, "resource", "https://other.test"), "", nil, 400, CodeInvalidTarget},
		{"PAR-04 request object", "c-web", parForm("c-web", ch, "request", "e30.e30."), "", nil, 400, "request_not_supported"},
		{"PAR-04 unknown prompt", "c-web", parForm("c-web", ch, "prompt", "bogus"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 state too long", "c-web", parForm("c-web", ch, "state", strings.Repeat("s", maxParamLen+1)), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 negative max_age", "c-web", parForm("c-web", ch, "max_age", "-1"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 response_mode fragment", "c-web", parForm("c-web", ch, "response_mode", "fragment"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 malformed dpop_jkt", "c-web", parForm("c-web", ch, "dpop_jkt", "x"), "", nil, 400, CodeInvalidRequest},
		{"PAR-04 client without the code flow", "", parForm("c-cconly", ch, "redirect_uri", ""), siBasicAuth("c-cconly", "cconly-secret"), nil, 400, CodeUnauthorizedClient},
		{"PAR-04 repeated state", "c-web", func() url.Values { f := parForm("c-web", ch); f["state"] = []string{"a", "b"}; return f }(), "", nil, 400, CodeInvalidRequest},
		{"DPoP proof for the token endpoint", "c-web", parForm("c-web", ch), "", []string{other.proof(t, nil)}, 400, CodeInvalidDPoPProof},
		{"DPoP proof with GET", "c-web", parForm("c-web", ch), "", []string{parProof(other, func(c map[string]any) { c["htm"] = "GET" })}, 400, CodeInvalidDPoPProof},
		{"DPoP two proofs", "c-web", parForm("c-web", ch), "", []string{parProof(other, nil), parProof(other, nil)}, 400, CodeInvalidDPoPProof},
		{"DPoP dpop_jkt of another key", "c-web", parForm("c-web", ch, "dpop_jkt", newProofKey(t).jkt), "", []string{parProof(other, nil)}, 400, CodeInvalidDPoPProof},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			tr := parPost(e, tt.client, tt.form, tt.authz, tt.proofs...)
			wantErr(t, tr, tt.status, tt.code)
			if !descRE.MatchString(tr.str("error_description")) {
				t.Fatalf("error_description %q is outside the RFC 6749 §5.2 character set", tr.str("error_description"))
			}
			if tr.hdr.Get("Location") != "" || tr.hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("refusal is not JSON: %v", tr.hdr)
			}
			if tt.authz != "" && tt.status == http.StatusUnauthorized && tr.hdr.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 after Basic without WWW-Authenticate")
			}
		})
	}
	// PAR-01: POST form only.
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		r := httptest.NewRequest(m, PARPath, nil)
		r.RemoteAddr = loopbackAddr
		tr := parServe(e, r)
		wantErr(t, tr, http.StatusMethodNotAllowed, CodeInvalidRequest)
		if tr.hdr.Get("Allow") != http.MethodPost {
			t.Fatalf("%s: Allow = %q", m, tr.hdr.Get("Allow"))
		}
	}
	r := httptest.NewRequest(http.MethodPost, PARPath+"?"+parForm("c-pub", ch).Encode(), nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = loopbackAddr
	wantErr(t, parServe(e, r), 400, CodeInvalidRequest)
	r = httptest.NewRequest(http.MethodPost, PARPath, strings.NewReader(parForm("c-pub", ch).Encode()))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = loopbackAddr
	wantErr(t, parServe(e, r), 400, CodeInvalidRequest)
	// RFC 9126 §2.3: 413 for a body over the cap.
	big := parForm("c-pub", ch, "login_hint", strings.Repeat("a", MaxBodyBytes))
	r = httptest.NewRequest(http.MethodPost, PARPath, strings.NewReader(big.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = loopbackAddr
	wantErr(t, parServe(e, r), http.StatusRequestEntityTooLarge, CodeInvalidRequest)
	// Plain HTTP from elsewhere is refused as at the token endpoint.
	r = httptest.NewRequest(http.MethodPost, PARPath, strings.NewReader(parForm("c-pub", ch).Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "203.0.113.9:4000"
	wantErr(t, parServe(e, r), 400, CodeInvalidRequest)
	if n := pushedCount(t, e); n != 0 {
		t.Fatalf("refused pushes stored %d records", n)
	}
}

// TestPARClientAuthentication: every client authentication method of the
// token endpoint works at the PAR endpoint (CA-16), public clients
// included (PAR-02).
func TestPARClientAuthentication(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	code := []string{GrantAuthorizationCode}
	e := newEngine(t, f.clients(t), withAssertionClients(), withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			switch cl.ID {
			case "c-pkj", "c-jwt", "c-mtls", "c-self":
				cl.GrantTypes = append(code, cl.GrantTypes...)
				cl.RedirectURIs = []string{"https://" + cl.ID + ".test/cb"}
				cl.Scopes = []string{"read"}
			}
		}
	}))
	ch := newChallenge()
	form := func(id string, kv ...string) url.Values {
		return parForm(id, ch, append([]string{"redirect_uri", "https://" + id + ".test/cb", "scope", "read"}, kv...)...)
	}
	for _, id := range []string{"c-web", "c-trusted", "c-pub", "c-basic"} {
		wantPushed(t, parPost(e, id, parForm(id, ch), ""), 60)
	}
	assertion := func(tok string) []string {
		return []string{"client_assertion_type", ClientAssertionType, "client_assertion", tok}
	}
	wantPushed(t, parPost(e, "", form("c-pkj", assertion(caPKJ(t, nil))...), ""), 60)
	wantPushed(t, parPost(e, "", form("c-jwt", assertion(caHS(t, "HS256", nil))...), ""), 60)
	// A wrong assertion is a failed authentication (CA-06 audience).
	wantErr(t, parPost(e, "", form("c-pkj", assertion(caPKJ(t, func(c map[string]any) { c["aud"] = "https://evil.test" }))...), ""), 401, CodeInvalidClient)
	mtls := func(id string, cert *certtest.Cert) tokenResult {
		r := certRequest(form(id, "client_id", id).Encode(), cert)
		r.URL.Path = PARPath
		return parServe(e, r)
	}
	wantPushed(t, mtls("c-mtls", f.mtls), 60)
	wantPushed(t, mtls("c-self", f.self), 60)
	wantErr(t, mtls("c-mtls", f.wrongSAN), 401, CodeInvalidClient)
	wantErr(t, mtls("c-mtls", nil), 401, CodeInvalidClient)
}

// TestPARFlow: push, authorize with client_id and request_uri, sign in,
// redeem (PAR-02, PAR-05): the pushed parameters are the request, others
// beside client_id and request_uri are ignored, the request_uri works
// once and only for its client.
func TestPARFlow(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	verifier, ch := newPKCE()
	uri := wantPushed(t, parPost(e, "c-web", parForm("c-web", ch, "scope", "openid read", "state", "pushed-state", "nonce", "n-1"), ""), 60)
	if n := pushedCount(t, e); n != 1 {
		t.Fatalf("stored %d pushed requests, want 1", n)
	}
	b := newBrowser(t, e)
	// PAR-05: bound to the client that pushed it; the wrong client's
	// attempt leaves it usable.
	wantRequestURIInvalid(t, b.get(parAuthorize("c-basic", uri)))
	wantRequestURIInvalid(t, b.get(parAuthorize("", uri)))
	wantRequestURIInvalid(t, b.get(parAuthorize("c-web", uri+"x")))
	// Parameters beside the pushed ones are ignored, however they try
	// to change the request.
	rec := b.get(parAuthorize("c-web", uri, "redirect_uri", "https://evil.test/cb", "scope", "openid write", "state", "evil", "prompt", "none"))
	if !isLoginPage(rec) {
		t.Fatalf("want the login page, got %d:\n%s", rec.Code, rec.Body.String())
	}
	rec = b.login(rec, "alice", "alice-pw")
	if isConsentPage(rec) {
		if body := rec.Body.String(); strings.Contains(body, "write") {
			t.Fatalf("consent page shows a scope that was not pushed")
		}
		rec = b.consent(rec, "allow")
	}
	loc := mustLocation(t, rec)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect["c-web"] || loc.Query().Get("state") != "pushed-state" {
		t.Fatalf("redirect %s", loc)
	}
	tr := postToken(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {loc.Query().Get("code")},
		"redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}})
	wantOK(t, tr)
	if tr.str("scope") != "openid read" || tr.str("id_token") == "" {
		t.Fatalf("token: %s", tr.raw)
	}
	_, idt := segments(t, tr.str("id_token"))
	if idt["nonce"] != "n-1" {
		t.Fatalf("id_token nonce = %v, want the pushed n-1", idt["nonce"])
	}
	// PAR-05: single use.
	wantRequestURIInvalid(t, newBrowser(t, e).get(parAuthorize("c-web", uri)))
	if n := pushedCount(t, e); n != 0 {
		t.Fatalf("a used request_uri is still stored (%d)", n)
	}
	// PAR-05: expired. Storage refuses an expired record; the record is
	// written as the endpoint would, already past its expiry.
	uri = RequestURIPrefix + newSecretToken()
	if err := e.store.Update(context.Background(), func(tx storage.Tx) error {
		return putJSON(tx, storage.KindPushed, hashToken(uri), &pushedRecord{ClientID: "c-web",
			Params: map[string]string(nil)}, time.Now().Add(-time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	wantRequestURIInvalid(t, newBrowser(t, e).get(parAuthorize("c-web", uri)))
	// A request_uri that is not ours is still request_uri_not_supported.
	loc = mustLocation(t, newBrowser(t, e).get(AuthorizePath+"?"+authzQuery("c-web", newChallenge(), "request_uri", "https://client.test/req").Encode()))
	if loc.Query().Get("error") != "request_uri_not_supported" {
		t.Fatalf("foreign request_uri: %s", loc)
	}
}

// TestPARExpiry: the TTL is configurable and enforced.
func TestPARExpiry(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.PAR.TTL = time.Second }))
	uri := wantPushed(t, parPost(e, "c-pub", parForm("c-pub", newChallenge()), ""), 1)
	time.Sleep(1100 * time.Millisecond)
	wantRequestURIInvalid(t, newBrowser(t, e).get(parAuthorize("c-pub", uri)))
	for _, ttl := range []time.Duration{-time.Second, time.Millisecond, 11 * time.Minute} {
		if _, err := startEngine(t, withConfig(func(c *Config) { c.PAR.TTL = ttl })); err == nil || !strings.Contains(err.Error(), "pushed_request_ttl") {
			t.Fatalf("ttl %s: %v", ttl, err)
		}
	}
}

// TestPARRequired: PAR-06, per client and globally; the pushed request
// itself and the gates' sign-in clients are not refused.
func TestPARRequired(t *testing.T) {
	t.Parallel()
	plain := func(e *Engine, id string) *url.URL {
		return mustLocation(t, newBrowser(t, e).get(AuthorizePath+"?"+authzQuery(id, newChallenge()).Encode()))
	}
	wantRefused := func(loc *url.URL) {
		t.Helper()
		if loc.Query().Get("error") != CodeInvalidRequest || !strings.Contains(loc.Query().Get("error_description"), "pushed") {
			t.Fatalf("plain request not refused: %s", loc)
		}
	}
	perClient := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-web" {
				cl.RequirePushedAuthorizationRequests = true
			}
		}
	}))
	wantRefused(plain(perClient, "c-web"))
	if rec := newBrowser(t, perClient).get(AuthorizePath + "?" + authzQuery("c-basic", newChallenge()).Encode()); !isLoginPage(rec) {
		t.Fatalf("a client without the flag was refused: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	uri := wantPushed(t, parPost(perClient, "c-web", parForm("c-web", newChallenge()), ""), 60)
	if rec := newBrowser(t, perClient).get(parAuthorize("c-web", uri)); !isLoginPage(rec) {
		t.Fatalf("pushed request refused: %d %s", rec.Code, rec.Body.String())
	}
	global := newEngine(t, withConfig(func(c *Config) { c.PAR.Require = true }))
	wantRefused(plain(global, "c-basic"))
	wantRefused(plain(global, "c-pub"))
	if !global.mustPush(&Client{ClientSpec: ClientSpec{ID: "c-web"}}) || global.mustPush(&Client{ClientSpec: ClientSpec{ID: loginClientPrefix + strings.Repeat("a", 22)}}) {
		t.Fatalf("mustPush: the global flag must apply to every client but the gates' sign-in clients")
	}
	m, err := global.metadata(context.Background())
	if err != nil || !m.RequirePushedAuthorizationRequests || m.PushedAuthorizationRequestEndpoint != testIssuer+PARPath {
		t.Fatalf("metadata: %+v %v", m, err)
	}
	m, _ = perClient.metadata(context.Background())
	if m.RequirePushedAuthorizationRequests || m.PushedAuthorizationRequestEndpoint != testIssuer+PARPath {
		t.Fatalf("metadata without the global flag: %+v", m)
	}
}

// TestPARDPoP: a DPoP proof at the PAR endpoint binds the code to its
// key as dpop_jkt does (RFC 9449 §10.1), and a pushed dpop_jkt binds it.
func TestPARDPoP(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	a, b := newProofKey(t), newProofKey(t)
	code := func(kv []string, proofs ...string) (string, string) {
		verifier, ch := newPKCE()
		uri := wantPushed(t, parPost(e, "c-pub", parForm("c-pub", ch, append([]string{"scope", "openid read"}, kv...)...), "", proofs...), 60)
		loc := newBrowser(t, e).authorize(url.Values{"client_id": {"c-pub"}, "request_uri": {uri}}, "alice", "alice-pw")
		return loc.Query().Get("code"), verifier
	}
	redeem := func(c, verifier string, proofs ...string) tokenResult {
		return postTokenDPoP(e, "c-pub", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {c},
			"redirect_uri": {testRedirect["c-pub"]}, "code_verifier": {verifier}}, proofs...)
	}
	parProof := func(k *proofKey) string {
		return k.proof(t, func(c map[string]any) { c["htu"] = testIssuer + PARPath })
	}
	c, v := code(nil, parProof(a))
	wantErr(t, redeem(c, v), 400, CodeInvalidGrant)
	c, v = code(nil, parProof(a))
	wantErr(t, redeem(c, v, b.proof(t, nil)), 400, CodeInvalidGrant)
	c, v = code(nil, parProof(a))
	wantDPoP(t, e, redeem(c, v, a.proof(t, nil)), a, "")
	// Both: the proof and dpop_jkt name one key.
	c, v = code([]string{"dpop_jkt", a.jkt}, parProof(a))
	wantDPoP(t, e, redeem(c, v, a.proof(t, nil)), a, "")
	// dpop_jkt alone, pushed.
	c, v = code([]string{"dpop_jkt", a.jkt})
	wantErr(t, redeem(c, v, b.proof(t, nil)), 400, CodeInvalidGrant)
	c, v = code([]string{"dpop_jkt", a.jkt})
	wantDPoP(t, e, redeem(c, v, a.proof(t, nil)), a, "")
	// A proof replayed at the PAR endpoint is refused.
	p := parProof(a)
	code(nil, p)
	wantErr(t, parPost(e, "c-pub", parForm("c-pub", newChallenge()), "", p), 400, CodeInvalidDPoPProof)
}

// TestPARRoute: the endpoint is in the route table under the issuer's
// path.
func TestPARRoute(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	if _, ok := e.routeTable[PARPath]; !ok {
		t.Fatalf("no route for %s", PARPath)
	}
}

// TestPARPublicLimit: pushes of public clients are limited per address
// (429 with Retry-After, nothing stored); another address and
// confidential clients go on.
func TestPARPublicLimit(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for i := range publicPushLimit {
		if tr := parPost(e, "c-pub", parForm("c-pub", newChallenge()), ""); tr.status != http.StatusCreated {
			t.Fatalf("push %d: %d %s", i, tr.status, tr.raw)
		}
	}
	stored := pushedCount(t, e)
	tr := parPost(e, "c-pub", parForm("c-pub", newChallenge()), "")
	wantErr(t, tr, http.StatusTooManyRequests, CodeInvalidRequest)
	if tr.hdr.Get("Retry-After") == "" || pushedCount(t, e) != stored {
		t.Fatalf("429 without Retry-After, or it stored a record")
	}
	wantPushed(t, parPost(e, "c-web", parForm("c-web", newChallenge()), ""), 60)
	r := httptest.NewRequest(http.MethodPost, PARPath, strings.NewReader(func() string {
		f := parForm("c-pub", newChallenge())
		f.Set("client_id", "c-pub")
		return f.Encode()
	}()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "127.0.0.2:5000"
	wantPushed(t, parServe(e, r), 60)
}

// TestPARRequiredSparesGates: with the global flag, oauth_protect's own
// sign-in client still signs users in with a plain request (it runs in
// process and has no way to push).
func TestPARRequiredSparesGates(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.PAR.Require = true }))
	cfg, ctx := gateOAuth2(e, addGate(t, e))
	loc, verifier := gateSignIn(t, newBrowser(t, e), cfg)
	if _, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("the gate's sign-in under require_pushed_authorization_requests: %v", err)
	}
}

// TestPARAuthorizeRefusals: the refusals at the authorization endpoint,
// one row each: an unusable request_uri is an error page saying
// invalid_request_uri, never a redirect (PAR-05); a plain request of a
// client that must push goes to its redirect URI as invalid_request
// (PAR-06).
func TestPARAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-web" {
				cl.RequirePushedAuthorizationRequests = true
			}
		}
	}))
	global := newEngine(t, withConfig(func(c *Config) { c.PAR.Require = true }))
	push := func(id string) string {
		return wantPushed(t, parPost(e, id, parForm(id, newChallenge()), ""), 60)
	}
	spent := push("c-web")
	if rec := newBrowser(t, e).get(parAuthorize("c-web", spent)); !isLoginPage(rec) {
		t.Fatalf("first use: %d", rec.Code)
	}
	expired := RequestURIPrefix + newSecretToken()
	if err := e.store.Update(context.Background(), func(tx storage.Tx) error {
		return putJSON(tx, storage.KindPushed, hashToken(expired), &pushedRecord{ClientID: "c-web"}, time.Now().Add(-time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		e      *Engine
		target string
		// redirect is the error sent to the redirect URI; "" means the
		// invalid_request_uri page.
		redirect string
	}{
		{"PAR-05 another client's request_uri", e, parAuthorize("c-basic", push("c-web")), ""},
		{"PAR-05 no client_id", e, parAuthorize("", push("c-web")), ""},
		{"PAR-05 unknown client_id", e, parAuthorize("nobody", push("c-web")), ""},
		{"PAR-05 unknown request_uri", e, parAuthorize("c-web", RequestURIPrefix+newSecretToken()), ""},
		{"PAR-05 spent request_uri", e, parAuthorize("c-web", spent), ""},
		{"PAR-05 expired request_uri", e, parAuthorize("c-web", expired), ""},
		{"PAR-05 request_uri with other parameters", e, parAuthorize("c-web", spent, "redirect_uri", testRedirect["c-web"], "response_type", "code"), ""},
		{"PAR-06 client flag", e, AuthorizePath + "?" + authzQuery("c-web", newChallenge()).Encode(), CodeInvalidRequest},
		{"PAR-06 client flag, POST", e, "POST " + authzQuery("c-web", newChallenge()).Encode(), CodeInvalidRequest},
		{"PAR-06 global flag", global, AuthorizePath + "?" + authzQuery("c-basic", newChallenge()).Encode(), CodeInvalidRequest},
		{"PAR-06 global flag, public client", global, AuthorizePath + "?" + authzQuery("c-pub", newChallenge()).Encode(), CodeInvalidRequest},
		{"PAR-06 foreign request_uri of a client that must push", e, AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "request_uri", "https://client.test/r").Encode(), CodeInvalidRequest},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t, tt.e)
			var rec *httptest.ResponseRecorder
			if form, ok := strings.CutPrefix(tt.target, "POST "); ok {
				v, _ := url.ParseQuery(form)
				rec = b.post(AuthorizePath, v)
			} else {
				rec = b.get(tt.target)
			}
			if tt.redirect == "" {
				wantRequestURIInvalid(t, rec)
				return
			}
			loc := mustLocation(t, rec)
			if loc.Query().Get("error") != tt.redirect || !strings.Contains(loc.Query().Get("error_description"), "pushed") {
				t.Fatalf("redirect %s", loc)
			}
		})
	}
}
