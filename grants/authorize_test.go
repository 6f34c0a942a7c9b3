package grants

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// checkPageHeaders asserts the headers every sign-in page must carry
// (RFC 9700 §4.16, §2.6, §4.2; no XSS).
func checkPageHeaders(t testing.TB, rec *httptest.ResponseRecorder) {
	t.Helper()
	h := rec.Header()
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	for name, want := range map[string]string{
		"X-Frame-Options":        "DENY",
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
		"Content-Type":           "text/html; charset=utf-8",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS header on a sign-in page")
	}
}

// wantErrorPage asserts a 400 error page that redirects nowhere.
func wantErrorPage(t testing.TB, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d:\n%s", rec.Code, status, rec.Body.String())
	}
	if loc := rec.Header().Get("Location"); loc != "" {
		t.Fatalf("error page redirects to %q", loc)
	}
	if !strings.Contains(rec.Body.String(), `id="error"`) {
		t.Fatalf("not an error page:\n%s", rec.Body.String())
	}
	checkPageHeaders(t, rec)
}

func getAuthorize(e *Engine, rawQuery string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, AuthorizePath+"?"+rawQuery, nil)
	r.RemoteAddr = loopbackAddr
	rec := httptest.NewRecorder()
	e.serveAuthorize(rec, r)
	return rec
}

// RFC 9700 §2.1 and §4.1.3, RFC 6749 §4.1.2.1, OIDC Core §3.1.2.1 (no
// Unicode tricks, prefix matches, repeated parameters or XSS): anything but an exact
// redirect URI of a known client gives an error page and never a redirect.
func TestAuthorizeErrorPage(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	q := func(client string, kv ...string) string { return authzQuery(client, ch, kv...).Encode() }
	web := func(ru string) string { return q("c-web", "redirect_uri", ru) }
	tests := []struct{ name, query string }{
		{"unknown client", q("c-web", "client_id", "nosuch", "redirect_uri", "https://evil.test/")},
		{"no client_id", q("c-web", "client_id", "")},
		{"client_id is a script", q("c-web", "client_id", "<script>alert(1)</script>")},
		{"client_id with trailing space", q("c-web", "client_id", "c-web ")},
		{"client_id in other case", q("c-web", "client_id", "C-WEB")},
		{"unregistered redirect", web("https://evil.test/cb")},
		{"javascript redirect", web("javascript:alert(1)")},
		{"trailing slash", web("https://client.test/cb/")},
		{"extra path", web("https://client.test/cb/x")},
		{"suffix host", web("https://client.test/cb.evil.test")},
		{"longer path", web("https://client.test/cbx")},
		{"dot segments", web("https://client.test/cb/../../evil")},
		{"at in path", web("https://client.test/cb@evil.test")},
		{"userinfo", web("https://client.test@evil.test/cb")},
		{"backslash userinfo", web(`https://client.test\@evil.test/cb`)},
		{"added query", web("https://client.test/cb?next=//evil.test")},
		{"added empty query", web("https://client.test/cb?")},
		{"fragment", web("https://client.test/cb#x")},
		{"default port added", web("https://client.test:443/cb")},
		{"uppercase host", web("https://CLIENT.test/cb")},
		{"uppercase scheme", web("HTTPS://client.test/cb")},
		{"encoded slash", web("https://client.test%2Fcb")},
		{"encoded slash in path", web("https://client.test/cb%2F")},
		{"encoded path", web("https://client.test/%63b")},
		{"fullwidth slash", web("https://client.test\uff0fcb")},
		{"NUL", web("https://client.test/cb\x00")},
		{"encoded NUL", web("https://client.test/cb%00")},
		{"trailing dot host", web("https://client.test./cb")},
		{"homoglyph host", web("https://cli\u0435nt.test/cb")},
		{"punycode host", web("https://xn--clint-4ve.test/cb")},
		{"http instead of https", web("http://client.test/cb")},
		{"leading space", web(" https://client.test/cb")},
		{"trailing space", web("https://client.test/cb ")},
		{"another client's uri", web("https://basic.test/cb")},
		{"no redirect_uri with two registered", q("c-multi", "redirect_uri", "")},
		// OIDC Core §3.1.2.1: redirect_uri is REQUIRED in an OpenID
		// request, even when the client registered only one.
		{"openid without redirect_uri", q("c-web", "redirect_uri", "", "scope", "openid email")},
		{"openid last without redirect_uri", q("c-web", "redirect_uri", "", "scope", "read openid")},
		{"openid by default scope without redirect_uri", q("c-web", "redirect_uri", "")},
		{"repeated client_id", q("c-web") + "&client_id=c-web"},
		{"repeated redirect_uri", q("c-web") + "&redirect_uri=" + url.QueryEscape("https://client.test/cb")},
		{"repeated state", q("c-web") + "&state=x"},
		{"repeated response_type", q("c-web") + "&response_type=code"},
		{"repeated code_challenge", q("c-web") + "&code_challenge=" + ch},
		{"repeated resource", q("c-web") + "&resource=a&resource=b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := getAuthorize(e, tt.query)
			wantErrorPage(t, rec, http.StatusBadRequest)
			body := rec.Body.String()
			for _, bad := range []string{"<script>alert", "evil.test", "javascript:"} {
				if strings.Contains(body, bad) {
					t.Errorf("error page reflects %q:\n%s", bad, body)
				}
			}
			if c := rec.Header().Values("Set-Cookie"); len(c) != 0 {
				t.Errorf("error page sets cookies: %v", c)
			}
		})
	}
}

// RFC 8252 §7.3, RFC 9700 §2.1: only the port of a loopback IP literal may vary.
func TestAuthorizeLoopbackRedirect(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	tests := []struct {
		ru    string
		match bool
	}{
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:53124/cb", true},
		{"http://127.0.0.1:1/cb", true},
		{"http://127.0.0.1.evil.test/cb", false},
		{"http://127.0.0.1:5.evil.test/cb", false},
		{"http://127.0.0.1:5@evil.test/cb", false},
		{"http://127.0.0.1@evil.test/cb", false},
		{"http://localhost:5/cb", false},
		{"http://localhost/cb", false},
		{"http://[::1]:5/cb", false},
		{"https://127.0.0.1:5/cb", false},
		{"http://127.0.0.1:/cb", false},
		{"http://127.0.0.1:5/cb/", false},
		{"http://127.0.0.1:5/cbx", false},
		{"http://127.0.0.1:5/cb?x=1", false},
		{"http://127.0.0.1:5", false},
		{"http://127.0.0.2:5/cb", false},
		{"http://127.1:5/cb", false},
		{"http://0x7f000001:5/cb", false},
	}
	for _, tt := range tests {
		t.Run(tt.ru, func(t *testing.T) {
			// response_type=token fails after the redirect URI is checked,
			// so a match shows as a redirect to exactly that URI.
			rec := getAuthorize(e, authzQuery("c-pub", ch, "redirect_uri", tt.ru, "response_type", "token").Encode())
			if !tt.match {
				wantErrorPage(t, rec, http.StatusBadRequest)
				return
			}
			loc := mustLocation(t, rec)
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != tt.ru {
				t.Fatalf("redirected to %s, want %s", loc, tt.ru)
			}
			if loc.Query().Get("error") != "unsupported_response_type" {
				t.Fatalf("Location %s", loc)
			}
		})
	}
}

// RFC 6749 §4.1.2.1, RFC 9207 §2, RFC 7636 §4.2 and §4.4.1, RFC 8707 §2 (and
// no header injection): once the redirect URI is trusted, errors go
// back to it with error, state (as received) and iss.
func TestAuthorizeRedirectErrors(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) {
		c.Clients = append(c.Clients, &Client{
			ClientSpec: ClientSpec{
				ID:           "c-cc",
				AuthMethod:   AuthSecretBasic,
				GrantTypes:   []string{GrantClientCredentials},
				RedirectURIs: []string{"https://cc.test/cb"},
			},
			SecretHash: HashSecret("x"),
		})
	}))
	redirectOf := func(client string) string {
		if client == "c-cc" {
			return "https://cc.test/cb"
		}
		return testRedirect[client]
	}
	_, ch := newPKCE()
	long := strings.Repeat("a", maxParamLen+1)
	tests := []struct {
		name, client string
		kv           []string
		code         string
		noState      bool
	}{
		{"missing response_type", "c-web", []string{"response_type", ""}, "invalid_request", false},
		{"implicit", "c-web", []string{"response_type", "token"}, "unsupported_response_type", false},
		{"hybrid", "c-web", []string{"response_type", "code token"}, "unsupported_response_type", false},
		{"id_token", "c-web", []string{"response_type", "id_token"}, "unsupported_response_type", false},
		{"response_type case", "c-web", []string{"response_type", "Code"}, "unsupported_response_type", false},
		{"response_mode fragment", "c-web", []string{"response_mode", "fragment"}, "invalid_request", false},
		{"request object", "c-web", []string{"request", "eyJ.eyJ.x"}, "request_not_supported", false},
		{"request_uri", "c-web", []string{"request_uri", "urn:x"}, "request_uri_not_supported", false},
		{"client not allowed the code flow", "c-cc", nil, "unauthorized_client", false},
		{"scope not allowed", "c-web", []string{"scope", "openid admin"}, "invalid_scope", false},
		{"scope with a quote", "c-web", []string{"scope", `read"`}, "invalid_scope", false},
		{"scope with double space", "c-web", []string{"scope", "openid  read"}, "invalid_scope", false},
		{"public client without PKCE", "c-pub", []string{"code_challenge", "", "code_challenge_method", ""}, "invalid_request", false},
		{"confidential client without PKCE", "c-web", []string{"code_challenge", "", "code_challenge_method", ""}, "invalid_request", false},
		{"method plain", "c-web", []string{"code_challenge_method", "plain"}, "invalid_request", false},
		{"method missing", "c-web", []string{"code_challenge_method", ""}, "invalid_request", false},
		{"method lowercase", "c-web", []string{"code_challenge_method", "s256"}, "invalid_request", false},
		{"method without challenge", "c-web", []string{"code_challenge", ""}, "invalid_request", false},
		{"challenge 42 chars", "c-web", []string{"code_challenge", ch[:42]}, "invalid_request", false},
		{"challenge 129 chars", "c-web", []string{"code_challenge", strings.Repeat("a", 129)}, "invalid_request", false},
		{"challenge with =", "c-web", []string{"code_challenge", ch[:42] + "="}, "invalid_request", false},
		{"challenge with +", "c-web", []string{"code_challenge", "+" + ch[1:]}, "invalid_request", false},
		{"challenge with /", "c-web", []string{"code_challenge", "/" + ch[1:]}, "invalid_request", false},
		// RFC 7636 §4.2: an S256 challenge is the base64url SHA-256 of the
		// verifier, exactly 43 characters; anything else can never match.
		{"challenge 44 chars", "c-web", []string{"code_challenge", ch + "A"}, "invalid_request", false},
		{"challenge 128 chars", "c-web", []string{"code_challenge", strings.Repeat("a", 128)}, "invalid_request", false},
		{"challenge with ~", "c-web", []string{"code_challenge", "~" + ch[1:]}, "invalid_request", false},
		{"challenge with .", "c-web", []string{"code_challenge", "." + ch[1:]}, "invalid_request", false},
		{"challenge with trailing bits", "c-web", []string{"code_challenge", ch[:42] + "B"}, "invalid_request", false},
		{"unknown prompt", "c-web", []string{"prompt", "bogus"}, "invalid_request", false},
		{"prompt none with login", "c-web", []string{"prompt", "none login"}, "invalid_request", false},
		{"negative max_age", "c-web", []string{"max_age", "-1"}, "invalid_request", false},
		{"non-numeric max_age", "c-web", []string{"max_age", "1h"}, "invalid_request", false},
		{"state too long", "c-web", []string{"state", long}, "invalid_request", true},
		{"nonce too long", "c-web", []string{"nonce", long}, "invalid_request", true},
		{"login_hint too long", "c-web", []string{"login_hint", long}, "invalid_request", true},
		{"prompt none without session", "c-web", []string{"prompt", "none"}, "login_required", false},
		{"prompt none without session, public", "c-pub", []string{"prompt", "none"}, "login_required", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := authzQuery(tt.client, ch, tt.kv...)
			if q.Get("state") == "st-123" {
				q.Set("state", "x y")
			}
			rec := getAuthorize(e, q.Encode())
			loc := mustLocation(t, rec)
			if base := loc.Scheme + "://" + loc.Host + loc.Path; base != redirectOf(tt.client) {
				t.Fatalf("redirected to %s", loc)
			}
			v := loc.Query()
			if v.Get("error") != tt.code {
				t.Fatalf("error = %q, want %q (Location %s)", v.Get("error"), tt.code, loc)
			}
			if v.Get("code") != "" {
				t.Fatalf("a code came with an error")
			}
			if v.Get("iss") != testIssuer {
				t.Fatalf("iss = %q", v.Get("iss"))
			}
			switch {
			case tt.noState && v.Has("state"):
				t.Fatalf("oversized state echoed")
			case !tt.noState && v.Get("state") != "x y":
				t.Fatalf("state = %q, want %q", v.Get("state"), "x y")
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("redirect is cacheable")
			}
			headerHasNoCRLF(t, rec.Header())
		})
	}
}

// No header injection: state is URL-encoded into the Location, never split into headers;
// the redirect URI's own query is kept.
func TestAuthorizeRedirectEncoding(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	evil := "x\r\nSet-Cookie:a=b"
	raw := authzQuery("c-web", ch, "response_type", "token", "state", "").Encode() + "&state=x%0d%0aSet-Cookie:a=b"
	rec := getAuthorize(e, raw)
	headerHasNoCRLF(t, rec.Header())
	if c := rec.Header().Values("Set-Cookie"); len(c) != 0 {
		t.Fatalf("Set-Cookie injected: %v", c)
	}
	locRaw := rec.Header().Get("Location")
	if !strings.Contains(locRaw, "state=x%0D%0ASet-Cookie%3Aa%3Db") {
		t.Fatalf("state not URL-encoded in %q", locRaw)
	}
	if got := mustLocation(t, rec).Query().Get("state"); got != evil {
		t.Fatalf("state = %q, want %q", got, evil)
	}

	// A registered URI with a query keeps it and gets ours after '&'.
	rec = getAuthorize(e, authzQuery("c-multi", ch, "redirect_uri", "https://multi.test/b?x=1", "response_type", "token").Encode())
	loc := rec.Header().Get("Location")
	if !strings.HasPrefix(loc, "https://multi.test/b?x=1&") {
		t.Fatalf("Location = %q", loc)
	}
	if v := mustLocation(t, rec).Query(); v.Get("x") != "1" || v.Get("error") != "unsupported_response_type" {
		t.Fatalf("Location = %q", loc)
	}

	// The only registered URI is used when redirect_uri is left out of a
	// plain OAuth request (an OpenID one must name it).
	rec = getAuthorize(e, authzQuery("c-web", ch, "redirect_uri", "", "scope", "read", "response_type", "token").Encode())
	if loc := mustLocation(t, rec); loc.Scheme+"://"+loc.Host+loc.Path != "https://client.test/cb" {
		t.Fatalf("Location = %s", loc)
	}
}

// requireTLS: plain HTTP from elsewhere is refused unless TLS ends in a
// proxy in front.
func TestAuthorizeRequiresTLS(t *testing.T) {
	t.Parallel()
	_, ch := newPKCE()
	q := authzQuery("c-web", ch).Encode()
	tests := []struct {
		name    string
		proxy   bool
		remote  string
		tls     bool
		refused bool
	}{
		{"plain http from afar", false, "203.0.113.5:4000", false, true},
		{"plain http from loopback", false, loopbackAddr, false, false},
		{"plain http from ::1", false, "[::1]:4000", false, false},
		{"tls from afar", false, "203.0.113.5:4000", true, false},
		{"behind a TLS proxy", true, "203.0.113.5:4000", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, withConfig(func(c *Config) { c.BehindTLSProxy = tt.proxy }))
			b := newBrowser(t, e)
			b.remote, b.tls = tt.remote, tt.tls
			rec := b.get(AuthorizePath + "?" + q)
			if tt.refused {
				wantErrorPage(t, rec, http.StatusBadRequest)
				return
			}
			if rec.Code != http.StatusOK || !isLoginPage(rec) {
				t.Fatalf("want the login page, got %d:\n%s", rec.Code, rec.Body.String())
			}
		})
	}
}

func TestAuthorizeMethods(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	// POST form parameters are read like the query.
	b := newBrowser(t, e)
	rec := b.post(AuthorizePath, authzQuery("c-web", ch))
	if rec.Code != http.StatusOK || !isLoginPage(rec) {
		t.Fatalf("POST authorize: %d:\n%s", rec.Code, rec.Body.String())
	}
	for _, m := range []string{http.MethodPut, http.MethodDelete} {
		r := httptest.NewRequest(m, AuthorizePath+"?"+authzQuery("c-web", ch).Encode(), nil)
		r.RemoteAddr = loopbackAddr
		rec := httptest.NewRecorder()
		e.serveAuthorize(rec, r)
		wantErrorPage(t, rec, http.StatusBadRequest)
	}
}

// No XSS: what the login page reflects is escaped. (The hint has no '"'
// or '/': a hint that cannot be a user name is not shown at all.)
func TestLoginPageEscapes(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	rec := getAuthorize(e, authzQuery("c-web", ch, "login_hint", `'><script>alert(1)<script>`).Encode())
	if rec.Code != http.StatusOK || !isLoginPage(rec) {
		t.Fatalf("%d:\n%s", rec.Code, rec.Body.String())
	}
	checkPageHeaders(t, rec)
	body := rec.Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, `'><`) {
		t.Fatalf("login_hint not escaped:\n%s", body)
	}
	if !strings.Contains(body, "&#39;&gt;&lt;script&gt;") {
		t.Fatalf("login_hint missing from the page:\n%s", body)
	}
}

// RFC 9700 §2.1.1: a code_challenge is for one transaction. One already
// bound to a live code is refused at once, before sign-in; two open
// transactions with the same challenge get at most one code.
func TestAuthorizeChallengeReuse(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	wantReuseRefused := func(rec *httptest.ResponseRecorder) {
		t.Helper()
		loc := mustLocation(t, rec)
		if v := loc.Query(); v.Get("error") != CodeInvalidRequest || v.Get("code") != "" {
			t.Fatalf("reused challenge: redirected to %s", loc)
		}
	}

	// Two transactions open with the same challenge (two login forms).
	b1, b2 := newBrowser(t, e), newBrowser(t, e)
	page1 := b1.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
	page2 := b2.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
	if !isLoginPage(page1) || !isLoginPage(page2) {
		t.Fatalf("no login pages: %d %d", page1.Code, page2.Code)
	}
	if loc := mustLocation(t, b1.login(page1, "alice", "alice-pw")); loc.Query().Get("code") == "" {
		t.Fatalf("first transaction: %s", loc)
	}
	codes := countRecords(t, e, storage.KindCodes)
	wantReuseRefused(b2.login(page2, "alice", "alice-pw"))
	if n := countRecords(t, e, storage.KindCodes); n != codes {
		t.Fatalf("%d codes after the refused transaction, want %d", n, codes)
	}

	// A new request with the challenge of a live code is refused before
	// sign-in (a fresh browser would otherwise see the login page).
	wantReuseRefused(newBrowser(t, e).get(AuthorizePath + "?" + authzQuery("c-web", ch).Encode()))
	// Also for a signed-in browser, which would otherwise get a code.
	wantReuseRefused(b1.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode()))

	// A fresh challenge works as before.
	_, other := newPKCE()
	if loc := b1.authorize(authzQuery("c-trusted", other), "alice", "alice-pw"); loc.Query().Get("code") == "" {
		t.Fatalf("fresh challenge: %s", loc)
	}
}

// POST /oauth/authorize reads at most MaxBodyBytes, like the token
// endpoint: a larger body is 413, declared or chunked.
func TestAuthorizePostBodyCapped(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	_, ch := newPKCE()
	q := authzQuery("c-web", ch).Encode()
	for _, chunked := range []bool{false, true} {
		body := q + "&pad=" + strings.Repeat("a", MaxBodyBytes)
		r, _ := http.NewRequest(http.MethodPost, "https://as.test"+AuthorizePath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if chunked {
			r.ContentLength = -1
		}
		b := newBrowser(t, e)
		rec := b.do(r)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: %d-byte authorization request body: %d, want 413", chunked, len(body), rec.Code)
		}
	}
	// A normal POST still works.
	r, _ := http.NewRequest(http.MethodPost, "https://as.test"+AuthorizePath, strings.NewReader(q))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := newBrowser(t, e).do(r); !isLoginPage(rec) {
		t.Fatalf("a small POST authorization request: %d, want the login page", rec.Code)
	}
}

// RFC 8252 §8.6: anyone on the machine can claim a public client's
// loopback redirect, so a public client never gets a code without the
// user acting in that request: a remembered consent (or the client being
// trusted) does not skip the consent page, and prompt=none is refused.
func TestPublicClientNeverSilent(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	// alice signs in and allows c-pub once (the interaction).
	code, verifier := b.getCode("c-pub")
	wantOK(t, redeem(e, "c-pub", code, verifier))

	for _, client := range []string{"c-pub", "c-multi"} { // untrusted, trusted
		_, ch := newPKCE()
		// Signed in, consent remembered, prompt=none: an error, no code.
		rec := b.get(AuthorizePath + "?" + authzQuery(client, ch, "prompt", "none").Encode())
		loc := mustLocation(t, rec)
		if loc.Query().Get("code") != "" || (loc.Query().Get("error") != "consent_required" && loc.Query().Get("error") != "interaction_required") {
			t.Fatalf("%s: prompt=none with a session and remembered consent redirected to %s", client, loc)
		}
		// Without prompt=none the user must act on the consent page.
		rec = b.get(AuthorizePath + "?" + authzQuery(client, ch).Encode())
		if !isConsentPage(rec) {
			t.Fatalf("%s: a public client got past consent without interaction: %d %s", client, rec.Code, rec.Header().Get("Location"))
		}
		loc = mustLocation(t, b.consent(rec, "allow"))
		if loc.Query().Get("code") == "" {
			t.Fatalf("%s: allowing on the consent page gave no code: %s", client, loc)
		}
	}
	// A confidential client keeps the remembered consent and prompt=none.
	code, _ = b.getCode("c-web")
	_, ch := newPKCE()
	loc := mustLocation(t, b.get(AuthorizePath+"?"+authzQuery("c-web", ch, "prompt", "none").Encode()))
	if code == "" || loc.Query().Get("code") == "" {
		t.Fatalf("a confidential client lost silent re-authorization: %s", loc)
	}
}
