package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oauthgate/caddy-oauthgate"
)

const signinIssuer = "http://localhost:19280"

// signinCaddyfile runs the authorization server with one user and two
// clients: an ordinary web app (consent needed) and a trusted one.
func signinCaddyfile(t *testing.T, dir string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19281
	https_port 19282
	skip_install_trust
	oauth {
		issuer %s
		storage_path %s/oauth.db
		client web-app {
			secret web-app-secret
			redirect_uri http://127.0.0.1/callback
			post_logout_redirect_uri http://127.0.0.1:19283/bye
			grant_types authorization_code refresh_token
			scopes openid profile email
		}
		client trusted-app {
			secret trusted-secret
			redirect_uri http://127.0.0.1/callback
			grant_types authorization_code refresh_token
			scopes openid email
			trusted
		}
		user alice {
			password_hash %s
			claim email alice@example.com
			claim email_verified true
			claim name "Alice Liddell"
		}
	}
}
http://localhost:19280 {
	oauth_server
}
`, adminAddr, signinIssuer, dir, hash)
}

// rpApp is a relying party built only from golang.org/x/oauth2 and
// go-oidc, as an unmodified application would use them.
type rpApp struct {
	srv      *httptest.Server
	conf     *oauth2.Config
	verifier *oidc.IDTokenVerifier
	mu       sync.Mutex
	state    string
	nonce    string
	pkce     string
	result   chan rpResult
}

type rpResult struct {
	token   *oauth2.Token
	idToken *oidc.IDToken
	claims  map[string]any
	code    string
	err     error
}

func newRPApp(t *testing.T, provider *oidc.Provider, clientID, secret string) *rpApp {
	app := &rpApp{result: make(chan rpResult, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		app.mu.Lock()
		app.state, app.nonce, app.pkce = oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
		u := app.conf.AuthCodeURL(app.state, oauth2.S256ChallengeOption(app.pkce), oidc.Nonce(app.nonce))
		app.mu.Unlock()
		http.Redirect(w, r, u, http.StatusFound)
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		res := app.callback(r)
		if res.err != nil {
			http.Error(w, "sign-in failed: "+res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintf(w, "<html><body><p id=who>signed in as %s (%s)</p></body></html>", res.idToken.Subject, res.claims["email"])
		}
		app.result <- res
	})
	mux.HandleFunc("/bye", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<html><body><p id=bye>signed out, state %s</p></body></html>", html.EscapeString(r.URL.Query().Get("state")))
	})
	// A fixed port, so that the post-logout address can be registered
	// exactly; the redirect URI is registered without a port (RFC 8252).
	l, err := net.Listen("tcp", "127.0.0.1:19283")
	if err != nil {
		t.Fatal(err)
	}
	app.srv = httptest.NewUnstartedServer(mux)
	app.srv.Listener.Close()
	app.srv.Listener = l
	app.srv.Start()
	t.Cleanup(app.srv.Close)
	app.conf = &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, Endpoint: provider.Endpoint(),
		RedirectURL: app.srv.URL + "/callback",
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
	}
	app.verifier = provider.Verifier(&oidc.Config{ClientID: clientID})
	return app
}

func (app *rpApp) callback(r *http.Request) rpResult {
	app.mu.Lock()
	state, nonce, pkce := app.state, app.nonce, app.pkce
	app.mu.Unlock()
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return rpResult{err: fmt.Errorf("authorization error %s", e)}
	}
	if q.Get("state") != state {
		return rpResult{err: fmt.Errorf("state mismatch")}
	}
	if q.Get("iss") != signinIssuer {
		return rpResult{err: fmt.Errorf("iss %q in the authorization response", q.Get("iss"))}
	}
	code := q.Get("code")
	tok, err := app.conf.Exchange(r.Context(), code, oauth2.VerifierOption(pkce))
	if err != nil {
		return rpResult{err: err}
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := app.verifier.Verify(r.Context(), raw)
	if err != nil {
		return rpResult{err: err}
	}
	if idt.Nonce != nonce {
		return rpResult{err: fmt.Errorf("nonce mismatch")}
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		return rpResult{err: fmt.Errorf("at_hash: %w", err)}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return rpResult{err: err}
	}
	return rpResult{token: tok, idToken: idt, claims: claims, code: code}
}

func startSignin(t *testing.T) (*caddytest.Tester, *oidc.Provider) {
	tester := startCaddy(t, signinCaddyfile(t, t.TempDir()))
	provider, err := oidc.NewProvider(context.Background(), signinIssuer)
	if err != nil {
		t.Fatalf("discovery with go-oidc: %v", err)
	}
	return tester, provider
}

// TestBrowserSignIn signs alice in through the login and consent pages in
// a real headless Chromium; the relying party, built from x/oauth2 and
// go-oidc, exchanges the code with PKCE and verifies the ID token.
func TestBrowserSignIn(t *testing.T) {
	_, provider := startSignin(t)
	app := newRPApp(t, provider, "web-app", "web-app-secret")
	wd := startBrowser(t)

	wd.Navigate(app.srv.URL + "/login")
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, signinIssuer+"/oauth/authorize") })
	wd.WaitSource(func(src string) bool {
		return strings.Contains(src, "web-app") && strings.Contains(src, `id="password"`)
	})
	// A wrong password first: the page says so and nothing is issued.
	wd.Type("#username", "alice")
	wd.Type("#password", "wrong-password")
	wd.Click("#signin")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "The user name or password is wrong.") })
	// Then sign in with the keyboard only: type, Enter submits the form.
	wd.Type("#password", "alice-password\n")
	src := wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="allow"`) })
	for _, want := range []string{"Allow", "Deny", "email", "profile", "alice"} {
		if !strings.Contains(src, want) {
			t.Fatalf("consent page lacks %q:\n%s", want, src)
		}
	}
	wd.Click("#allow")
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, app.srv.URL+"/callback") })
	var res rpResult
	select {
	case res = <-app.result:
	case <-time.After(20 * time.Second):
		t.Fatal("the relying party never got the callback")
	}
	if res.err != nil {
		t.Fatalf("relying party: %v", res.err)
	}
	if res.idToken.Subject != "alice" || res.claims["email"] != "alice@example.com" || res.claims["email_verified"] != true || res.claims["name"] != "Alice Liddell" {
		t.Fatalf("ID token claims = %v", res.claims)
	}
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "signed in as alice (alice@example.com)") })
	if res.token.RefreshToken == "" {
		t.Fatal("no refresh token for a client registered for refresh_token")
	}

	// The code works once: a replay fails and revokes what it issued.
	_, err := app.conf.Exchange(context.Background(), res.code, oauth2.VerifierOption(app.pkce))
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("code replay: err = %v, want invalid_grant", err)
	}
	ui, err := provider.UserInfo(context.Background(), oauth2.StaticTokenSource(res.token))
	if err == nil {
		t.Fatalf("userinfo with an access token revoked by code replay answered %v", ui)
	}
	if _, err := app.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: res.token.RefreshToken}).Token(); err == nil {
		t.Fatal("refresh token survived a code replay")
	}

	// A second sign-in reuses the session and the remembered consent.
	wd.Navigate(app.srv.URL + "/login")
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, app.srv.URL+"/callback") })
	res = <-app.result
	if res.err != nil {
		t.Fatalf("second sign-in: %v", res.err)
	}
	// Userinfo answers for the fresh token.
	ui, err = provider.UserInfo(context.Background(), oauth2.StaticTokenSource(res.token))
	if err != nil || ui.Subject != "alice" || ui.Email != "alice@example.com" {
		t.Fatalf("userinfo = %+v, %v", ui, err)
	}

	// Sign-out: RP-initiated logout with the ID token as hint goes back to
	// the registered post_logout_redirect_uri with state.
	raw, _ := res.token.Extra("id_token").(string)
	wd.Navigate(signinIssuer + "/oauth/logout?" + url.Values{"id_token_hint": {raw},
		"post_logout_redirect_uri": {app.srv.URL + "/bye"}, "state": {"s1"}}.Encode())
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, app.srv.URL+"/bye") })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "signed out, state s1") })
	// Signed out: the next authorization needs the login page again.
	wd.Navigate(app.srv.URL + "/login")
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, signinIssuer+"/oauth/authorize") })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
}

// formFields pulls hidden inputs out of a page.
var hiddenRE = regexp.MustCompile(`name="(state|csrf)" value="([^"]*)"`)

func formFields(t *testing.T, page string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	if v.Get("state") == "" || v.Get("csrf") == "" {
		t.Fatalf("no form state in page:\n%s", page)
	}
	return v
}

// codeFor signs alice in for the trusted client with a plain HTTP client
// (cookie jar, no redirects followed) and returns a fresh code.
func codeFor(t *testing.T, challenge string) string {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {"trusted-app"}, "redirect_uri": {"http://127.0.0.1:7/callback"}, "response_type": {"code"},
		"scope": {"openid email"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st"}}
	resp, err := c.Get(signinIssuer + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := formFields(t, string(page))
	form.Set("username", "alice")
	form.Set("password", "alice-password")
	resp, err = c.PostForm(signinIssuer+"/oauth/authorize/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("login for trusted-app: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// TestCodeRedemptionRace: 100 concurrent redemptions of one code through
// Caddy give exactly one token.
func TestCodeRedemptionRace(t *testing.T) {
	startSignin(t)
	verifier := oauth2.GenerateVerifier()
	code := codeFor(t, oauth2.S256ChallengeFromVerifier(verifier))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"http://127.0.0.1:7/callback"}, "code_verifier": {verifier}}.Encode()
	var ok, failed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodPost, signinIssuer+"/oauth/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("trusted-app", "trusted-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200 && body["access_token"] != nil:
				ok.Add(1)
			case resp.StatusCode == 400 && body["error"] == "invalid_grant":
				failed.Add(1)
			default:
				t.Errorf("unexpected answer %d %v", resp.StatusCode, body)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || failed.Load() != 99 {
		t.Fatalf("successes = %d, invalid_grant = %d; want 1 and 99", ok.Load(), failed.Load())
	}
}

// TestRefreshRotationEndToEnd: refresh tokens rotate through x/oauth2, and
// reusing a rotated one revokes the family.
func TestRefreshRotationEndToEnd(t *testing.T) {
	_, provider := startSignin(t)
	verifier := oauth2.GenerateVerifier()
	code := codeFor(t, oauth2.S256ChallengeFromVerifier(verifier))
	conf := &oauth2.Config{ClientID: "trusted-app", ClientSecret: "trusted-secret", Endpoint: provider.Endpoint(),
		RedirectURL: "http://127.0.0.1:7/callback"}
	ctx := context.Background()
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	first := tok.RefreshToken
	expired := &oauth2.Token{RefreshToken: first, Expiry: time.Now().Add(-time.Hour)}
	next, err := conf.TokenSource(ctx, expired).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if next.RefreshToken == "" || next.RefreshToken == first || next.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate the refresh token")
	}
	// Reuse of the rotated token: refused, and the whole family dies.
	if _, err := conf.TokenSource(ctx, expired).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("reuse of a rotated refresh token: %v", err)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: next.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token(); err == nil {
		t.Fatal("the newest refresh token survived reuse detection")
	}
	if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(next)); err == nil {
		t.Fatal("an access token of the revoked family still works at userinfo")
	}
}

// TestSigninAttacks: CSRF and open-redirect attempts through Caddy.
func TestSigninAttacks(t *testing.T) {
	startSignin(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// Unregistered redirect_uri: an error page, never a redirect.
	for _, ru := range []string{"https://evil.test/callback", "http://127.0.0.1/callback/../evil", "http://127.0.0.1.evil.test/callback", "javascript:alert(1)"} {
		q := url.Values{"client_id": {"web-app"}, "redirect_uri": {ru}, "response_type": {"code"}, "scope": {"openid"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
		resp, err := noFollow.Get(signinIssuer + "/oauth/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("redirect_uri %q: status %d, Location %q", ru, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// Login CSRF: a form posted from elsewhere (no CSRF cookie, or a
	// forged field) signs nobody in.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: noFollow.CheckRedirect}
	q := url.Values{"client_id": {"trusted-app"}, "redirect_uri": {"http://127.0.0.1:7/callback"}, "response_type": {"code"},
		"scope": {"openid"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
	resp, err := browser.Get(signinIssuer + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := formFields(t, string(page))
	form.Set("username", "alice")
	form.Set("password", "alice-password")
	resp, err = noFollow.PostForm(signinIssuer+"/oauth/authorize/login", form) // no cookies
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("login without the CSRF cookie: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	forged := url.Values{}
	for k, v := range form {
		forged[k] = v
	}
	forged.Set("csrf", strings.Repeat("A", 43))
	resp, err = browser.PostForm(signinIssuer+"/oauth/authorize/login", forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Fatalf("login with a forged CSRF field: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Logout never redirects to an unregistered address.
	resp, err = noFollow.Get(signinIssuer + "/oauth/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.test&client_id=web-app")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil") {
		t.Fatalf("logout redirected to %q", loc)
	}
}
