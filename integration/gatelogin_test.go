package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Browser mode of oauth_protect (`login`), against the built-in
// authorization server: a real Caddy from a Caddyfile, a legacy app behind
// reverse_proxy that shows what it received, and Chromium or a plain
// net/http client with a cookie jar (which, like a browser, keys cookies by
// host and ignores the port).
//
// The authorization server answers on localhost, the gates on 127.0.0.1:
// two hosts, so that each one's cookies stay its own (browsers send a
// host's cookies to every port of it). TestGateLoginIssuerSameHost puts
// both on one host on purpose.
const (
	gateIssuer = "http://localhost:19152"
	gateWiki   = "http://127.0.0.1:19153" // login, identity headers
	gateBye    = "http://127.0.0.1:19154" // the post-logout page, not protected
	gateAdmins = "http://127.0.0.1:19155" // login, allow_groups admins
	gateAlice  = "http://127.0.0.1:19156" // login, allow_users alice
	// gateCookie is the default cookie_name (no __Host- over HTTP); not
	// oauthgate_session, the authorization server's own sign-in cookie.
	gateCookie  = "oauthgate_app"
	alicePass   = "alice-password"
	bobPass     = "bob-password"
	gateAdminIn = "http://" + adminAddr
)

// loginCaddyfile is the built-in mode's config: the oauth app with alice
// (in the admins group) and bob, its oauth_server, and three gated copies
// of the legacy app at upstream.
func loginCaddyfile(t *testing.T, storage, upstream string) string {
	t.Helper()
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	return fmt.Sprintf(`{
	skip_install_trust
	admin %[1]s
	default_bind 127.0.0.1
	http_port 19150
	https_port 19151
	grace_period 1ns
	oauth {
		issuer %[2]s
		storage_path %[3]s
		user alice {
			password_hash %[4]s
			claim email alice@example.com
			claim email_verified true
			claim groups "staff, admins"
		}
		user bob {
			password_hash %[5]s
			claim email bob@example.com
		}
		client reporter {
			secret reporter-secret-0123456789abcdef
			grant_types client_credentials
			audience %[7]s %[10]s
		}
	}
}

http://:19152 {
	oauth_server
}

http://127.0.0.1:19153 {
	oauth_protect {
		audience %[7]s
		forward_header X-Forwarded-User sub
		forward_header X-Forwarded-Preferred-Username preferred_username
		forward_header X-Forwarded-Email email
		login {
			post_logout_redirect_uri %[8]s/bye
		}
	}
	reverse_proxy %[6]s
}

http://127.0.0.1:19154 {
	respond /bye "signed out of the wiki"
}

http://127.0.0.1:19155 {
	oauth_protect {
		audience %[9]s
		forward_header X-Forwarded-User sub
		allow_groups admins
		login
	}
	reverse_proxy %[6]s
}

http://127.0.0.1:19156 {
	oauth_protect {
		audience %[10]s
		forward_header X-Forwarded-User sub
		allow_users alice
		login
	}
	reverse_proxy %[6]s
}
`, adminAddr, gateIssuer, storage, hash(alicePass), hash(bobPass), upstream, gateWiki, gateBye, gateAdmins, gateAlice)
}

// identityApp is the legacy app: it shows the identity headers and the
// Cookie and Authorization headers it received, and records every request.
type identityApp struct {
	srv   *httptest.Server
	mu    sync.Mutex
	seen  []http.Header
	paths []string
}

func newIdentityApp(t *testing.T) *identityApp {
	a := &identityApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Clone())
		a.paths = append(a.paths, r.URL.RequestURI())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<html><body><p id=who>user=%s name=%s email=%s</p><p id=cookie>cookie=[%s]</p><p id=authz>authz=[%s]</p><p id=path>path=%s</p></body></html>",
			html.EscapeString(r.Header.Get("X-Forwarded-User")), html.EscapeString(r.Header.Get("X-Forwarded-Preferred-Username")),
			html.EscapeString(r.Header.Get("X-Forwarded-Email")), html.EscapeString(r.Header.Get("Cookie")),
			html.EscapeString(r.Header.Get("Authorization")), html.EscapeString(r.URL.RequestURI()))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *identityApp) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *identityApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

// countPath is how many requests for the request URI p it received (a
// browser also asks for /favicon.ico).
func (a *identityApp) countPath(p string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, q := range a.paths {
		if q == p {
			n++
		}
	}
	return n
}

// headers returns a copy of what every request so far carried.
func (a *identityApp) headers() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.seen...)
}

// startGate loads the built-in mode's config with a fresh storage file.
func startGate(t *testing.T) *identityApp {
	t.Helper()
	app := newIdentityApp(t)
	startCaddy(t, loginCaddyfile(t, storagePath(t), app.addr()))
	return app
}

// gateClient is a browser made of net/http: a cookie jar, no redirects
// followed, so that every hop can be checked.
type gateClient struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newGateClient(t *testing.T) *gateClient {
	jar, _ := cookiejar.New(nil)
	return &gateClient{t: t, jar: jar, c: &http.Client{Jar: jar, Transport: freshConns, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends req and returns the answer with its body read.
func (g *gateClient) do(req *http.Request) (*http.Response, string) {
	g.t.Helper()
	resp, err := g.c.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// get is GET u with optional header pairs.
func (g *gateClient) get(u string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req := newRequest(g.t, http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return g.do(req)
}

// startLogin requests target without a session and returns the
// authorization request the gate redirected to.
func (g *gateClient) startLogin(target, issuer string) *url.URL {
	g.t.Helper()
	resp, body := g.get(target)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusTemporaryRedirect {
		g.t.Fatalf("GET %s without a session: %d %q, want a redirect to %s/oauth/authorize: %s", target, resp.StatusCode, loc, issuer, body)
	}
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(loc, issuer+"/oauth/authorize?") {
		g.t.Fatalf("GET %s without a session: Location %q, want %s/oauth/authorize?…", target, loc, issuer)
	}
	q := u.Query()
	for _, p := range []string{"client_id", "redirect_uri", "state", "nonce", "code_challenge"} {
		if q.Get(p) == "" {
			g.t.Fatalf("the gate's authorization request lacks %s: %s", p, loc)
		}
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" || !strings.Contains(" "+q.Get("scope")+" ", " openid ") {
		g.t.Fatalf("the gate's authorization request is not an OIDC code flow with PKCE S256: %s", loc)
	}
	return u
}

// authorize signs user in at the authorization server (or reuses its
// sign-in session) and returns the redirect back to the gate's callback.
func (g *gateClient) authorize(authz *url.URL, user, pass string) *url.URL {
	g.t.Helper()
	resp, page := g.get(authz.String())
	if resp.StatusCode == http.StatusOK {
		form := formFields(g.t, page)
		form.Set("username", user)
		form.Set("password", pass)
		req := newRequest(g.t, http.MethodPost, authz.Scheme+"://"+authz.Host+"/oauth/authorize/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, page = g.do(req)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	redirectURI := authz.Query().Get("redirect_uri")
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" || !strings.HasPrefix(loc.String(), redirectURI+"?") {
		g.t.Fatalf("signing %s in at %s: %d %q, want a code for %s: %s", user, authz.Host, resp.StatusCode, resp.Header.Get("Location"), redirectURI, page)
	}
	return loc
}

// signIn runs the whole flow from target and returns the callback's
// answer (not followed) and the session cookie it set.
func (g *gateClient) signIn(target, issuer, user, pass string) (*http.Response, *http.Cookie) {
	g.t.Helper()
	cb := g.authorize(g.startLogin(target, issuer), user, pass)
	resp, body := g.get(cb.String())
	c := setCookie(resp, gateCookie)
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		g.t.Fatalf("callback: %d, want a redirect back to %s: %s", resp.StatusCode, target, body)
	}
	if c == nil || c.Value == "" {
		g.t.Fatalf("callback set no %s cookie: %v", gateCookie, resp.Header.Values("Set-Cookie"))
	}
	return resp, c
}

// setCookie is the named cookie a response sets, or nil.
func setCookie(resp *http.Response, name string) *http.Cookie {
	var found *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == name {
			found = c
		}
	}
	return found
}

// withCookie is GET u carrying exactly one cookie (no jar), with optional
// header pairs.
func withCookie(t *testing.T, u, name, value string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req := newRequest(t, http.MethodGet, u, nil)
	if name != "" {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return httpDo(t, req)
}

// wantLoginRedirect checks that an answer sends the browser to sign in at
// issuer and lets nothing through.
func wantLoginRedirect(t *testing.T, what string, resp *http.Response, body, issuer string) {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode < 300 || resp.StatusCode > 399 || !strings.HasPrefix(loc, issuer+"/oauth/authorize?") {
		t.Fatalf("%s: %d %q, want a redirect to %s/oauth/authorize: %s", what, resp.StatusCode, loc, issuer, body)
	}
	if strings.Contains(body, "user=") {
		t.Fatalf("%s: the upstream answered: %s", what, body)
	}
}

// revokeSubject revokes every grant of sub through the admin API (what
// `caddy oauth revoke --subject` calls).
func revokeSubject(t *testing.T, sub string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"subject": sub})
	req := newRequest(t, http.MethodPost, gateAdminIn+"/oauth/revoke", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, body := httpDo(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /oauth/revoke %s: %d %s", sub, resp.StatusCode, body)
	}
}

// browserCookie is a cookie as WebDriver reports it.
type browserCookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Path     string `json:"path"`
	HTTPOnly bool   `json:"httpOnly"`
	SameSite string `json:"sameSite"`
}

// browserCookies lists the cookies of the current page's host.
func browserCookies(wd *webDriver) []browserCookie {
	var out struct{ Value []browserCookie }
	wd.call(http.MethodGet, "/cookie", nil, &out)
	return out.Value
}

// execAsync runs an asynchronous script (it calls its last argument with
// the result) in the page.
func execAsync(wd *webDriver, script string, out any, args ...any) {
	wd.t.Helper()
	if args == nil {
		args = []any{}
	}
	var res struct{ Value json.RawMessage }
	wd.call(http.MethodPost, "/execute/async", map[string]any{"script": script, "args": args}, &res)
	if err := json.Unmarshal(res.Value, out); err != nil {
		wd.t.Fatalf("script result %s: %v", res.Value, err)
	}
}

// fetchResult is what a fetch() in the page saw.
type fetchResult struct {
	Status     int    `json:"status"`
	Redirected bool   `json:"redirected"`
	Body       string `json:"body"`
	Error      string `json:"error"`
}

const fetchScript = `const done = arguments[arguments.length - 1];
fetch(arguments[0], {credentials: arguments[1]})
	.then(r => r.text().then(b => done({status: r.status, redirected: r.redirected, body: b})))
	.catch(e => done({error: String(e)}));`

// TestGateLoginBrowser: Chromium opens a legacy page behind
// `oauth_protect { login }`, lands on the built-in login page, signs in,
// and sees the page with its identity; a reload needs no new sign-in;
// fetch() without the session is answered 401; the upstream never sees the
// session cookie or an Authorization header; the logout path ends the
// session and goes to the post-logout page; revoking the user signs the
// browser out at once.
func TestGateLoginBrowser(t *testing.T) {
	app := startGate(t)
	wd := startBrowser(t)

	page := gateWiki + "/wiki/Main_Page?action=view"
	wd.Navigate(page)
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, gateIssuer+"/oauth/authorize?") })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	if app.count() != 0 {
		t.Fatalf("the upstream was reached before sign-in: %v", app.headers())
	}
	wd.Type("#username", "alice")
	wd.Type("#password", alicePass+"\n")
	// Back on the page first asked for, with alice's identity.
	wd.WaitURL(func(u string) bool { return u == page })
	src := wd.WaitSource(func(src string) bool { return strings.Contains(src, "user=alice ") })
	if !strings.Contains(src, "name=alice ") || !strings.Contains(src, "email=alice@example.com") || !strings.Contains(src, "path=/wiki/Main_Page?action=view") {
		t.Fatalf("the upstream page lacks alice's identity headers or the path:\n%s", src)
	}

	// The session cookie: HttpOnly, SameSite=Lax, sealed (not a token).
	var session *browserCookie
	for _, c := range browserCookies(wd) {
		if c.Name == gateCookie {
			session = &c
		}
	}
	if session == nil {
		t.Fatalf("no %s cookie in the browser: %v", gateCookie, browserCookies(wd))
	}
	if !session.HTTPOnly || session.SameSite != "Lax" || session.Path != "/" {
		t.Fatalf("session cookie attributes: %+v, want HttpOnly, SameSite=Lax, Path=/", *session)
	}
	if strings.Count(session.Value, ".") == 2 || len(session.Value) > 4096 {
		t.Fatalf("session cookie looks like a bare JWT or is too large (%d bytes)", len(session.Value))
	}

	// A reload needs no sign-in: the cookie alone is a session. The legacy
	// app's own cookie reaches it; the session cookie never does.
	wd.Exec(`document.cookie = "legacy_pref=blue; path=/"; return null`, nil)
	const pagePath = "/wiki/Main_Page?action=view"
	before := app.countPath(pagePath)
	wd.Navigate(page)
	if u := wd.URL(); u != page {
		t.Fatalf("reload went to %s", u)
	}
	src = wd.WaitSource(func(src string) bool { return strings.Contains(src, "user=alice ") })
	if !strings.Contains(src, "legacy_pref=blue") {
		t.Fatalf("the legacy app's own cookie did not reach it:\n%s", src)
	}
	if app.countPath(pagePath) != before+1 {
		t.Fatalf("the reload reached the upstream %d times", app.countPath(pagePath)-before)
	}
	resp, body := withCookie(t, page, gateCookie, session.Value)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("the browser's session cookie from another client: %d %s", resp.StatusCode, body)
	}
	// A client-sent identity header never reaches the upstream.
	resp, body = withCookie(t, page, gateCookie, session.Value, "X-Forwarded-User", "mallory", "X-Forwarded-Email", "mallory@evil.example")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") || strings.Contains(body, "mallory") {
		t.Fatalf("with a session and forged identity headers: %d %s", resp.StatusCode, body)
	}
	// An Authorization header takes the bearer path even with a session
	// (docs/browser-login.md): a bad token is refused, never forwarded.
	resp, body = withCookie(t, page, gateCookie, session.Value, "Authorization", "Bearer forged")
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "user=") {
		t.Fatalf("with a session and a bad bearer token: %d %s", resp.StatusCode, body)
	}
	for i, h := range app.headers() {
		if ck := h.Get("Cookie"); strings.Contains(ck, gateCookie) || strings.Contains(ck, session.Value) {
			t.Fatalf("request %d reached the upstream with the session cookie: %q", i, ck)
		}
		if a := h.Get("Authorization"); a != "" {
			t.Fatalf("request %d reached the upstream with Authorization %q", i, a)
		}
	}

	// fetch() from the page: with the session it passes; without it the
	// gate answers 401 (a redirect to the login page would be useless to a
	// script), and so does a POST or a JSON request of a plain client.
	var fr fetchResult
	execAsync(wd, fetchScript, &fr, "/api/items", "same-origin")
	if fr.Status != http.StatusOK || !strings.Contains(fr.Body, "user=alice ") {
		t.Fatalf("fetch() with the session: %+v", fr)
	}
	execAsync(wd, fetchScript, &fr, "/api/items", "omit")
	if fr.Status != http.StatusUnauthorized || fr.Redirected || strings.Contains(fr.Body, "user=") {
		t.Fatalf("fetch() without the session: %+v, want 401", fr)
	}
	n := app.count()
	for _, hdr := range [][]string{{"Accept", "application/json"}, {"Sec-Fetch-Mode", "cors"}, {"X-Requested-With", "XMLHttpRequest", "Accept", "application/json"}} {
		resp, body := withCookie(t, gateWiki+"/api/items", "", "", hdr...)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
			t.Fatalf("GET with %v and no session: %d %q, want 401: %s", hdr, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	resp, body = httpDo(t, newRequest(t, http.MethodHead, page, nil))
	wantLoginRedirect(t, "HEAD without a session", resp, body, gateIssuer)
	resp, body = httpDo(t, newRequest(t, http.MethodPost, gateWiki+"/wiki/edit", strings.NewReader("x=1")))
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
		t.Fatalf("POST without a session: %d %q, want 401: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if app.count() != n {
		t.Fatal("a request without a session reached the upstream")
	}

	// Logout: the session ends, the browser lands on the post-logout page,
	// and the protected page needs the login page again (RP-initiated
	// logout ended the sign-in at the authorization server too).
	wd.Navigate(gateWiki + "/oauth2/logout")
	wd.WaitURL(func(u string) bool { return u == gateBye+"/bye" })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "signed out of the wiki") })
	wd.Navigate(gateWiki + "/")
	for _, c := range browserCookies(wd) {
		if c.Name == gateCookie && c.Value == session.Value {
			t.Fatal("the session cookie survived the logout")
		}
	}
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, gateIssuer+"/oauth/authorize?") })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	// The logged-out cookie is dead even if someone kept a copy.
	resp, body = withCookie(t, page, gateCookie, session.Value)
	wantLoginRedirect(t, "the session cookie after logout", resp, body, gateIssuer)

	// Sign in again, then the operator revokes alice: the next load
	// needs the login page at once.
	wd.Type("#username", "alice")
	wd.Type("#password", alicePass+"\n")
	wd.WaitURL(func(u string) bool { return u == gateWiki+"/" })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "user=alice ") })
	var second string
	for _, c := range browserCookies(wd) {
		if c.Name == gateCookie {
			second = c.Value
		}
	}
	revokeSubject(t, "alice")
	resp, body = withCookie(t, page, gateCookie, second)
	wantLoginRedirect(t, "the session cookie after revoking alice", resp, body, gateIssuer)
	n = app.count()
	wd.Navigate(page)
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, gateIssuer+"/oauth/authorize?") })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	if app.count() != n {
		t.Fatal("the upstream was reached after the user was revoked")
	}
}

// TestGateLoginAllowRules: allow_groups and allow_users refuse a signed-in
// user who is not named with a plain 403 page (not the upstream, not a
// sign-in loop), and let the named one through.
func TestGateLoginAllowRules(t *testing.T) {
	app := startGate(t)
	for _, site := range []string{gateAdmins, gateAlice} {
		bob := newGateClient(t)
		resp, _ := bob.signIn(site+"/report", gateIssuer, "bob", bobPass)
		if loc := resp.Header.Get("Location"); loc != "/report" && loc != site+"/report" {
			t.Fatalf("%s: callback Location %q, want back to /report", site, loc)
		}
		n := app.count()
		resp, body := bob.get(site + "/report")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
			t.Fatalf("%s: bob got %d %q, want 403: %s", site, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s: the 403 page is %q, want a plain page", site, resp.Header.Get("Content-Type"))
		}
		if strings.Contains(body, "user=") || app.count() != n {
			t.Fatalf("%s: bob's refused request reached the upstream", site)
		}
		// A script gets the 403 too, not a redirect to sign in again.
		resp, _ = bob.get(site+"/report", "Accept", "application/json")
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: bob's JSON request got %d, want 403", site, resp.StatusCode)
		}

		alice := newGateClient(t)
		alice.signIn(site+"/report", gateIssuer, "alice", alicePass)
		resp, body = alice.get(site + "/report")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
			t.Fatalf("%s: alice got %d: %s", site, resp.StatusCode, body)
		}
	}
}

// sameHostCaddyfile is the quick start's layout for browsers: the
// authorization server and two gated apps on one host name, different
// ports, over plain HTTP. Browsers send a host's cookies to all of its
// ports, so the second gate has its own cookie_name (with the same name,
// the two gates' sessions would replace each other).
func sameHostCaddyfile(t *testing.T, storage, upstreamA, upstreamB string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(alicePass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	skip_install_trust
	admin %s
	default_bind 127.0.0.1
	http_port 19150
	https_port 19151
	grace_period 1ns
	oauth {
		issuer http://localhost:19157
		storage_path %s
		user alice {
			password_hash %s
		}
	}
}
http://localhost:19157 {
	oauth_server
}
http://localhost:19158 {
	oauth_protect {
		audience http://localhost:19158
		forward_header X-Forwarded-User sub
		login
	}
	reverse_proxy %s
}
http://localhost:19159 {
	oauth_protect {
		audience http://localhost:19159
		forward_header X-Forwarded-User sub
		login {
			cookie_name tools_session
		}
	}
	reverse_proxy %s
}
`, adminAddr, storage, h, upstreamA, upstreamB)
}

// TestGateLoginIssuerSameHost: with the authorization server and two gates
// on one host (localhost:19157-19159, the quick start's layout), one
// browser signs in to both apps and keeps both sessions: a gate's session
// cookie, sent by the browser to the authorization server's port too, does
// not break the authorization server's own sign-in session (which another
// app of the host needs), and each upstream never sees its gate's cookie.
func TestGateLoginIssuerSameHost(t *testing.T) {
	appA, appB := newIdentityApp(t), newIdentityApp(t)
	startCaddy(t, sameHostCaddyfile(t, storagePath(t), appA.addr(), appB.addr()))
	const iss, a, b = "http://localhost:19157", "http://localhost:19158", "http://localhost:19159"
	g := newGateClient(t)
	authzA := g.startLogin(a+"/one", iss)
	cb := g.authorize(authzA, "alice", alicePass)
	resp, body := g.get(cb.String())
	sessA := setCookie(resp, gateCookie)
	if resp.StatusCode < 300 || resp.StatusCode > 399 || sessA == nil {
		t.Fatalf("first app's callback: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.get(a + "/one"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("first app after sign-in: %d %s", resp.StatusCode, body)
	}
	// Another app of the host signs in at the authorization server while
	// the gate's cookie is on the host: the server still knows the browser.
	again := *authzA
	q := again.Query()
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
	q.Set("state", randomCookie(16))
	again.RawQuery = q.Encode()
	if resp, page := g.get(again.String()); resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "code=") {
		t.Fatalf("authorization with the gate's session cookie on the host: %d %q: %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	// The second app: no password asked (the server's sign-in session).
	authz := g.startLogin(b+"/two", iss)
	resp, page := g.get(authz.String())
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorization for the second app with the first app's session on the host: %d %q: %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	resp, body = g.get(loc.String())
	sessB := setCookie(resp, "tools_session")
	if resp.StatusCode < 300 || resp.StatusCode > 399 || sessB == nil {
		t.Fatalf("second app's callback: %d %s", resp.StatusCode, body)
	}
	for _, u := range []string{b + "/two", a + "/one"} {
		if resp, body := g.get(u); resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
			t.Fatalf("%s with both apps signed in: %d %s", u, resp.StatusCode, body)
		}
	}
	for _, c := range []struct {
		app  *identityApp
		sess *http.Cookie
	}{{appA, sessA}, {appB, sessB}} {
		for i, h := range c.app.headers() {
			if ck := h.Get("Cookie"); strings.Contains(ck, c.sess.Name+"=") || strings.Contains(ck, c.sess.Value) {
				t.Fatalf("request %d reached the upstream with its gate's cookie: %q", i, ck)
			}
		}
	}
}

// TestGateLoginBearerToo: a route with `login` still takes bearer tokens
// (a script or service next to the browsers), with the same identity
// headers and the same allow rules: a token of a client that allow_users
// does not name is refused with 403 and the Bearer challenge, not sent to
// sign in.
func TestGateLoginBearerToo(t *testing.T) {
	app := startGate(t)
	tok := func(resource string) string {
		cfg := clientcredentials.Config{ClientID: "reporter", ClientSecret: "reporter-secret-0123456789abcdef",
			TokenURL: gateIssuer + "/oauth/token", EndpointParams: url.Values{"resource": {resource}}}
		tk, err := cfg.Token(clientContext(t))
		if err != nil {
			t.Fatalf("token for %s: %v", resource, err)
		}
		return tk.AccessToken
	}
	resp, body := callAPI(t, gateWiki+"/api", "Bearer "+tok(gateWiki))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=reporter ") || !strings.Contains(body, "authz=[]") {
		t.Fatalf("a bearer token at a login route: %d %s", resp.StatusCode, body)
	}
	n := app.count()
	resp, body = callAPI(t, gateAlice+"/api", "Bearer "+tok(gateAlice))
	if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") || app.count() != n {
		t.Fatalf("a token of a client allow_users does not name: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	// A token for the other gate's audience is not one for this gate.
	resp, body = callAPI(t, gateWiki+"/api", "Bearer "+tok(gateAlice))
	if resp.StatusCode != http.StatusUnauthorized || app.count() != n {
		t.Fatalf("a token for another audience at a login route: %d %s", resp.StatusCode, body)
	}
}

// TestGateLoginSessionRefresh: with access tokens of 3 seconds, a session
// outlives its first access token: the gate refreshes it with the
// refresh token (a new cookie) and the browser stays signed in; revoking
// the user then ends the refreshed session as well.
func TestGateLoginSessionRefresh(t *testing.T) {
	app := newIdentityApp(t)
	cfg := loginCaddyfile(t, storagePath(t), app.addr())
	cfg = strings.Replace(cfg, "\t\tuser alice {", "\t\taccess_token_ttl 3s\n\t\tuser alice {", 1)
	startCaddy(t, cfg)
	page := gateWiki + "/refresh"
	_, first := newGateClient(t).signIn(page, gateIssuer, "alice", alicePass)
	time.Sleep(4 * time.Second) // the session's access token has expired
	resp, body := withCookie(t, page, gateCookie, first.Value)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("a session whose access token expired: %d %s", resp.StatusCode, body)
	}
	next := setCookie(resp, gateCookie)
	if next == nil || next.Value == "" || next.Value == first.Value {
		t.Fatalf("the refreshed session set no new cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	time.Sleep(4 * time.Second) // and the refreshed one's too
	resp, body = withCookie(t, page, gateCookie, next.Value)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("the refreshed session after its access token expired: %d %s", resp.StatusCode, body)
	}
	last := next.Value
	if c := setCookie(resp, gateCookie); c != nil && c.Value != "" {
		last = c.Value
	}
	revokeSubject(t, "alice")
	for i, v := range []string{first.Value, next.Value, last} {
		resp, body := withCookie(t, page, gateCookie, v)
		wantLoginRedirect(t, fmt.Sprintf("session cookie %d of 3 (signed in, refreshed, refreshed again) after revoking alice", i+1), resp, body, gateIssuer)
	}
}

// gateTLS is a gate served over TLS (Caddy's internal CA) next to the
// built-in config.
const gateTLS = "https://localhost:19165"

// TestGateLoginTLSCookie: over TLS the session cookie is
// __Host-oauthgate_app: Secure, HttpOnly, SameSite=Lax, Path=/ and no
// Domain, so no other host or port of the site can set or read one of
// that name; the sign-in cookie is as strict.
func TestGateLoginTLSCookie(t *testing.T) {
	app := newIdentityApp(t)
	cfg := loginCaddyfile(t, storagePath(t), app.addr()) + fmt.Sprintf(`
https://localhost:19165 {
	tls internal
	oauth_protect {
		audience %s
		forward_header X-Forwarded-User sub
		login
	}
	reverse_proxy %s
}
`, gateTLS, app.addr())
	startCaddy(t, cfg)
	g := newGateClient(t)
	g.c.Transport = &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}

	// Caddy issues the internal certificate in the background: wait for it.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := (&http.Client{Transport: g.c.Transport, CheckRedirect: g.c.CheckRedirect}).Get(gateTLS + "/page")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS at %s: %v", gateTLS, err)
		}
	}
	resp, body := g.get(gateTLS + "/page")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET over TLS without a session: %d %s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if !c.Secure || !c.HttpOnly || c.Domain != "" {
			t.Fatalf("sign-in cookie %s over TLS: Secure %v, HttpOnly %v, Domain %q", c.Name, c.Secure, c.HttpOnly, c.Domain)
		}
	}
	authz, _ := url.Parse(resp.Header.Get("Location"))
	if authz.Query().Get("redirect_uri") != gateTLS+"/oauth2/callback" {
		t.Fatalf("redirect_uri over TLS: %s", resp.Header.Get("Location"))
	}
	g.jar.SetCookies(&url.URL{Scheme: "https", Host: "localhost:19165", Path: "/"}, resp.Cookies())
	cb := g.authorize(authz, "alice", alicePass)
	resp, body = g.get(cb.String())
	c := setCookie(resp, "__Host-"+gateCookie)
	if resp.StatusCode < 300 || resp.StatusCode > 399 || c == nil || c.Value == "" {
		t.Fatalf("callback over TLS: %d, cookies %v: %s", resp.StatusCode, resp.Header.Values("Set-Cookie"), body)
	}
	if setCookie(resp, gateCookie) != nil {
		t.Fatal("over TLS the callback also set an unprefixed session cookie")
	}
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("session cookie over TLS: %+v", c)
	}
	resp, body = g.get(gateTLS + "/page")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("over TLS with the session: %d %s", resp.StatusCode, body)
	}
	// The unprefixed name is not the session over TLS.
	req := newRequest(t, http.MethodGet, gateTLS+"/page", nil)
	req.AddCookie(&http.Cookie{Name: gateCookie, Value: c.Value})
	resp, body = (&gateClient{t: t, c: &http.Client{Transport: g.c.Transport, CheckRedirect: g.c.CheckRedirect}}).do(req)
	wantLoginRedirect(t, "the session value under the unprefixed name over TLS", resp, body, gateIssuer)
}
