package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

const wikiGate = `oauth_protect {
	audience https://app.test
	forward_header X-Forwarded-User preferred_username
	forward_header X-Forwarded-Email email
	login
}`

// TestLoginRedirect: a navigation without a session goes to the
// provider's authorization endpoint with PKCE S256, state and nonce, and
// a sealed sign-in cookie; a script's request or a POST gets 401.
func TestLoginRedirect(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	rec := b.get("https://app.test/wiki/page?x=1")
	if rec.Code != http.StatusFound {
		t.Fatalf("status %d, want 302:\n%s", rec.Code, rec.Body)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if loc.Scheme+"://"+loc.Host+loc.Path != "https://as.test"+grants.AuthorizePath {
		t.Errorf("redirect to %s, want the authorization endpoint", loc)
	}
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
		len(q.Get("state")) < 32 || len(q.Get("nonce")) < 32 || q.Get("client_id") != grants.LoginClientID("https://app.test/oauth2/callback") ||
		q.Get("redirect_uri") != "https://app.test/oauth2/callback" || !strings.Contains(" "+q.Get("scope")+" ", " openid ") {
		t.Errorf("authorization request %v", q)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "__Host-oauthgate_app_login0" || !cookies[0].HttpOnly || !cookies[0].Secure ||
		cookies[0].SameSite != http.SameSiteLaxMode || cookies[0].Path != "/" || cookies[0].MaxAge != 600 {
		t.Fatalf("sign-in cookie %+v", cookies)
	}
	if strings.Contains(cookies[0].Value, q.Get("state")) || strings.Contains(cookies[0].Value, "wiki") {
		t.Errorf("the sign-in cookie is not sealed: %q", cookies[0].Value)
	}
	// A second tab gets its own slot.
	if rec := b.get("https://app.test/other"); rec.Code != http.StatusFound || rec.Result().Cookies()[0].Name != "__Host-oauthgate_app_login1" {
		t.Errorf("second sign-in: %d %v", rec.Code, rec.Result().Cookies())
	}
	for name, mod := range map[string]func(*http.Request){
		"fetch":            func(r *http.Request) { r.Header.Set("Sec-Fetch-Mode", "cors") },
		"json":             func(r *http.Request) { r.Header.Set("Sec-Fetch-Mode", ""); r.Header.Set("Accept", "application/json") },
		"X-Requested-With": func(r *http.Request) { r.Header.Set("X-Requested-With", "XMLHttpRequest") },
		"POST":             func(r *http.Request) { r.Method = http.MethodPost },
	} {
		r := httptest.NewRequest(http.MethodGet, "https://app.test/wiki/page", nil)
		r.Header.Set("Accept", "text/html")
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		mod(r)
		rec := b.do(r)
		if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") || len(rec.Result().Cookies()) != 0 {
			t.Errorf("%s: status %d %q cookies %v, want 401 with the Bearer challenge", name, rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Result().Cookies())
		}
	}
}

// TestLoginFlow: a browser signs in through the built-in provider, lands
// on the page it asked for, and the upstream sees the identity headers
// but neither the session cookie nor the tokens; a reload needs no new
// sign-in.
func TestLoginFlow(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	b.setSession("app.test", "theme", "dark")
	b.header = http.Header{"X-Forwarded-User": {"root"}}
	rec := b.visit("https://app.test/wiki/page?x=1", "alice")
	if rec.Code != http.StatusOK || rec.Body.String() != "upstream page" || b.seen == nil {
		t.Fatalf("after sign-in: %d %s", rec.Code, rec.Body)
	}
	if got := b.seen.URL.RequestURI(); got != "/wiki/page?x=1" {
		t.Errorf("landed on %s, want the page asked for", got)
	}
	if u, e := b.seen.Header.Get("X-Forwarded-User"), b.seen.Header.Get("X-Forwarded-Email"); u != "alice" || e != "alice@example.com" {
		t.Errorf("identity headers %q %q", u, e)
	}
	if c := b.seen.Header.Get("Cookie"); c != "theme=dark" {
		t.Errorf("upstream Cookie %q, want only theme=dark", c)
	}
	if sub, _ := b.repl.GetString("oauth.sub"); sub == "" || sub != mustGet(b, "http.auth.user.id") {
		t.Errorf("placeholders oauth.sub %q", sub)
	}
	if name, _ := b.repl.GetString("oauth.claim.preferred_username"); name != "alice" {
		t.Errorf("{oauth.claim.preferred_username} = %q", name)
	}
	value := b.session("app.test")
	if value == "" || len(value) > maxCookieValue {
		t.Fatalf("session cookie of %d bytes", len(value))
	}
	if _, ok := b.jars["app.test"]["__Host-oauthgate_app_login0"]; ok {
		t.Error("the sign-in cookie was not cleared")
	}
	// Reload: the session holds, no redirect, no new cookie.
	rec = b.get("https://app.test/wiki/other")
	if rec.Code != http.StatusOK || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("reload: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	// A script's request with the session passes too.
	r := httptest.NewRequest(http.MethodPost, "https://app.test/api/save", strings.NewReader("a=b"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Mode", "cors")
	if rec := b.do(r); rec.Code != http.StatusOK {
		t.Fatalf("POST with a session: %d", rec.Code)
	}
	// An Authorization header means the bearer path, whatever the cookie.
	r = httptest.NewRequest(http.MethodGet, "https://app.test/wiki/page", nil)
	r.Header.Set("Authorization", "Bearer not-a-token")
	if rec := b.do(r); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("bad bearer beside a session: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	// A token in the query or a form body never reaches the upstream
	// beside a session.
	if rec := b.get("https://app.test/wiki?access_token=x"); rec.Code != http.StatusBadRequest || b.seen != nil {
		t.Errorf("access_token in the query beside a session: %d", rec.Code)
	}
	r = httptest.NewRequest(http.MethodPost, "https://app.test/api/save", strings.NewReader("access_token=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := b.do(r); rec.Code != http.StatusBadRequest || b.seen != nil {
		t.Errorf("access_token in a form beside a session: %d", rec.Code)
	}
	// Plain HTTP from another host: no session, no sign-in, no callback.
	for _, target := range []string{"http://app.test/wiki", "http://app.test/oauth2/callback?state=x&code=y"} {
		r = httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Accept", "text/html")
		r, _ = caddyRequest(r)
		r.RemoteAddr = "203.0.113.9:4000"
		r.AddCookie(&http.Cookie{Name: "oauthgate_app", Value: value})
		if w, ok := serveGate(p, r); ok || w.Code != http.StatusBadRequest || len(w.Result().Cookies()) != 0 {
			t.Errorf("%s over plain HTTP from afar: %d", target, w.Code)
		}
	}
}

func mustGet(b *testBrowser, key string) string {
	s, _ := b.repl.GetString(key)
	return s
}

// TestCallbackRefusals: a callback whose state matches no sign-in of
// this browser (CSRF), or with bad parameters, is a 400 page that sets
// nothing; the provider's error is shown as a page.
func TestCallbackRefusals(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	rec := b.get("https://app.test/wiki")
	loc, _ := url.Parse(rec.Header().Get("Location"))
	state := loc.Query().Get("state")
	for name, query := range map[string]string{
		"state mismatch":  "code=abc&state=" + strings.Repeat("x", 32),
		"no state":        "code=abc",
		"two states":      "code=abc&state=" + state + "&state=" + state,
		"two codes":       "code=abc&code=def&state=" + state,
		"huge state":      "code=abc&state=" + strings.Repeat("s", 5000),
		"huge query":      "code=" + strings.Repeat("c", 10000) + "&state=" + state,
		"bad escape":      "code=%zz&state=" + state,
		"no code":         "state=" + state,
		"code reused/bad": "code=not-a-code&state=" + state,
	} {
		rec := b.get("https://app.test/oauth2/callback?" + query)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s: status %d, want a 400 page", name, rec.Code)
		}
		for _, c := range rec.Result().Cookies() {
			if c.MaxAge >= 0 {
				t.Errorf("%s: a cookie was set: %v", name, c)
			}
		}
		if b.session("app.test") != "" {
			t.Fatalf("%s: a session was set", name)
		}
	}
	// An attacker's own valid callback (code and state of their sign-in)
	// does not work in the victim's browser: the state is not the
	// victim's.
	attacker := newTestBrowser(t, app.eng, p)
	rec = attacker.get("https://app.test/wiki")
	rec = attacker.visitUntilCallback(rec)
	victim := newTestBrowser(t, app.eng, p)
	victim.get("https://app.test/other") // a sign-in of its own in progress
	if rec := victim.get(rec.Header().Get("Location")); rec.Code != http.StatusBadRequest || victim.session("app.test") != "" {
		t.Errorf("login CSRF: status %d, session %q", rec.Code, victim.session("app.test"))
	}
	// The provider's error: shown, escaped, the sign-in cookie cleared.
	b2 := newTestBrowser(t, app.eng, p)
	rec = b2.get("https://app.test/wiki")
	loc, _ = url.Parse(rec.Header().Get("Location"))
	rec = b2.get("https://app.test/oauth2/callback?error=access_denied&state=" + url.QueryEscape(loc.Query().Get("state")))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "access_denied") || len(b2.jars["app.test"]) != 0 {
		t.Errorf("provider error: %d %s, jar %v", rec.Code, rec.Body, b2.jars["app.test"])
	}
	rec = b2.get("https://app.test/oauth2/callback?error=%3Cscript%3E&state=x")
	if strings.Contains(rec.Body.String(), "<script>") {
		t.Error("the error was echoed unescaped")
	}
}

// visitUntilCallback follows a sign-in to the redirect to the gate's
// callback, without taking it.
func (b *testBrowser) visitUntilCallback(rec *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	b.t.Helper()
	for range 10 {
		loc := rec.Header().Get("Location")
		if strings.HasPrefix(loc, "https://app.test/oauth2/callback") {
			return rec
		}
		if loc != "" {
			rec = b.get(loc)
			continue
		}
		form := url.Values{"username": {"bob"}, "password": {userPassword}}
		for _, m := range hiddenField.FindAllStringSubmatch(rec.Body.String(), -1) {
			form.Set(m[1], m[2])
		}
		r := httptest.NewRequest(http.MethodPost, "https://as.test"+grants.AuthorizePath+"/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec = b.do(r)
	}
	b.t.Fatal("no callback")
	return nil
}

// TestSessionCookieForgery: a tampered, forged or foreign cookie (sealed
// for another gate's client or another issuer) is no session.
func TestSessionCookieForgery(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	good := b.session("app.test")
	// A second gate of the same app (other redirect URI, so another
	// client) seals with the same key: its cookie does not open here.
	other := loginGate(t, app, "oauth_protect {\n audience https://other.test\n login\n}")
	ob := newTestBrowser(t, app.eng, other)
	if rec := ob.visit("https://other.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in at the other gate: %d", rec.Code)
	}
	tampered := []byte(good)
	tampered[len(tampered)/2] ^= 1
	for name, value := range map[string]string{
		"tampered":       string(tampered),
		"truncated":      good[:len(good)-4],
		"forged":         "eyJzdWIiOiJhZG1pbiJ9",
		"other gate's":   ob.session("other.test"),
		"huge":           strings.Repeat("A", 5000),
		"another issuer": sealedElsewhere(t, p, good),
		"another server": anotherServersCookie(t),
	} {
		c := newTestBrowser(t, app.eng, p)
		c.setSession("app.test", "__Host-oauthgate_app", value)
		rec := c.get("https://app.test/wiki")
		if rec.Code != http.StatusFound || c.seen != nil {
			t.Errorf("%s cookie: status %d, upstream reached %v; want a redirect to sign in", name, rec.Code, c.seen != nil)
		}
		if c.session("app.test") != "" {
			t.Errorf("%s cookie: not cleared", name)
		}
	}
	// The good one still works.
	c := newTestBrowser(t, app.eng, p)
	c.setSession("app.test", "__Host-oauthgate_app", good)
	if rec := c.get("https://app.test/wiki"); rec.Code != http.StatusOK {
		t.Fatalf("the real cookie: %d", rec.Code)
	}
}

// sealedElsewhere is the plaintext of a real session sealed with this
// gate's key for a gate of another issuer (other additional data).
func sealedElsewhere(t *testing.T, p *Protect, good string) string {
	t.Helper()
	rp, err := p.login.relyingParty(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := rp.sealer.Open(rp.sessionAAD, good)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte(strings.Replace(string(rp.sessionAAD), "https://as.test", "https://evil.test", 1))
	return rp.sealer.Seal(aad, plain)
}

// anotherServersCookie is a session of a gate of the same configuration
// in front of another authorization server (other keys).
func anotherServersCookie(t *testing.T) string {
	t.Helper()
	app := startedLoginIssuer(t, 10*time.Minute)
	b := newTestBrowser(t, app.eng, loginGate(t, app, wikiGate))
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in at the other server: %d", rec.Code)
	}
	return b.session("app.test")
}

// TestReturnPath: after sign-in the browser goes back only to the
// original request's own path; anything a browser could read as another
// origin ends at "/".
func TestReturnPath(t *testing.T) {
	for in, want := range map[string]string{
		"/wiki/page?x=1":                "/wiki/page?x=1",
		"/":                             "/",
		"//evil.example/x":              "/",
		"/\\evil.example":               "/",
		"/%5Cevil":                      "/",
		"/%2f/evil":                     "/",
		"/a%5Cb":                        "/a%5Cb",
		"https://evil.example/":         "/",
		"evil.example":                  "/",
		"/a\\b":                         "/",
		"/\t/evil.example":              "/",
		"/oauth2/callback?x=1":          "/",
		"/oauth2/logout":                "/",
		"":                              "/",
		"/" + strings.Repeat("a", 3000): "/",
	} {
		if got := safeReturnPath(in, "/oauth2/callback", "/oauth2/logout"); got != want {
			t.Errorf("safeReturnPath(%q) = %q, want %q", in, got, want)
		}
	}
	// Through a whole sign-in: a request for //evil.example lands on "/".
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	for _, path := range []string{"//evil.example/x", "/\\evil.example"} {
		b := newTestBrowser(t, app.eng, p)
		r := httptest.NewRequest(http.MethodGet, "https://app.test/", nil)
		r.URL.Path, r.URL.RawPath = path, ""
		r.Header.Set("Accept", "text/html")
		rec := b.do(r)
		if rec.Code != http.StatusFound {
			t.Fatalf("status %d", rec.Code)
		}
		rec = b.visitUntilCallback(rec)
		rec = b.get(rec.Header().Get("Location"))
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
			t.Errorf("after sign-in: %d to %q, want 303 to /", rec.Code, rec.Header().Get("Location"))
		}
	}
	// A query parameter cannot choose the destination.
	b := newTestBrowser(t, app.eng, p)
	rec := b.get("https://app.test/oauth2/callback?state=x&code=y&redirect_uri=https://evil.example&return_to=https://evil.example")
	if loc := rec.Header().Get("Location"); loc != "" {
		t.Errorf("callback redirected to %q", loc)
	}
}

// TestSessionFixation: a cookie planted before sign-in, even a valid
// session of someone else, is replaced by a fresh one at sign-in.
func TestSessionFixation(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	attacker := newTestBrowser(t, app.eng, p)
	if rec := attacker.visit("https://app.test/", "bob"); rec.Code != http.StatusOK {
		t.Fatalf("attacker sign-in: %d", rec.Code)
	}
	planted := attacker.session("app.test")
	victim := newTestBrowser(t, app.eng, p)
	// An invalid planted value is no session: the victim signs in.
	victim.setSession("app.test", "__Host-oauthgate_app", "planted-value")
	rec := victim.visit("https://app.test/", "alice")
	if rec.Code != http.StatusOK || victim.seen.Header.Get("X-Forwarded-User") != "alice" {
		t.Fatalf("victim: %d as %q", rec.Code, victim.seen.Header.Get("X-Forwarded-User"))
	}
	if v := victim.session("app.test"); v == "planted-value" || v == planted || v == "" {
		t.Fatalf("the session cookie was not replaced: %q", v)
	}
	// A planted valid session: signing in (a new callback) replaces it.
	victim2 := newTestBrowser(t, app.eng, p)
	victim2.setSession("app.test", "__Host-oauthgate_app", planted)
	r := httptest.NewRequest(http.MethodGet, "https://app.test/api", nil)
	r.Header.Set("Sec-Fetch-Mode", "cors")
	if rec := victim2.do(r); rec.Code != http.StatusOK {
		t.Fatalf("the planted session: %d", rec.Code) // works as bob: that is what a planted cookie is
	}
	delete(victim2.jars["app.test"], "__Host-oauthgate_app")
	start := victim2.get("https://app.test/me")
	victim2.setSession("app.test", "__Host-oauthgate_app", planted)
	rec = victim2.visitUntilCallback(start)
	// visitUntilCallback signs in as bob; what matters is the new value.
	rec = victim2.get(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || victim2.session("app.test") == planted {
		t.Fatalf("callback: %d, cookie replaced %v", rec.Code, victim2.session("app.test") != planted)
	}
}

// TestCookieApartFromServer: over plain HTTP on one host (loopback, the
// quick start) a browser sends the gate's session cookie to the
// authorization server too; its name must not be the server's own, which
// the server refuses to see twice (a sibling could have planted it).
func TestCookieApartFromServer(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, "oauth_protect {\n audience http://127.0.0.1:8080\n login\n}")
	b := newTestBrowser(t, app.eng, p)
	// One host: every cookie goes to the server and the gate.
	shared := map[string]*http.Cookie{}
	b.jars["127.0.0.1:8080"], b.jars["as.test"] = shared, shared
	if rec := b.visit("http://127.0.0.1:8080/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	// Signed in at the gate, the browser signs in to another client of
	// the same server (its sign-in session is still there).
	q := url.Values{"client_id": {"ext"}, "redirect_uri": {"https://ext.test/oauth2/callback"}, "response_type": {"code"},
		"scope": {"openid"}, "state": {"s"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
	rec := b.get("https://as.test" + grants.AuthorizePath + "?" + q.Encode())
	if rec.Code != http.StatusFound || !strings.HasPrefix(rec.Header().Get("Location"), "https://ext.test/oauth2/callback?code=") {
		t.Fatalf("the server, with the gate's cookie beside its own: %d %s\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if rec := b.get("http://127.0.0.1:8080/again"); rec.Code != http.StatusOK {
		t.Fatalf("the gate's session after: %d", rec.Code)
	}
}
