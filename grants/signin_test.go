package grants

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

const wrongCredentials = "The user name or password is wrong."

// sealAt is seal with a chosen time stamp.
func sealAt(w *web, v any, csrf string, at time.Time) string {
	b, _ := json.Marshal(struct {
		V  any   `json:"v"`
		At int64 `json:"at"`
	}{v, at.Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + w.mac(payload, csrf)
}

// setSession stores a session for user signed in at authTime and gives
// the browser its cookie.
func (b *browser) setSession(user string, authTime time.Time) {
	b.t.Helper()
	tok := newSecretToken()
	err := b.e.store.Update(context.Background(), func(tx storage.Tx) error {
		return putJSON(tx, storage.KindSessions, hashToken(tok), &sessionRecord{User: user, AuthTime: authTime.Unix()}, time.Now().Add(time.Hour))
	})
	if err != nil {
		b.t.Fatal(err)
	}
	b.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: tok}
}

func setCookie(t testing.TB, rec *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func countRecords(t testing.TB, e *Engine, kind storage.Kind) int {
	t.Helper()
	n := 0
	err := e.store.View(context.Background(), func(tx storage.Tx) error {
		return tx.ForEach(kind, func(string, storage.Record) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantRedirect checks a successful or failed authorization response.
func wantRedirect(t testing.TB, rec *httptest.ResponseRecorder, client, state string) url.Values {
	t.Helper()
	loc := mustLocation(t, rec)
	if base := loc.Scheme + "://" + loc.Host + loc.Path; base != testRedirect[client] {
		t.Fatalf("redirected to %s", loc)
	}
	v := loc.Query()
	if v.Get("state") != state || v.Get("iss") != testIssuer {
		t.Fatalf("state/iss wrong in %s", loc)
	}
	return v
}

// The whole browser flow for an untrusted client: login, consent page,
// deny, then allow.
func TestSignInFlowUntrusted(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	_, ch := newPKCE()
	q := authzQuery("c-web", ch, "scope", "openid email read", "nonce", "n-1").Encode()

	page := b.get(AuthorizePath + "?" + q)
	if page.Code != http.StatusOK || !isLoginPage(page) {
		t.Fatalf("want the login page, got %d:\n%s", page.Code, page.Body.String())
	}
	checkPageHeaders(t, page)
	csrfC := setCookie(t, page, csrfCookie)
	if csrfC == nil || !csrfC.HttpOnly || csrfC.SameSite != http.SameSiteStrictMode || csrfC.Path != "/oauth/" || len(csrfC.Value) != 43 {
		t.Fatalf("csrf cookie = %+v", csrfC)
	}
	if setCookie(t, page, sessionCookie) != nil {
		t.Fatalf("a session before sign-in")
	}
	if _, csrf := formFields(t, page.Body.String()); csrf != csrfC.Value {
		t.Fatalf("csrf field %q differs from cookie %q", csrf, csrfC.Value)
	}
	if !strings.Contains(page.Body.String(), `action="/oauth/authorize/login"`) {
		t.Fatalf("login form action:\n%s", page.Body.String())
	}

	consent := b.login(page, "alice", "alice-pw")
	if consent.Code != http.StatusOK || !isConsentPage(consent) {
		t.Fatalf("want the consent page, got %d:\n%s", consent.Code, consent.Body.String())
	}
	checkPageHeaders(t, consent)
	// Described scopes show their description, others themselves.
	for _, s := range []string{`<li title="openid">Know who you are</li>`, `<li title="email">See your email address</li>`, "<li><code>read</code></li>", "c-web", "alice"} {
		if !strings.Contains(consent.Body.String(), s) {
			t.Errorf("consent page lacks %q", s)
		}
	}
	if strings.Contains(consent.Body.String(), "<code>write</code>") {
		t.Errorf("consent page lists a scope not asked for")
	}
	if setCookie(t, consent, sessionCookie) == nil {
		t.Fatalf("no session cookie after sign-in")
	}
	if n := countRecords(t, e, storage.KindSessions); n != 1 {
		t.Fatalf("%d sessions stored", n)
	}

	denied := b.consent(consent, "deny")
	v := wantRedirect(t, denied, "c-web", "st-123")
	if v.Get("error") != "access_denied" || v.Has("code") {
		t.Fatalf("deny: %s", denied.Header().Get("Location"))
	}
	if n := countRecords(t, e, storage.KindCodes); n != 0 {
		t.Fatalf("deny stored %d codes", n)
	}

	// A deny is not remembered: the next request asks again.
	consent = b.get(AuthorizePath + "?" + q)
	if consent.Code != http.StatusOK || !isConsentPage(consent) {
		t.Fatalf("want the consent page again, got %d", consent.Code)
	}
	allowed := b.consent(consent, "allow")
	if allowed.Code != http.StatusFound {
		t.Fatalf("allow: status %d (AZ-14: 302/303, never 307)", allowed.Code)
	}
	v = wantRedirect(t, allowed, "c-web", "st-123")
	if v.Get("code") == "" || v.Has("error") {
		t.Fatalf("allow: %s", allowed.Header().Get("Location"))
	}
	if len(v.Get("code")) < 43 {
		t.Fatalf("code %q is shorter than 256 bits", v.Get("code"))
	}
}

// A trusted client skips the consent page.
func TestSignInTrustedClient(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
	rec := b.login(page, "alice", "alice-pw")
	if rec.Code != http.StatusFound {
		t.Fatalf("want a 302, got %d:\n%s", rec.Code, rec.Body.String())
	}
	if v := wantRedirect(t, rec, "c-trusted", "st-123"); v.Get("code") == "" {
		t.Fatalf("no code")
	}
	if setCookie(t, rec, sessionCookie) == nil {
		t.Fatalf("no session cookie")
	}
}

// Wrong password and unknown user fail the same way (no user enumeration), and set no
// session.
func TestLoginFailures(t *testing.T) {
	t.Parallel()
	// The throttle is tested on its own; here it must not interfere.
	e := newEngine(t, withConfig(func(c *Config) { c.Web.Throttle.MaxFailures = 100 }))
	tests := []struct {
		name, user, pw, msg string
	}{
		{"wrong password", "alice", "nope", wrongCredentials},
		{"other user's password", "alice", "bob-pw", wrongCredentials},
		{"password case", "alice", "ALICE-PW", wrongCredentials},
		{"user name case", "Alice", "alice-pw", wrongCredentials},
		{"unknown user", "mallory", "alice-pw", wrongCredentials},
		{"unknown user with the dummy hash's password", "mallory", dummyPassword, wrongCredentials},
		{"empty password", "alice", "", "Enter your user name and password."},
		{"empty user", "", "alice-pw", "Enter your user name and password."},
		{"oversized password", "alice", strings.Repeat("x", 1025), wrongCredentials},
		{"oversized user name", strings.Repeat("a", 201), "alice-pw", wrongCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t, e)
			page := b.get(AuthorizePath + "?" + authzQuery("c-trusted", newChallenge()).Encode())
			rec := b.login(page, tt.user, tt.pw)
			// RFC 9110 §15.5.2: a 401 must carry WWW-Authenticate, which
			// a form sign-in has none of; the form comes back with 200.
			if rec.Code != http.StatusOK || !isLoginPage(rec) || rec.Header().Get("WWW-Authenticate") != "" {
				t.Fatalf("want the login page with 200 and no WWW-Authenticate, got %d %q:\n%s",
					rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body.String())
			}
			checkPageHeaders(t, rec)
			if !strings.Contains(rec.Body.String(), tt.msg) {
				t.Fatalf("page lacks %q:\n%s", tt.msg, rec.Body.String())
			}
			if setCookie(t, rec, sessionCookie) != nil || rec.Header().Get("Location") != "" {
				t.Fatalf("failed sign-in set a session or redirected")
			}
			// The page offers a fresh form that still works.
			ok := b.login(rec, "alice", "alice-pw")
			if ok.Code != http.StatusFound {
				t.Fatalf("retry after failure: %d", ok.Code)
			}
		})
	}
	if n := countRecords(t, e, storage.KindCodes); n != len(tests) {
		t.Fatalf("%d codes, want %d (one per successful retry)", n, len(tests))
	}
}

// CSRF and sealed-state checks on the login and consent forms.
func TestFormCSRF(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	// Each transaction needs its own challenge.
	q := func() string { return authzQuery("c-web", newChallenge()).Encode() }
	other := tokens.RandomID(32)
	tamper := func(s string) string {
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	type formCase struct {
		name string
		// mod changes the form and the browser's cookies.
		mod    func(b *browser, f url.Values)
		status int
	}
	cases := []formCase{
		{"control: untouched", func(*browser, url.Values) {}, 0},
		{"csrf field differs from cookie", func(_ *browser, f url.Values) { f.Set("csrf", other) }, http.StatusForbidden},
		{"no csrf field", func(_ *browser, f url.Values) { f.Del("csrf") }, http.StatusForbidden},
		{"no csrf cookie", func(b *browser, _ url.Values) { delete(b.cookies, csrfCookie) }, http.StatusForbidden},
		{"cookie and field both changed", func(b *browser, f url.Values) {
			f.Set("csrf", other)
			b.cookies[csrfCookie] = &http.Cookie{Name: csrfCookie, Value: other}
		}, http.StatusForbidden},
		{"tampered state payload", func(_ *browser, f url.Values) { f.Set("state", tamper(f.Get("state"))) }, http.StatusForbidden},
		{"tampered state signature", func(_ *browser, f url.Values) {
			s := f.Get("state")
			f.Set("state", s[:len(s)-2]+"AA")
		}, http.StatusForbidden},
		{"state without signature", func(_ *browser, f url.Values) {
			f.Set("state", strings.SplitN(f.Get("state"), ".", 2)[0])
		}, http.StatusForbidden},
		{"no state", func(_ *browser, f url.Values) { f.Del("state") }, http.StatusForbidden},
	}
	// Forms sealed by the server itself, in the past or for another
	// browser's csrf token.
	sealed := func(name string, at time.Time, forOther bool, status int, v func(ar authzRequest) any) formCase {
		return formCase{name, func(b *browser, f url.Values) {
			csrf := f.Get("csrf")
			if forOther {
				csrf = other
			}
			var ar authzRequest
			var ls loginState
			var cs consentState
			if e.web.unseal(f.Get("state"), f.Get("csrf"), &ls) {
				ar = ls.Request
			} else if e.web.unseal(f.Get("state"), f.Get("csrf"), &cs) {
				ar = cs.Request
			}
			f.Set("state", sealAt(e.web, v(ar), csrf, at))
		}, status}
	}
	login := func(ar authzRequest) any { return loginState{Request: ar} }
	consent := func(ar authzRequest) any { return consentState{Request: ar, User: "alice"} }

	t.Run("login", func(t *testing.T) {
		all := slices.Concat(cases, []formCase{
			sealed("control: resealed now", time.Now(), false, 0, login),
			sealed("resealed 14 minutes ago", time.Now().Add(-14*time.Minute), false, 0, login),
			sealed("expired state", time.Now().Add(-16*time.Minute), false, http.StatusForbidden, login),
			sealed("state sealed for another csrf", time.Now(), true, http.StatusForbidden, login),
			sealed("redirect no longer registered", time.Now(), false, http.StatusBadRequest, func(ar authzRequest) any {
				ar.RedirectURI = "https://evil.test/cb"
				return loginState{Request: ar}
			}),
		})
		for _, tt := range all {
			t.Run(tt.name, func(t *testing.T) {
				b := newBrowser(t, e)
				page := b.get(AuthorizePath + "?" + q())
				state, csrf := formFields(t, page.Body.String())
				f := url.Values{"state": {state}, "csrf": {csrf}, "username": {"alice"}, "password": {"alice-pw"}}
				tt.mod(b, f)
				sessions := countRecords(t, e, storage.KindSessions)
				rec := b.post(AuthorizePath+"/login", f)
				if tt.status == 0 {
					if rec.Code != http.StatusOK || !isConsentPage(rec) {
						t.Fatalf("control failed: %d:\n%s", rec.Code, rec.Body.String())
					}
					return
				}
				wantErrorPage(t, rec, tt.status)
				if setCookie(t, rec, sessionCookie) != nil {
					t.Fatalf("refused form set a session cookie")
				}
				if n := countRecords(t, e, storage.KindSessions); n != sessions {
					t.Fatalf("refused form stored a session")
				}
			})
		}
	})

	t.Run("consent", func(t *testing.T) {
		all := slices.Concat(cases, []formCase{
			sealed("control: resealed now", time.Now(), false, 0, consent),
			sealed("expired state", time.Now().Add(-16*time.Minute), false, http.StatusForbidden, consent),
			sealed("state sealed for another csrf", time.Now(), true, http.StatusForbidden, consent),
			sealed("login state posted as consent", time.Now(), false, http.StatusBadRequest, login),
			sealed("consent sealed for another user", time.Now(), false, http.StatusBadRequest, func(ar authzRequest) any {
				return consentState{Request: ar, User: "bob"}
			}),
		})
		for _, tt := range all {
			t.Run(tt.name, func(t *testing.T) {
				b := newBrowser(t, e)
				// prompt=consent: the control case's allow is remembered.
				page := b.login(b.get(AuthorizePath+"?"+q()+"&prompt=consent"), "alice", "alice-pw")
				if !isConsentPage(page) {
					t.Fatalf("no consent page")
				}
				state, csrf := formFields(t, page.Body.String())
				f := url.Values{"state": {state}, "csrf": {csrf}, "decision": {"allow"}}
				tt.mod(b, f)
				codes := countRecords(t, e, storage.KindCodes)
				rec := b.post(AuthorizePath+"/consent", f)
				if tt.status == 0 {
					if v := wantRedirect(t, rec, "c-web", "st-123"); v.Get("code") == "" {
						t.Fatalf("control failed")
					}
					return
				}
				wantErrorPage(t, rec, tt.status)
				if n := countRecords(t, e, storage.KindCodes); n != codes {
					t.Fatalf("refused consent issued a code")
				}
			})
		}
	})

	t.Run("GET is refused", func(t *testing.T) {
		b := newBrowser(t, e)
		for _, p := range []string{AuthorizePath + "/login", AuthorizePath + "/consent"} {
			rec := b.get(p + "?state=x&csrf=y")
			wantErrorPage(t, rec, http.StatusMethodNotAllowed)
			if rec.Header().Get("Allow") != http.MethodPost {
				t.Fatalf("Allow = %q", rec.Header().Get("Allow"))
			}
		}
	})
}

// The consent form is bound to the session that showed it.
func TestConsentNeedsTheSameSession(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	q := authzQuery("c-web", ch).Encode()

	t.Run("session gone", func(t *testing.T) {
		b := newBrowser(t, e)
		page := b.login(b.get(AuthorizePath+"?"+q), "alice", "alice-pw")
		delete(b.cookies, sessionCookie)
		wantErrorPage(t, b.consent(page, "allow"), http.StatusBadRequest)
	})
	t.Run("another user signed in meanwhile", func(t *testing.T) {
		b := newBrowser(t, e)
		page := b.login(b.get(AuthorizePath+"?"+q), "alice", "alice-pw")
		b.setSession("bob", time.Now())
		wantErrorPage(t, b.consent(page, "allow"), http.StatusBadRequest)
	})
}

func TestSessionCookieAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		issuer string
		proxy  bool
		tls    bool
		remote string
		secure bool
		path   string
	}{
		{"plain loopback http", testIssuer, false, false, loopbackAddr, false, "/oauth/"},
		{"tls", testIssuer, false, true, loopbackAddr, true, "/oauth/"},
		{"tls from afar", testIssuer, false, true, "203.0.113.9:5555", true, "/oauth/"},
		{"behind a tls proxy", testIssuer, true, false, loopbackAddr, true, "/oauth/"},
		{"behind a tls proxy, from afar", testIssuer, true, false, "203.0.113.9:5555", true, "/oauth/"},
		{"issuer with a path", testIssuer + "/t1", false, false, loopbackAddr, false, "/t1/oauth/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, withConfig(func(c *Config) { c.Issuer, c.BehindTLSProxy = tt.issuer, tt.proxy }))
			b := newBrowser(t, e)
			b.remote, b.tls = tt.remote, tt.tls
			_, ch := newPKCE()
			page := b.get(e.basePath + AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
			if !isLoginPage(page) {
				t.Fatalf("no login page: %d %s", page.Code, page.Body.String())
			}
			rec := b.login(page, "alice", "alice-pw")
			if rec.Code != http.StatusFound {
				t.Fatalf("login: %d %s", rec.Code, rec.Body.String())
			}
			for _, c := range []*http.Cookie{setCookie(t, page, csrfCookie), setCookie(t, rec, sessionCookie)} {
				if c == nil {
					t.Fatalf("cookie missing")
				}
				if !c.HttpOnly || c.Secure != tt.secure || c.Path != tt.path {
					t.Errorf("%s: HttpOnly=%v Secure=%v Path=%q; want true %v %q", c.Name, c.HttpOnly, c.Secure, c.Path, tt.secure, tt.path)
				}
			}
			s := setCookie(t, rec, sessionCookie)
			if s.SameSite != http.SameSiteLaxMode || s.MaxAge != 3600 || len(s.Value) != 43 {
				t.Errorf("session cookie = %+v", s)
			}
			if !strings.HasPrefix(s.Path, e.basePath+"/oauth/") {
				t.Errorf("session cookie path %q is not under the OAuth endpoints", s.Path)
			}
		})
	}
}

// Consent is remembered per scope; prompt=consent asks again.
func TestRememberedConsent(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	first := b.authorize(authzQuery("c-web", newChallenge(), "scope", "openid read"), "alice", "alice-pw")
	if first.Query().Get("code") == "" {
		t.Fatalf("no code: %s", first)
	}
	tests := []struct {
		name    string
		kv      []string
		consent bool
	}{
		{"same scopes", []string{"scope", "openid read"}, false},
		{"same scopes in another order", []string{"scope", "read openid"}, false},
		{"fewer scopes", []string{"scope", "openid"}, false},
		{"more scopes", []string{"scope", "openid read email"}, true},
		{"default scopes (all of the client's)", []string{"scope", ""}, true},
		{"prompt=consent", []string{"scope", "openid read", "prompt", "consent"}, true},
		{"prompt=none with consent", []string{"scope", "openid read", "prompt", "none"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), tt.kv...).Encode())
			if tt.consent {
				if rec.Code != http.StatusOK || !isConsentPage(rec) {
					t.Fatalf("want the consent page, got %d %s", rec.Code, rec.Header().Get("Location"))
				}
				return
			}
			if v := wantRedirect(t, rec, "c-web", "st-123"); v.Get("code") == "" {
				t.Fatalf("want a code, got %s", rec.Header().Get("Location"))
			}
		})
	}
	// Consent is per user: bob is asked.
	b.setSession("bob", time.Now())
	rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "scope", "openid read").Encode())
	if !isConsentPage(rec) {
		t.Fatalf("bob was not asked for consent: %d", rec.Code)
	}
}

// prompt and max_age decide when a signed-in user must sign in again
// (OIDC Core §3.1.2.1, §3.1.2.6).
func TestReauthentication(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	tests := []struct {
		name     string
		authTime time.Duration // how long ago the session signed in
		client   string
		kv       []string
		want     string // login, consent, code, or an error code
	}{
		{"session, trusted client", time.Minute, "c-trusted", nil, "code"},
		{"session, untrusted client", time.Minute, "c-web", nil, "consent"},
		{"prompt=login", time.Minute, "c-trusted", []string{"prompt", "login"}, "login"},
		{"prompt=login consent", time.Minute, "c-trusted", []string{"prompt", "login consent"}, "login"},
		{"max_age=0", time.Minute, "c-trusted", []string{"max_age", "0"}, "login"},
		{"max_age exceeded", time.Hour, "c-trusted", []string{"max_age", "600"}, "login"},
		{"max_age not exceeded", time.Minute, "c-trusted", []string{"max_age", "600"}, "code"},
		{"prompt=none, trusted", time.Minute, "c-trusted", []string{"prompt", "none"}, "code"},
		{"prompt=none, no consent", time.Minute, "c-web", []string{"prompt", "none"}, "consent_required"},
		{"prompt=none, max_age exceeded", time.Hour, "c-trusted", []string{"prompt", "none", "max_age", "60"}, "login_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t, e)
			b.setSession("alice", time.Now().Add(-tt.authTime))
			rec := b.get(AuthorizePath + "?" + authzQuery(tt.client, newChallenge(), tt.kv...).Encode())
			switch tt.want {
			case "login":
				if rec.Code != http.StatusOK || !isLoginPage(rec) {
					t.Fatalf("want the login page, got %d %s", rec.Code, rec.Header().Get("Location"))
				}
			case "consent":
				if rec.Code != http.StatusOK || !isConsentPage(rec) {
					t.Fatalf("want the consent page, got %d %s", rec.Code, rec.Header().Get("Location"))
				}
			case "code":
				if v := wantRedirect(t, rec, tt.client, "st-123"); v.Get("code") == "" {
					t.Fatalf("want a code: %s", rec.Header().Get("Location"))
				}
			default:
				if v := wantRedirect(t, rec, tt.client, "st-123"); v.Get("error") != tt.want || v.Has("code") {
					t.Fatalf("want error %s: %s", tt.want, rec.Header().Get("Location"))
				}
			}
		})
	}
}

// After prompt=login, signing in on our form satisfies the request.
func TestPromptLoginThenSignIn(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	b.setSession("bob", time.Now().Add(-time.Minute))
	old := b.cookies[sessionCookie].Value
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-trusted", ch, "prompt", "login").Encode())
	if !isLoginPage(page) {
		t.Fatalf("prompt=login did not show the login page")
	}
	rec := b.login(page, "alice", "alice-pw")
	if v := wantRedirect(t, rec, "c-trusted", "st-123"); v.Get("code") == "" {
		t.Fatalf("no code after the forced sign-in")
	}
	if b.cookies[sessionCookie].Value == old {
		t.Fatalf("the session cookie was not replaced on sign-in (session fixation)")
	}
}

// OIDC Core §3.1.2.1: max_age=0 forces a sign-in, and the sign-in the user
// just did on our form satisfies it (continueAuthorize's own comment says
// a fresh session satisfies max_age). BUG: the fresh session's auth_time
// is already "older than 0 s", so the login page comes back forever.
func TestMaxAgeZeroFreshLogin(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-trusted", ch, "max_age", "0").Encode())
	if !isLoginPage(page) {
		t.Fatalf("max_age=0 did not show the login page")
	}
	rec := b.login(page, "alice", "alice-pw")
	if rec.Code != http.StatusFound {
		t.Fatalf("max_age=0: signing in on our form gave %d (login page again: %v) instead of a redirect with a code",
			rec.Code, isLoginPage(rec))
	}
	if v := wantRedirect(t, rec, "c-trusted", "st-123"); v.Get("code") == "" {
		t.Fatalf("no code")
	}
}

// A removed user's session is worthless.
func TestSessionOfRemovedUser(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e)
	if loc := b.authorize(authzQuery("c-trusted", newChallenge()), "carol", "carol-pw"); loc.Query().Get("code") == "" {
		t.Fatalf("carol could not sign in")
	}
	if _, err := e.users.Remove(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	rec := b.get(AuthorizePath + "?" + authzQuery("c-trusted", newChallenge()).Encode())
	if !isLoginPage(rec) {
		t.Fatalf("a removed user's session still signs in: %d %s", rec.Code, rec.Header().Get("Location"))
	}
}
