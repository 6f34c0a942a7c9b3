package grants

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// signedIn returns a browser with alice's session.
func signedIn(t *testing.T, e *Engine) *browser {
	t.Helper()
	b := newBrowser(t, e)
	_, ch := newPKCE()
	if loc := b.authorize(authzQuery("c-trusted", ch), "alice", "alice-pw"); loc.Query().Get("code") == "" {
		t.Fatalf("sign-in failed")
	}
	if b.cookies[sessionCookie] == nil {
		t.Fatalf("no session cookie")
	}
	return b
}

// stillSignedIn reports whether the browser's session still skips the
// login page.
func stillSignedIn(t *testing.T, b *browser) bool {
	t.Helper()
	_, ch := newPKCE()
	rec := b.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
	return rec.Code == http.StatusFound
}

func idTokenFor(t *testing.T, k *tokens.Key, iss, sub, aud string) string {
	t.Helper()
	now := time.Now()
	tok, err := k.MintIDToken(&IDClaims{Issuer: iss, Subject: sub, Audience: aud, AZP: aud,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), AuthTime: now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// otherKey is an ES256 key that is not the engine's.
func otherKey(t *testing.T) *tokens.Key {
	t.Helper()
	ks, err := tokens.NewKeys(tokens.KeyOptions{Algs: []string{"ES256"}, Generate: generateKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Load(context.Background(), openStore(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	return ks.Ring().Current
}

func logoutQuery(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return LogoutPath + "?" + q.Encode()
}

// confirmLogout posts the confirmation form of page.
func (b *browser) confirmLogout(page *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	b.t.Helper()
	state, csrf := formFields(b.t, page.Body.String())
	return b.post(LogoutPath+"/confirm", url.Values{"state": {state}, "csrf": {csrf}})
}

// wantSignedOut checks the session is gone: record deleted, cookie cleared.
func wantSignedOut(t *testing.T, e *Engine, b *browser, rec *httptest.ResponseRecorder) {
	t.Helper()
	c := setCookie(t, rec, sessionCookie)
	if c == nil || c.MaxAge >= 0 || c.Value != "" || c.Path != "/oauth/" {
		t.Fatalf("session cookie not cleared: %+v", c)
	}
	if n := len(sessionKeys(t, e)); n != 0 {
		t.Fatalf("%d session records remain", n)
	}
	if stillSignedIn(t, b) {
		t.Fatalf("still signed in")
	}
}

func TestLogoutConfirmation(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	tests := []struct {
		name     string
		query    string
		location string // "" = no redirect
	}{
		{"no redirect", logoutQuery(), ""},
		{"registered redirect with state", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye", "state", "s 1"),
			"https://client.test/bye?state=s+1"},
		{"registered redirect without state", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye"),
			"https://client.test/bye"},
		{"BCP-01: unregistered redirect", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://evil.test", "state", "s"), ""},
		{"redirect with a trailing slash", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye/"), ""},
		{"redirect with a query", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye?x=1"), ""},
		{"redirect of another client", logoutQuery("client_id", "c-basic", "post_logout_redirect_uri", "https://client.test/bye"), ""},
		{"redirect without client", logoutQuery("post_logout_redirect_uri", "https://client.test/bye"), ""},
		{"unknown client", logoutQuery("client_id", "nosuch", "post_logout_redirect_uri", "https://client.test/bye"), ""},
		{"login redirect uri is not a logout uri", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/cb"), ""},
		{"javascript", logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "javascript:alert(1)"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := signedIn(t, e)
			page := b.get(tt.query)
			if page.Code != http.StatusOK || !isLogoutPage(page) {
				t.Fatalf("want the confirmation page, got %d:\n%s", page.Code, page.Body.String())
			}
			checkPageHeaders(t, page)
			if setCookie(t, page, sessionCookie) != nil || !stillSignedIn(t, b) {
				t.Fatalf("showing the confirmation page signed out")
			}
			if strings.Contains(page.Body.String(), "evil.test") {
				t.Fatalf("page reflects the redirect")
			}
			rec := b.confirmLogout(page)
			headerHasNoCRLF(t, rec.Header())
			if tt.location == "" {
				if rec.Code != http.StatusOK || rec.Header().Get("Location") != "" {
					t.Fatalf("want the signed-out page, got %d Location %q", rec.Code, rec.Header().Get("Location"))
				}
				checkPageHeaders(t, rec)
			} else if rec.Code != http.StatusFound || rec.Header().Get("Location") != tt.location {
				t.Fatalf("got %d Location %q, want %q", rec.Code, rec.Header().Get("Location"), tt.location)
			}
			wantSignedOut(t, e, b, rec)
		})
	}
}

func TestLogoutConfirmCSRF(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	tests := []struct {
		name string
		mod  func(b *browser, f url.Values)
	}{
		{"csrf differs", func(_ *browser, f url.Values) { f.Set("csrf", tokens.RandomID(32)) }},
		{"no csrf cookie", func(b *browser, _ url.Values) { delete(b.cookies, csrfCookie) }},
		{"no state", func(_ *browser, f url.Values) { f.Del("state") }},
		{"expired state", func(_ *browser, f url.Values) {
			f.Set("state", sealAt(e.web, logoutState{}, f.Get("csrf"), time.Now().Add(-16*time.Minute)))
		}},
		{"login state sealed for another csrf", func(_ *browser, f url.Values) {
			f.Set("state", e.web.seal(logoutState{}, tokens.RandomID(32)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := signedIn(t, e)
			page := b.get(logoutQuery())
			state, csrf := formFields(t, page.Body.String())
			f := url.Values{"state": {state}, "csrf": {csrf}}
			tt.mod(b, f)
			rec := b.post(LogoutPath+"/confirm", f)
			wantErrorPage(t, rec, http.StatusForbidden)
			if setCookie(t, rec, sessionCookie) != nil {
				t.Fatalf("refused sign-out touched the session cookie")
			}
			if !stillSignedIn(t, b) {
				t.Fatalf("refused sign-out ended the session")
			}
		})
	}
}

// An id_token_hint for the signed-in user signs out without a form; any
// other hint does not.
func TestLogoutIDTokenHint(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	k := e.keyRing().Current
	// Our kid and alg, another key's signature.
	forgedKid := func() string {
		now := time.Now()
		return signRaw(t, otherKey(t), mustJSON(t, map[string]any{"alg": k.Alg.String(), "kid": k.ID, "typ": "JWT"}), mustJSON(t, &IDClaims{
			Issuer: testIssuer, Subject: "alice", Audience: "c-web", AZP: "c-web",
			IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), AuthTime: now.Unix()}))
	}
	tests := []struct {
		name     string
		hint     func() string
		kv       []string
		atOnce   bool
		location string
	}{
		{"valid hint", func() string { return idTokenFor(t, k, testIssuer, "alice", "c-web") }, nil, true, ""},
		{"valid hint, its client's redirect", func() string { return idTokenFor(t, k, testIssuer, "alice", "c-web") },
			[]string{"post_logout_redirect_uri", "https://client.test/bye", "state", "z"}, true, "https://client.test/bye?state=z"},
		{"valid hint, matching client_id", func() string { return idTokenFor(t, k, testIssuer, "alice", "c-web") },
			[]string{"client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye"}, true, "https://client.test/bye"},
		{"valid hint, other client_id", func() string { return idTokenFor(t, k, testIssuer, "alice", "c-basic") },
			[]string{"client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye"}, true, ""},
		{"expired hint still identifies", func() string {
			tok, _ := k.MintIDToken(&IDClaims{Issuer: testIssuer, Subject: "alice", Audience: "c-web", IssuedAt: 1, ExpiresAt: 2})
			return tok
		}, nil, true, ""},
		{"hint for another user", func() string { return idTokenFor(t, k, testIssuer, "bob", "c-web") }, nil, false, ""},
		{"hint from another issuer", func() string { return idTokenFor(t, k, "https://other.test", "alice", "c-web") }, nil, false, ""},
		{"hint signed by another key", func() string { return idTokenFor(t, otherKey(t), testIssuer, "alice", "c-web") }, nil, false, ""},
		{"hint with our kid, another key", forgedKid, nil, false, ""},
		{"forged hint does not unlock a redirect", func() string { return idTokenFor(t, otherKey(t), testIssuer, "alice", "c-web") },
			[]string{"post_logout_redirect_uri", "https://client.test/bye"}, false, ""},
		{"access token as hint", func() string {
			tok, _ := k.MintAccessToken(tokens.NewAccessClaims(testIssuer, "alice", "c-web", []string{testIssuer}, nil, time.Now(), time.Minute))
			return tok
		}, nil, false, ""},
		{"alg none hint", func() string {
			tok := idTokenFor(t, k, testIssuer, "alice", "c-web")
			parts := strings.Split(tok, ".")
			return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
		}, nil, false, ""},
		{"garbage hint", func() string { return "not.a.jwt" }, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := signedIn(t, e)
			rec := b.get(logoutQuery(append([]string{"id_token_hint", tt.hint()}, tt.kv...)...))
			if !tt.atOnce {
				if rec.Code != http.StatusOK || !isLogoutPage(rec) {
					t.Fatalf("want the confirmation page, got %d %q", rec.Code, rec.Header().Get("Location"))
				}
				if !stillSignedIn(t, b) {
					t.Fatalf("a hint that does not prove the user signed out at once")
				}
				return
			}
			if tt.location == "" {
				if rec.Code != http.StatusOK || rec.Header().Get("Location") != "" || isLogoutPage(rec) {
					t.Fatalf("want the signed-out page, got %d %q", rec.Code, rec.Header().Get("Location"))
				}
			} else if rec.Code != http.StatusFound || rec.Header().Get("Location") != tt.location {
				t.Fatalf("got %d %q, want %q", rec.Code, rec.Header().Get("Location"), tt.location)
			}
			wantSignedOut(t, e, b, rec)
		})
	}
}

func TestLogoutWithoutSession(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	rec := b.get(logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye", "state", "q"))
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://client.test/bye?state=q" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = b.get(logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://evil.test/"))
	if rec.Code != http.StatusOK || rec.Header().Get("Location") != "" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Location"))
	}
	// RP-initiated logout may POST its parameters.
	rec = b.post(LogoutPath, url.Values{"client_id": {"c-web"}, "post_logout_redirect_uri": {"https://client.test/bye"}, "state": {"p"}})
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://client.test/bye?state=p" {
		t.Fatalf("POST: got %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = b.get(LogoutPath + "?state=a&state=b")
	wantErrorPage(t, rec, http.StatusBadRequest)
	r := httptest.NewRequest(http.MethodPut, LogoutPath, nil)
	r.RemoteAddr = loopbackAddr
	rr := httptest.NewRecorder()
	e.serveLogout(rr, r)
	wantErrorPage(t, rr, http.StatusMethodNotAllowed)
}

// A POSTed id_token_hint signs out at once like a GET one.
func TestLogoutPostHint(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := signedIn(t, e)
	rec := b.post(LogoutPath, url.Values{"id_token_hint": {idTokenFor(t, e.keyRing().Current, testIssuer, "alice", "c-web")},
		"post_logout_redirect_uri": {"https://client.test/bye"}})
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://client.test/bye" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Location"))
	}
	wantSignedOut(t, e, b, rec)
}
