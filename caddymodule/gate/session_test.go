package gate

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// sessionRequest is a request to the gate with only the session cookie.
func sessionRequest(target, cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.AddCookie(&http.Cookie{Name: "__Host-oauthgate_app", Value: cookie})
	r.TLS = tlsState
	r, _ = caddyRequest(r)
	return r
}

// serveGate runs one request through the gate; ok says the upstream got it.
func serveGate(p *Protect, r *http.Request) (w *httptest.ResponseRecorder, ok bool) {
	w = httptest.NewRecorder()
	_ = p.ServeHTTP(w, r, handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ok = true
		return nil
	}))
	return w, ok
}

// TestSessionRefresh: a session whose access token expires within a
// minute is refreshed in process; the parallel requests of one page all
// pass and get the same new cookie (one refresh, no reuse detected), and
// the new session refreshes again later.
func TestSessionRefresh(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	old := b.session("app.test")
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
	var wg sync.WaitGroup
	var mu sync.Mutex
	values := map[string]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, ok := serveGate(p, sessionRequest("https://app.test/asset", old))
			mu.Lock()
			defer mu.Unlock()
			if !ok || w.Code != http.StatusOK {
				t.Errorf("parallel request during refresh: %d", w.Code)
			}
			for _, c := range w.Result().Cookies() {
				if c.Name == "__Host-oauthgate_app" {
					values[c.Value]++
				}
			}
		}()
	}
	wg.Wait()
	if len(values) != 1 {
		t.Fatalf("the parallel requests got %d different new cookies, want 1", len(values))
	}
	var renewed string
	for v, n := range values {
		renewed = v
		if n != 8 || v == old || v == "" {
			t.Fatalf("new cookie set on %d of 8 answers (changed %v)", n, v != old)
		}
	}
	p.login.now = time.Now
	if w, ok := serveGate(p, sessionRequest("https://app.test/", renewed)); !ok || len(w.Result().Cookies()) != 0 {
		t.Fatalf("the renewed session: passed %v, cookies %v", ok, w.Result().Cookies())
	}
	// When its token nears expiry the renewed session refreshes again:
	// its refresh token is the rotated one, not a reused one.
	p.login.sessions = newSessionCache()
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
	w, ok := serveGate(p, sessionRequest("https://app.test/", renewed))
	if !ok || len(w.Result().Cookies()) != 1 {
		t.Fatalf("second refresh: passed %v, cookies %v", ok, w.Result().Cookies())
	}
}

// TestRefreshedSessionRevoked: after a refresh, the replaced cookie is
// answered with its successor for a while (a page's parallel requests);
// that successor is checked like any session, so once the user is
// revoked neither the old nor the new cookie passes.
func TestRefreshedSessionRevoked(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	old := b.session("app.test")
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
	w, ok := serveGate(p, sessionRequest("https://app.test/", old))
	if !ok || len(w.Result().Cookies()) != 1 {
		t.Fatalf("refresh: passed %v, cookies %v", ok, w.Result().Cookies())
	}
	renewed := w.Result().Cookies()[0].Value
	if _, err := app.eng.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"the replaced cookie": old, "the renewed cookie": renewed} {
		if w, ok := serveGate(p, sessionRequest("https://app.test/", v)); ok || w.Code != http.StatusFound {
			t.Errorf("%s after revoking the user: passed %v, status %d; want a redirect to sign in", name, ok, w.Code)
		}
	}
}

// TestSessionRevoked: revoking the user (or the grant) ends the session
// at the next request, not when its access token expires.
func TestSessionRevoked(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	if rec := b.get("https://app.test/x"); rec.Code != http.StatusOK {
		t.Fatalf("before revocation: %d", rec.Code)
	}
	if _, err := app.eng.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	rec := b.get("https://app.test/x")
	if rec.Code != http.StatusFound || b.seen != nil {
		t.Fatalf("after revocation: %d, upstream reached %v; want a redirect to sign in", rec.Code, b.seen != nil)
	}
	if b.session("app.test") != "" {
		t.Error("the revoked session's cookie was not cleared")
	}
}

// TestAllowRules: allow_users and allow_groups apply to sessions (a
// plain 403 page) and to tokens (403 with the Bearer challenge).
func TestAllowRules(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	for _, tt := range []struct {
		rules string
		alice bool
		bob   bool
	}{
		{"allow_users bob", false, true},
		{"allow_groups admins", true, false},
		{"allow_groups nobody\n allow_users bob", false, true},
		{"groups_claim roles\n allow_groups admins", false, false},
	} {
		p := loginGate(t, app, "oauth_protect {\n audience https://app.test\n login\n "+tt.rules+"\n}")
		for user, want := range map[string]bool{"alice": tt.alice, "bob": tt.bob} {
			b := newTestBrowser(t, app.eng, p)
			rec := b.visit("https://app.test/", user)
			switch {
			case want && rec.Code != http.StatusOK:
				t.Errorf("%q: %s refused (%d)", tt.rules, user, rec.Code)
			case !want && (rec.Code != http.StatusForbidden || b.seen != nil || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html")):
				t.Errorf("%q: %s got %d, want the 403 page", tt.rules, user, rec.Code)
			case !want && (strings.Contains(rec.Body.String(), "admins") || strings.Contains(rec.Body.String(), "bob")):
				t.Errorf("the 403 page tells the rules: %s", rec.Body)
			}
		}
	}
	// Tokens: the client_credentials token's subject is svc.
	for rules, want := range map[string]int{"allow_users alice": http.StatusForbidden, "allow_users svc": http.StatusOK, "allow_groups admins": http.StatusForbidden} {
		p, token := startedGate(t, "oauth_protect {\n audience https://api.test\n "+rules+"\n}")
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		r.Header.Set("Authorization", "Bearer "+token)
		r, _ = caddyRequest(r)
		w, ok := serveGate(p, r)
		if w.Code != want || ok != (want == http.StatusOK) {
			t.Errorf("%s: token got %d", rules, w.Code)
		}
		if want == http.StatusForbidden && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer realm="https://api.test"`) {
			t.Errorf("%s: challenge %q", rules, w.Header().Get("WWW-Authenticate"))
		}
	}
}

// TestLogout: logout clears the cookie, revokes the refresh token and
// sends the browser to the provider's end_session_endpoint with the
// configured post-logout URI; no request parameter can change it.
func TestLogout(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	old := b.session("app.test")
	rec := b.get("https://app.test/oauth2/logout?post_logout_redirect_uri=https://evil.example/")
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || loc == nil || loc.Host != "as.test" || loc.Path != "/oauth/logout" {
		t.Fatalf("logout: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	q := loc.Query()
	if q.Get("post_logout_redirect_uri") != "https://app.test/" || q.Get("id_token_hint") == "" || q.Get("client_id") == "" {
		t.Errorf("end session request %v", q)
	}
	if b.session("app.test") != "" {
		t.Error("the session cookie was not cleared")
	}
	// The old cookie no longer refreshes: its refresh token is revoked
	// (before the browser even reaches the provider's logout).
	p.login.sessions = newSessionCache()
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
	if _, ok := serveGate(p, sessionRequest("https://app.test/", old)); ok {
		t.Error("the logged-out session still passes")
	}
	p.login.now = time.Now
	// The provider's logout takes the request and returns to the app.
	if rec := b.get(loc.String()); rec.Code != http.StatusFound && rec.Code != http.StatusSeeOther && rec.Code != http.StatusOK {
		t.Errorf("the provider's logout answered %d", rec.Code)
	}
	// A provider without end_session_endpoint: straight to the
	// post-logout URI.
	rp, err := p.login.relyingParty(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rp.endSession = ""
	if rec := b.get("https://app.test/oauth2/logout"); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "https://app.test/" {
		t.Errorf("logout without end_session_endpoint: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	// POST works too; other methods do not.
	r := httptest.NewRequest(http.MethodPost, "https://app.test/oauth2/logout", nil)
	if rec := b.do(r); rec.Code != http.StatusSeeOther {
		t.Errorf("POST logout: %d", rec.Code)
	}
	r = httptest.NewRequest(http.MethodPut, "https://app.test/oauth2/logout", nil)
	if rec := b.do(r); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT logout: %d", rec.Code)
	}
}

// TestLoginProvision: the login block and the rules are checked with
// errors that say what to fix.
func TestLoginProvision(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"oauth_protect {\n audience https://a.test\n login\n}", "needs the `oauth` global option"},
		{"oauth_protect {\n audience https://a.test\n login {\n client_id x\n }\n}", "for an external provider"},
		{"oauth_protect {\n audience https://a.test\n login {\n issuer https://idp.test\n }\n}", "needs client_id"},
		{"oauth_protect {\n audience https://a.test\n login {\n issuer http://idp.test\n client_id x\n }\n}", "https URL"},
		{"oauth_protect {\n audience urn:x:y\n login {\n issuer https://idp.test\n client_id x\n }\n}", "needs redirect_uri"},
		{"oauth_protect {\n audience https://a.test\n login {\n cookie_name __Host-x\n }\n}", "cookie_name"},
		{"oauth_protect {\n audience https://a.test\n login {\n callback_path /a\n logout_path /a\n }\n}", "must differ"},
		{"oauth_protect {\n audience https://a.test\n login {\n callback_path a\n }\n}", "starting with /"},
		{"oauth_protect {\n audience https://a.test\n login {\n redirect_uri /cb\n }\n}", "absolute http(s) URL"},
		{"oauth_protect {\n audience https://a.test\n login {\n session_ttl soon\n }\n}", "invalid duration"},
		{"oauth_protect {\n audience https://a.test\n login {\n colour blue\n }\n}", "unknown option"},
		{"oauth_protect {\n audience https://a.test\n login\n login\n}", "given twice"},
		{"oauth_protect {\n audience https://a.test\n login https://idp.test\n}", "takes no arguments"},
		{"oauth_protect {\n audience https://a.test\n groups_claim \"a b\"\n}", "groups_claim"},
	} {
		_, err := provisionProtect(tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one containing %q", tt.src, err, tt.want)
		}
	}
	// The contract's full syntax loads.
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, `oauth_protect {
	audience https://wiki.example.com
	forward_header X-Forwarded-User sub
	allow_users alice bob
	allow_groups admins
	groups_claim groups
	login {
		scopes openid profile email
		redirect_uri https://wiki.example.com/oauth2/callback
		callback_path /oauth2/callback
		logout_path /oauth2/logout
		post_logout_redirect_uri https://wiki.example.com/
		cookie_name oauthgate_session
		session_ttl 12h
	}
}`)
	if ls := p.login; ls.callbackPath != "/oauth2/callback" || ls.sessionTTL != 12*time.Hour || ls.external {
		t.Errorf("login state %+v", ls)
	}
}

// TestExternalLogin: the same browser mode against an external OpenID
// provider (here our own engine, reached as any provider: discovery,
// JWKS, a confidential client with a secret), with no oauth app in the
// gate: the session key is made once in Caddy's storage, the session
// ends after session_ttl, and the provider's access token is refreshed.
func TestExternalLogin(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	t.Setenv("EXT_SECRET", extSecret)
	toks := `oauth_protect {
	audience https://ext.test
	forward_header X-Forwarded-User preferred_username
	login {
		issuer https://as.test
		client_id ext
		client_secret {env.EXT_SECRET}
		session_ttl 1h
	}
}`
	st := &memStorage{m: map[string][]byte{}}
	p := externalLoginGate(t, toks, st, app)
	b := newTestBrowser(t, app.eng, p)
	rec := b.visit("https://ext.test/page", "alice")
	if rec.Code != http.StatusOK || b.seen.Header.Get("X-Forwarded-User") != "alice" {
		t.Fatalf("sign-in: %d as %q\n%s", rec.Code, b.seen.Header.Get("X-Forwarded-User"), rec.Body)
	}
	if len(st.m[sessionKeyName]) != 32 || st.stores != 1 {
		t.Fatalf("session key in storage: %d bytes, %d stores", len(st.m[sessionKeyName]), st.stores)
	}
	// A second gate on the same storage opens the first one's cookies.
	p2 := externalLoginGate(t, toks, st, app)
	if _, ok := serveGate(p2, sessionRequest("https://ext.test/", b.session("ext.test"))); !ok || st.stores != 1 {
		t.Fatalf("second gate: passed %v, stores %d", ok, st.stores)
	}
	// A bearer token is no session, and there is no app to check it.
	r := httptest.NewRequest(http.MethodGet, "https://ext.test/", nil)
	r.Header.Set("Authorization", "Bearer x")
	if rec := b.do(r); rec.Code != http.StatusUnauthorized {
		t.Errorf("bearer at an external-only gate: %d", rec.Code)
	}
	// The provider's access token expires: refreshed, new cookie.
	value := b.session("ext.test")
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
	w, ok := serveGate(p, sessionRequest("https://ext.test/", value))
	if !ok || len(w.Result().Cookies()) != 1 || w.Result().Cookies()[0].MaxAge <= 0 {
		t.Fatalf("refresh: passed %v, cookies %v", ok, w.Result().Cookies())
	}
	// After session_ttl the browser signs in again.
	p.login.now = func() time.Time { return time.Now().Add(61 * time.Minute) }
	if w, ok := serveGate(p, sessionRequest("https://ext.test/", w.Result().Cookies()[0].Value)); ok || w.Code != http.StatusFound {
		t.Fatalf("after session_ttl: passed %v, status %d", ok, w.Code)
	}
	// Logout goes to the provider with the client's post-logout URI.
	p.login.now = time.Now
	rec = b.get("https://ext.test/oauth2/logout")
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "https://as.test/oauth/logout?") ||
		!strings.Contains(loc, "post_logout_redirect_uri=https%3A%2F%2Fext.test%2F") {
		t.Errorf("logout: %d to %q", rec.Code, loc)
	}
}

// externalLoginGate provisions an external-mode gate without the oauth app,
// whose provider requests go to app's engine.
func externalLoginGate(t *testing.T, src string, st storageLike, app loginIssuer) *Protect {
	t.Helper()
	p := new(Protect)
	p.sessionStorage = st
	toks, err := tokenize(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UnmarshalCaddyfile(toks); err != nil {
		t.Fatal(err)
	}
	if err := p.provisionWith(nil); err != nil {
		t.Fatal(err)
	}
	p.login.externalClient = &http.Client{Transport: app.eng.InProcessTransport()}
	return p
}

// TestProviderUnavailable: while discovery fails the gate answers 503
// with Retry-After (never 500), and tries again later.
func TestProviderUnavailable(t *testing.T) {
	p := new(Protect)
	p.sessionStorage = &memStorage{m: map[string][]byte{}}
	toks, _ := tokenize("oauth_protect {\n audience https://ext.test\n login {\n issuer https://down.test\n client_id x\n }\n}")
	if err := p.UnmarshalCaddyfile(toks); err != nil {
		t.Fatal(err)
	}
	if err := p.provisionWith(nil); err != nil {
		t.Fatal(err)
	}
	calls := 0
	p.login.externalClient = &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		calls++
		return nil, io.ErrUnexpectedEOF
	})}
	for range 3 {
		w, ok := serveGate(p, sessionRequest("https://ext.test/", ""))
		if ok || w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("provider down: %d", w.Code)
		}
	}
	if calls != 1 {
		t.Errorf("discovery tried %d times in a row, want once until the retry time", calls)
	}
	p.login.now = func() time.Time { return time.Now().Add(rpRetryAfter + time.Second) }
	serveGate(p, sessionRequest("https://ext.test/", ""))
	if calls != 2 {
		t.Errorf("discovery not retried after %v (%d calls)", rpRetryAfter, calls)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSessionKey: the session key of a gate without the oauth app is
// made once and then loaded.
func TestSessionKey(t *testing.T) {
	st := &memStorage{m: map[string][]byte{}}
	s1, err := loadSessionSealer(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := loadSessionSealer(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	sealed := s1.Seal([]byte("a"), []byte("hello"))
	if got, err := s2.Open([]byte("a"), sealed); err != nil || string(got) != "hello" || st.stores != 1 || st.locks != 1 {
		t.Fatalf("open %q %v, %d stores, %d locks", got, err, st.stores, st.locks)
	}
	if _, err := tokens.NewSealer(st.m[sessionKeyName]); err != nil {
		t.Fatal(err)
	}
}

// TestRefreshDue: a session is refreshed a minute before its access
// token expires, or half-way through a shorter token's lifetime — not
// on every request.
func TestRefreshDue(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tt := range []struct {
		name           string
		issued, expiry int64
		at             time.Duration
		due            bool
	}{
		{"10m token after 5m", 1_000_000, 1_000_600, 5 * time.Minute, false},
		{"10m token 30s before expiry", 1_000_000, 1_000_600, 9*time.Minute + 30*time.Second, true},
		{"10s token after 2s", 1_000_000, 1_000_010, 2 * time.Second, false},
		{"10s token after 6s", 1_000_000, 1_000_010, 6 * time.Second, true},
		{"expired", 1_000_000, 1_000_010, time.Minute, true},
		{"unknown issue time: a minute before", 0, 1_000_010, 0, true},
		{"no expiry", 1_000_000, 0, time.Hour, false},
	} {
		d := sessionData{Issued: tt.issued, Expiry: tt.expiry}
		if got := d.refreshDue(t0.Add(tt.at)); got != tt.due {
			t.Errorf("%s: due %v, want %v", tt.name, got, tt.due)
		}
	}
}
