package grants

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// realDummyHashFor makes the production dummy hash for unknown users: at
// cost 14 about a second per use (tens of seconds under -race). Every test
// uses a cheap stand-in, except those that restore it.
var realDummyHashFor = dummyHashFor

const dummyPassword = "caddy-oauthgate: no such user"

func init() {
	dummyHashFor = func(int) []byte { return []byte(testHash(dummyPassword)) }
}

// browser is a user agent with a cookie jar that talks to the engine's
// handlers directly.
type browser struct {
	t      testing.TB
	e      *Engine
	remote string
	// clientIP, when set, is the client address the HTTP server resolved
	// (WithFront), as Caddy passes it.
	clientIP string
	tls      bool
	cookies  map[string]*http.Cookie
}

func newBrowser(t testing.TB, e *Engine) *browser {
	return &browser{t: t, e: e, remote: loopbackAddr, cookies: map[string]*http.Cookie{}}
}

func (b *browser) handler(path string) http.HandlerFunc {
	switch strings.TrimPrefix(path, b.e.basePath) {
	case AuthorizePath:
		return b.e.serveAuthorize
	case AuthorizePath + "/login":
		return b.e.serveLogin
	case AuthorizePath + "/consent":
		return b.e.serveConsent
	case LogoutPath, LogoutPath + "/confirm":
		return b.e.serveLogout
	case UserinfoPath:
		return b.e.serveUserinfo
	case TokenPath:
		return b.e.serveToken
	}
	if h, ok := b.e.routeTable[path]; ok {
		return h
	}
	b.t.Fatalf("no handler for %s", path)
	return nil
}

// do sends r with the jar's cookies and stores the cookies it sets.
func (b *browser) do(r *http.Request) *httptest.ResponseRecorder {
	b.t.Helper()
	r.RemoteAddr = b.remote
	if b.clientIP != "" {
		r = r.WithContext(WithFront(r.Context(), &Front{ClientIP: b.clientIP}))
	}
	if b.tls {
		r.TLS = &tls.ConnectionState{}
	}
	for _, c := range b.cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	rec := httptest.NewRecorder()
	b.handler(r.URL.Path)(rec, r)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return rec
}

func (b *browser) get(target string) *httptest.ResponseRecorder {
	b.t.Helper()
	return b.do(httptest.NewRequest(http.MethodGet, target, nil))
}

func (b *browser) post(path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(r)
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="(state|csrf)" value="([^"]*)">`)

// formFields returns the hidden state and csrf inputs of a page.
func formFields(t testing.TB, body string) (state, csrf string) {
	t.Helper()
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		v := html.UnescapeString(m[2])
		if m[1] == "state" {
			state = v
		} else {
			csrf = v
		}
	}
	if state == "" || csrf == "" {
		t.Fatalf("page has no state/csrf fields:\n%s", body)
	}
	return state, csrf
}

func isLoginPage(rec *httptest.ResponseRecorder) bool {
	return strings.Contains(rec.Body.String(), `id="signin"`)
}

func isConsentPage(rec *httptest.ResponseRecorder) bool {
	return strings.Contains(rec.Body.String(), `id="allow"`)
}

func isLogoutPage(rec *httptest.ResponseRecorder) bool {
	return strings.Contains(rec.Body.String(), `id="signout"`)
}

// login posts the login form found in page.
func (b *browser) login(page *httptest.ResponseRecorder, user, pw string) *httptest.ResponseRecorder {
	b.t.Helper()
	state, csrf := formFields(b.t, page.Body.String())
	return b.post(b.e.basePath+AuthorizePath+"/login",
		url.Values{"state": {state}, "csrf": {csrf}, "username": {user}, "password": {pw}})
}

// consent posts the consent form found in page.
func (b *browser) consent(page *httptest.ResponseRecorder, decision string) *httptest.ResponseRecorder {
	b.t.Helper()
	state, csrf := formFields(b.t, page.Body.String())
	return b.post(b.e.basePath+AuthorizePath+"/consent",
		url.Values{"state": {state}, "csrf": {csrf}, "decision": {decision}})
}

// authorize runs an authorization request to its redirect, signing in as
// user and allowing consent when the pages ask.
func (b *browser) authorize(q url.Values, user, pw string) *url.URL {
	b.t.Helper()
	rec := b.get(b.e.basePath + AuthorizePath + "?" + q.Encode())
	for range 3 {
		switch {
		case rec.Code == http.StatusFound:
			return mustLocation(b.t, rec)
		case rec.Code == http.StatusOK && isLoginPage(rec):
			rec = b.login(rec, user, pw)
		case rec.Code == http.StatusOK && isConsentPage(rec):
			rec = b.consent(rec, "allow")
		default:
			b.t.Fatalf("authorize: unexpected %d:\n%s", rec.Code, rec.Body.String())
		}
	}
	b.t.Fatalf("authorize: no redirect after 3 steps")
	return nil
}

func mustLocation(t testing.TB, rec *httptest.ResponseRecorder) *url.URL {
	t.Helper()
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusFound || loc == "" {
		t.Fatalf("want a 302 with Location, got %d %q:\n%s", rec.Code, loc, rec.Body.String())
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	return u
}

// newPKCE returns a verifier and its S256 challenge.
func newPKCE() (verifier, challenge string) {
	v := tokens.RandomID(32)
	return v, s256(v)
}

// newChallenge is a fresh S256 challenge: the server refuses one that a
// live code already carries.
func newChallenge() string {
	_, ch := newPKCE()
	return ch
}

// authzQuery is a valid code request for the client with PKCE; kv adds or
// (with an empty value) removes parameters.
func authzQuery(clientID, challenge string, kv ...string) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {testRedirect[clientID]},
		"state":                 {"st-123"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// getCode signs alice in (when needed) and returns a code for the client
// with its PKCE verifier.
func (b *browser) getCode(clientID string, kv ...string) (code, verifier string) {
	b.t.Helper()
	verifier, challenge := newPKCE()
	loc := b.authorize(authzQuery(clientID, challenge, kv...), "alice", "alice-pw")
	code = loc.Query().Get("code")
	if code == "" {
		b.t.Fatalf("no code in %s", loc)
	}
	return code, verifier
}

// tokenResult is a token endpoint answer.
type tokenResult struct {
	status int
	hdr    http.Header
	body   map[string]any
	raw    string
}

func (tr tokenResult) str(k string) string { s, _ := tr.body[k].(string); return s }

// postTokenRaw sends a token request with the form and an optional
// Authorization header.
func postTokenRaw(e *Engine, form url.Values, authz string) tokenResult {
	r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = loopbackAddr
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	rec := httptest.NewRecorder()
	e.serveToken(rec, r)
	tr := tokenResult{status: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &tr.body)
	return tr
}

func siBasicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// postToken authenticates as the client the way it registered.
func postToken(e *Engine, clientID string, form url.Values) tokenResult {
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
	return postTokenRaw(e, form, authz)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// redeem exchanges a code of the client's default redirect URI.
func redeem(e *Engine, clientID, code, verifier string) tokenResult {
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect[clientID]}}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return postToken(e, clientID, f)
}

func refresh(e *Engine, clientID, rt string, kv ...string) tokenResult {
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return postToken(e, clientID, f)
}

func wantOK(t testing.TB, tr tokenResult) {
	t.Helper()
	if tr.status != http.StatusOK || tr.str("access_token") == "" {
		t.Fatalf("want 200 with a token, got %d %s", tr.status, tr.raw)
	}
}

func wantErr(t testing.TB, tr tokenResult, status int, code string) {
	t.Helper()
	if tr.status != status || tr.str("error") != code {
		t.Fatalf("want %d %s, got %d %s", status, code, tr.status, tr.raw)
	}
	if tr.str("access_token") != "" {
		t.Fatalf("error response carries a token: %s", tr.raw)
	}
	if tr.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("error without Cache-Control: no-store")
	}
}

// verifyIDToken checks the signature with the engine's ID-token key of
// the algorithm the header names (RS256 unless the client registered
// another) and returns the header and claims.
func verifyIDToken(t testing.TB, e *Engine, tok string) (hdr, claims map[string]any) {
	t.Helper()
	var h struct{ Alg, Kid string }
	if hb, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0]); err != nil || json.Unmarshal(hb, &h) != nil {
		t.Fatalf("id_token header unreadable")
	}
	k, ok := e.keyRing().Signer(h.Alg)
	if !ok || k.ID != h.Kid {
		t.Fatalf("id_token signed by %s/%s, not by an ID-token key of the ring", h.Alg, h.Kid)
	}
	payload, err := e.keyRing().VerifySignature(tok, "JWT")
	if err != nil {
		t.Fatalf("id_token does not verify: %v", err)
	}
	hb, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil || json.Unmarshal(hb, &hdr) != nil {
		t.Fatalf("id_token header unreadable")
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("id_token claims: %v", err)
	}
	return hdr, claims
}

// leftHalfSHA256 is the OIDC at_hash for ES256, computed independently.
func leftHalfSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// jtiOf reads an access token's jti without verifying it.
func jtiOf(t testing.TB, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		ID string `json:"jti"`
	}
	if err != nil || json.Unmarshal(b, &c) != nil || c.ID == "" {
		t.Fatalf("no jti in %q", tok)
	}
	return c.ID
}

// verifies reports whether the engine's verifier accepts the access token.
func verifies(e *Engine, at string) bool {
	_, err := e.verifier.Verify(at, time.Now())
	return err == nil
}

// sessionKeys lists the stored sign-in sessions.
func sessionKeys(t testing.TB, e *Engine) []string {
	t.Helper()
	var keys []string
	err := e.store.View(context.Background(), func(tx storage.Tx) error {
		return tx.ForEach(storage.KindSessions, func(k string, _ storage.Record) error {
			keys = append(keys, k)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func headerHasNoCRLF(t testing.TB, h http.Header) {
	t.Helper()
	for k, vs := range h {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("header %s has a raw CR/LF: %q", k, v)
			}
		}
	}
}

// verifiesAfterRestart checks tok with a verifier built only from what
// storage holds (keys and revocations), as a restarted server would.
func verifiesAfterRestart(t *testing.T, e *Engine, tok string) bool {
	t.Helper()
	rev, err := tokens.LoadRevocations(context.Background(), e.store)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := tokens.NewKeys(tokens.KeyOptions{Algs: e.ringAlgs()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Load(context.Background(), e.store, time.Now()); err != nil {
		t.Fatal(err)
	}
	v := tokens.NewVerifier(tokens.VerifierConfig{Issuer: e.issuer, Leeway: verifierLeeway, Keys: ks, Revocations: rev})
	_, err = v.Verify(tok, time.Now())
	return err == nil
}
