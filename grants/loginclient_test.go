package grants

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

const (
	gateRedirect   = "https://wiki.test/oauth2/callback"
	gatePostLogout = "https://wiki.test/"
	gateAudience   = "https://wiki.test"
)

// withGroups gives alice a groups claim.
func withGroups() engineOpt {
	return withConfig(func(c *Config) {
		for _, u := range c.Users {
			if u.Name == "alice" {
				u.Claims["groups"] = "admins, ops"
			}
		}
	})
}

func addGate(t testing.TB, e *Engine) string {
	t.Helper()
	id, err := e.AddLoginClient(gateRedirect, gatePostLogout, "Wiki", gateAudience, []string{"wiki.read"})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// gateOAuth2 is the gate's relying party: golang.org/x/oauth2 over the
// in-process transport.
func gateOAuth2(e *Engine, id string) (*oauth2.Config, context.Context) {
	cfg := &oauth2.Config{ClientID: id, RedirectURL: gateRedirect,
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + AuthorizePath, TokenURL: e.issuer + TokenPath},
		Scopes:   []string{"openid", "profile", "email", "groups", "wiki.read"}}
	return cfg, context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: e.InProcessTransport()})
}

// gateSignIn runs the browser part of a gate's sign-in and returns the
// code's callback URL and the PKCE verifier.
func gateSignIn(t *testing.T, b *browser, cfg *oauth2.Config) (*url.URL, string) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	u, _ := url.Parse(cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n-1")))
	rec := b.get(u.RequestURI())
	if !isLoginPage(rec) {
		t.Fatalf("want the login page, got %d:\n%s", rec.Code, rec.Body.String())
	}
	rec = b.login(rec, "alice", "alice-pw")
	// A first-party gate: no consent page.
	loc := mustLocation(t, rec)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != gateRedirect || loc.Query().Get("code") == "" {
		t.Fatalf("redirect to %s, want the gate's callback with a code", loc)
	}
	return loc, verifier
}

func TestLoginClientInProcessCodeAndRefresh(t *testing.T) {
	e := newEngine(t, withGroups())
	id := addGate(t, e)
	if !strings.HasPrefix(id, "gate-") || len(id) != 27 || id != LoginClientID(gateRedirect) {
		t.Fatalf("client id %q", id)
	}
	cfg, ctx := gateOAuth2(e, id)
	loc, verifier := gateSignIn(t, newBrowser(t, e), cfg)
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("in-process code exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for the gate")
	}
	idTok, _ := tok.Extra("id_token").(string)
	_, claims := verifyIDToken(t, e, idTok)
	if claims["aud"] != id || claims["nonce"] != "n-1" || claims["preferred_username"] != "alice" || claims["email"] != "alice@example.test" {
		t.Fatalf("id token claims %v", claims)
	}
	if g, _ := json.Marshal(claims["groups"]); string(g) != `["admins","ops"]` {
		t.Fatalf("id token groups = %s, want [\"admins\",\"ops\"]", g)
	}
	at, err := e.Verifier().Verify(tok.AccessToken, tok.Expiry.Add(-time5m()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(at.Audience, gateAudience) {
		t.Fatalf("access token audience %v, want %s", at.Audience, gateAudience)
	}
	// Refresh, as the gate does before the session's token expires.
	tok.Expiry = tok.Expiry.Add(-24 * time.Hour)
	fresh, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("in-process refresh: %v", err)
	}
	if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == "" {
		t.Fatal("refresh gave no new tokens")
	}
	// The code without PKCE is refused: S256 is required.
	loc, _ = gateSignIn(t, newBrowser(t, e), cfg)
	if _, err := cfg.Exchange(ctx, loc.Query().Get("code")); err == nil {
		t.Fatal("a code was redeemed without its PKCE verifier")
	}
}

func time5m() time.Duration { return 5 * time.Minute }

func TestLoginClientRefusedFromNetwork(t *testing.T) {
	e := newEngine(t)
	id := addGate(t, e)
	cfg, _ := gateOAuth2(e, id)
	loc, verifier := gateSignIn(t, newBrowser(t, e), cfg)
	code := loc.Query().Get("code")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {gateRedirect}, "code_verifier": {verifier}}
	for name, try := range map[string]func() tokenResult{
		"client_id only": func() tokenResult { f := cloneValues(form); f.Set("client_id", id); return postTokenRaw(e, f, "") },
		"client_secret": func() tokenResult {
			f := cloneValues(form)
			f.Set("client_id", id)
			f.Set("client_secret", "anything")
			return postTokenRaw(e, f, "")
		},
		"basic, empty password": func() tokenResult { return postTokenRaw(e, form, siBasicAuth(id, "")) },
		"basic, a password":     func() tokenResult { return postTokenRaw(e, form, siBasicAuth(id, "x")) },
	} {
		tr := try()
		if tr.status != http.StatusUnauthorized || tr.str("error") != CodeInvalidClient || tr.str("access_token") != "" {
			t.Fatalf("%s from the network: %d %s, want 401 invalid_client", name, tr.status, tr.raw)
		}
	}
	for _, h := range []http.HandlerFunc{e.serveRevoke, e.serveIntrospect} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(url.Values{"client_id": {id}, "token": {"x"}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = loopbackAddr
		rec := httptest.NewRecorder()
		h(rec, r)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), CodeInvalidClient) {
			t.Fatalf("revoke/introspect from the network as the gate: %d %s", rec.Code, rec.Body.String())
		}
	}
	// The code is still good in process (the refusals did not use it).
	cfgIn, ctx := gateOAuth2(e, id)
	if _, err := cfgIn.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("in process after the refusals: %v", err)
	}
}

func TestLoginClientIDReserved(t *testing.T) {
	id := LoginClientID(gateRedirect)
	_, err := startEngine(t, withClients(&Client{ClientSpec: ClientSpec{ID: id, AuthMethod: AuthNone,
		GrantTypes: []string{GrantAuthorizationCode}, RedirectURIs: []string{gateRedirect}}}))
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("a config client with a gate id: err = %v", err)
	}
	e := newEngine(t)
	if _, err := e.AddClient(context.Background(), &Client{ClientSpec: ClientSpec{ID: id, AuthMethod: AuthNone,
		GrantTypes: []string{GrantAuthorizationCode}, RedirectURIs: []string{gateRedirect}}}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("a run-time client with a gate id: err = %v", err)
	}
	if _, err := e.AddClient(context.Background(), &Client{ClientSpec: ClientSpec{ID: "sneaky", AuthMethod: authInProcess,
		GrantTypes: []string{GrantAuthorizationCode}, RedirectURIs: []string{gateRedirect}}}); err == nil {
		t.Fatal("a run-time client with the in-process authentication method was added")
	}
	clients, _ := e.ListClients(context.Background())
	for _, c := range clients {
		if c.AuthMethod == authInProcess {
			t.Fatalf("listed: %v", c)
		}
	}
}

func TestLoginClientIdempotentMerge(t *testing.T) {
	e := newEngine(t)
	a, err := e.AddLoginClient(gateRedirect, gatePostLogout, "Wiki", "https://wiki.test", []string{"wiki.read"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.AddLoginClient(gateRedirect, "https://wiki.test/bye", "Other", "https://api.wiki.test", []string{"wiki.write", "wiki.read"})
	if err != nil || a != b {
		t.Fatalf("second registration: %q, %v; want %q", b, err, a)
	}
	c := e.loginClient(a)
	if !slices.Equal(c.Audience, []string{"https://wiki.test", "https://api.wiki.test"}) ||
		!slices.Equal(c.Scopes, []string{"openid", "profile", "email", "groups", "wiki.read", "wiki.write"}) ||
		!slices.Equal(c.PostLogoutRedirectURIs, []string{gatePostLogout, "https://wiki.test/bye"}) ||
		!slices.Equal(c.RedirectURIs, []string{gateRedirect}) || c.Name != "Wiki" || !c.Trusted || c.PKCEOptional {
		t.Fatalf("merged client %+v", c.ClientSpec)
	}
	if other, _ := e.AddLoginClient("https://other.test/cb", "", "", "", nil); other == a {
		t.Fatal("two redirect URIs got one client id")
	}
	for _, bad := range [][]string{{"http://wiki.test/cb", ""}, {"https://wiki.test/cb#x", ""}, {gateRedirect, "javascript:alert(1)"}} {
		if _, err := e.AddLoginClient(bad[0], bad[1], "", "", nil); err == nil {
			t.Fatalf("AddLoginClient(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if _, err := e.AddLoginClient("https://x.test/cb", "", "", "", []string{"bad\"scope"}); err == nil {
		t.Fatal("a bad scope was accepted")
	}
}

func TestLoginClientExactRedirect(t *testing.T) {
	e := newEngine(t)
	id := addGate(t, e)
	b := newBrowser(t, e)
	for _, ru := range []string{gateRedirect + "/", gateRedirect + "?x=1", "https://WIKI.test/oauth2/callback", "https://evil.test/oauth2/callback"} {
		q := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {ru}, "state": {"s"},
			"code_challenge": {newChallenge()}, "code_challenge_method": {"S256"}, "scope": {"openid"}}
		rec := b.get(AuthorizePath + "?" + q.Encode())
		if rec.Code == http.StatusFound || rec.Header().Get("Location") != "" {
			t.Fatalf("redirect_uri %q was followed: %d %s", ru, rec.Code, rec.Header().Get("Location"))
		}
	}
}

func TestLoginClientLogoutRedirectsBack(t *testing.T) {
	e := newEngine(t)
	id := addGate(t, e)
	cfg, ctx := gateOAuth2(e, id)
	b := newBrowser(t, e)
	loc, verifier := gateSignIn(t, b, cfg)
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idTok, _ := tok.Extra("id_token").(string)
	// Without a hint, a signed-in user confirms (nobody else may sign
	// the user out).
	rec := b.get(LogoutPath + "?" + url.Values{"post_logout_redirect_uri": {gatePostLogout}, "client_id": {id}}.Encode())
	if !isLogoutPage(rec) {
		t.Fatalf("logout without id_token_hint: %d, want the confirmation page", rec.Code)
	}
	rec = b.get(LogoutPath + "?" + url.Values{"id_token_hint": {idTok}, "post_logout_redirect_uri": {gatePostLogout}, "state": {"s1"}}.Encode())
	if got := mustLocation(t, rec); got.String() != gatePostLogout+"?state=s1" {
		t.Fatalf("logout redirected to %s", got)
	}
	// Signed out: the next sign-in shows the login page.
	gateSignIn(t, b, cfg)
	// An unregistered post-logout URI is never followed.
	rec = b.get(LogoutPath + "?" + url.Values{"id_token_hint": {idTok}, "post_logout_redirect_uri": {"https://evil.test/"}}.Encode())
	if rec.Code == http.StatusFound {
		t.Fatalf("redirected to an unregistered URI: %s", rec.Header().Get("Location"))
	}
}

func TestRevokeUserEndsSignInSessions(t *testing.T) {
	for _, revoke := range []func(*Engine) error{
		func(e *Engine) error { _, err := e.RevokeUser(context.Background(), "alice"); return err },
		func(e *Engine) error { _, err := e.RevokeSubjectOrUser(context.Background(), "alice"); return err },
	} {
		e := newEngine(t)
		id := addGate(t, e)
		cfg, ctx := gateOAuth2(e, id)
		b := newBrowser(t, e)
		loc, verifier := gateSignIn(t, b, cfg)
		tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if err := revoke(e); err != nil {
			t.Fatal(err)
		}
		tok.Expiry = tok.Expiry.Add(-24 * time.Hour)
		if _, err := cfg.TokenSource(ctx, tok).Token(); err == nil {
			t.Fatal("the refresh token works after the user was revoked")
		}
		// gateSignIn fails unless the login page is shown again.
		gateSignIn(t, b, cfg)
	}
}

func TestInProcessTransport(t *testing.T) {
	e := newEngine(t)
	rt := e.InProcessTransport()
	c := &http.Client{Transport: rt}
	resp, err := c.Get(e.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	var m Metadata
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") == "" || json.Unmarshal(body, &m) != nil {
		t.Fatalf("discovery: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if m.EndSessionEndpoint != e.issuer+LogoutPath || m.JWKSURI != e.issuer+JWKSPath {
		t.Fatalf("discovery %+v", m)
	}
	resp, err = c.Get(e.issuer + JWKSPath)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %v", err)
	}
	for _, u := range []string{"https://other.test" + TokenPath, "http://as.test" + TokenPath, "https://as.test/elsewhere", "https://user:pw@as.test" + TokenPath} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := rt.RoundTrip(req); !errors.Is(err, ErrNotIssuerURL) {
			t.Fatalf("%s: err = %v, want ErrNotIssuerURL", u, err)
		}
	}
	// Not started: an error, not a panic.
	cold, err := NewEngine(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, testIssuer+JWKSPath, nil)
	if _, err := cold.InProcessTransport().RoundTrip(req); err == nil {
		t.Fatal("a request before Start was served")
	}
}

// Gates register while requests are served (a reload provisions new
// gates while the old config still serves): no race.
func TestLoginClientConcurrentRegistration(t *testing.T) {
	e := newEngine(t)
	id := addGate(t, e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			if _, err := e.AddLoginClient(gateRedirect, gatePostLogout, "Wiki", "https://api"+strconv.Itoa(i)+".test", nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		if c, err := e.lookupClient(context.Background(), id); err != nil || c == nil || len(c.Audience) == 0 {
			t.Fatalf("lookup during registration: %v, %v", c, err)
		}
		if _, err := e.metadata(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if n := len(e.loginClient(id).Audience); n != 51 {
		t.Fatalf("%d audiences after 51 registrations", n)
	}
}
