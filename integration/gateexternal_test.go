package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// The gate's browser mode against an external OpenID provider: a second,
// real Caddy (the built binary, a child process) runs our oauth_server on
// its own issuer, with a confidential client registered for the gate; the
// Caddy under test has no oauth app at all and signs browsers in through
// the other one with discovery, its JWKS, PKCE and ID token validation.
const (
	extIssuer = "http://localhost:19160"
	extGate   = "http://127.0.0.1:19161"
	extSecret = "wiki-gate-secret-0123456789abcdef"
	carolPass = "carol-password"
)

// extProviderCaddyfile is the external provider's config (admin on
// localhost:19162, unused http/https ports 19163/19164).
func extProviderCaddyfile(t *testing.T, dir string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(carolPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin localhost:19162
	default_bind 127.0.0.1
	http_port 19163
	https_port 19164
	skip_install_trust
	persist_config off
	oauth {
		issuer %s
		storage_path %s/oauth.db
		client wiki-gate {
			secret %s
			redirect_uri %s/oauth2/callback
			post_logout_redirect_uri %[4]s/
			grant_types authorization_code refresh_token
			scopes openid profile email
			trusted
		}
		user carol {
			password_hash %s
			claim email carol@example.com
			claim email_verified true
		}
	}
}
http://:19160 {
	oauth_server
}
`, extIssuer, dir, extSecret, extGate, h)
}

// extGateCaddyfile is the gate's config: no oauth app, one gated site.
func extGateCaddyfile(upstream string) string {
	return fmt.Sprintf(`{
	skip_install_trust
	admin %s
	default_bind 127.0.0.1
	http_port 19150
	https_port 19151
	grace_period 1ns
}
http://127.0.0.1:19161 {
	oauth_protect {
		audience %s
		forward_header X-Forwarded-User sub
		forward_header X-Forwarded-Email email
		login {
			issuer %s
			client_id wiki-gate
			client_secret %s
		}
	}
	reverse_proxy %s
}
`, adminAddr, extGate, extIssuer, extSecret, upstream)
}

// startExternalProvider builds and starts the provider Caddy.
func startExternalProvider(t *testing.T) {
	t.Helper()
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cfg := filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(extProviderCaddyfile(t, home)), 0o600); err != nil {
		t.Fatal(err)
	}
	startCrashChild(t, bin, cfg, home, "provider.log", extIssuer)
}

// TestGateLoginExternalProvider: Chromium opens the gated page, is sent
// to the other Caddy's login page, signs in as carol there and comes back
// to the legacy page with carol's identity from the provider's ID token;
// a reload keeps the session; a request without it is sent to the
// provider again; logout ends the session and the provider's sign-in.
func TestGateLoginExternalProvider(t *testing.T) {
	startExternalProvider(t)
	app := newIdentityApp(t)
	startCaddy(t, extGateCaddyfile(app.addr()))
	wd := startBrowser(t)

	page := extGate + "/wiki/Start"
	wd.Navigate(page)
	authz := wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, extIssuer+"/oauth/authorize?") })
	if !strings.Contains(authz, "client_id=wiki-gate") || !strings.Contains(authz, "code_challenge_method=S256") || !strings.Contains(authz, "nonce=") {
		t.Fatalf("authorization request to the provider: %s", authz)
	}
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	if app.count() != 0 {
		t.Fatal("the upstream was reached before sign-in")
	}
	wd.Type("#username", "carol")
	wd.Type("#password", carolPass+"\n")
	wd.WaitURL(func(u string) bool { return u == page })
	src := wd.WaitSource(func(src string) bool { return strings.Contains(src, "user=carol ") })
	if !strings.Contains(src, "email=carol@example.com") || !strings.Contains(src, "authz=[]") {
		t.Fatalf("the upstream page with the provider's identity:\n%s", src)
	}

	var session string
	for _, c := range browserCookies(wd) {
		if c.Name == gateCookie {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatalf("no %s cookie in the browser: %v", gateCookie, browserCookies(wd))
	}
	wd.Navigate(page)
	if u := wd.URL(); u != page {
		t.Fatalf("reload went to %s", u)
	}
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "user=carol ") })
	resp, body := withCookie(t, page, gateCookie, session)
	if resp.StatusCode != 200 || !strings.Contains(body, "user=carol ") {
		t.Fatalf("the session cookie from a plain client: %d %s", resp.StatusCode, body)
	}
	for i, h := range app.headers() {
		if ck := h.Get("Cookie"); strings.Contains(ck, gateCookie) || strings.Contains(ck, session) {
			t.Fatalf("request %d reached the upstream with the session cookie: %q", i, ck)
		}
	}
	// Without the session: to the provider again; forged: the same.
	resp, body = withCookie(t, page, "", "")
	wantLoginRedirect(t, "no session", resp, body, extIssuer)
	resp, body = withCookie(t, page, gateCookie, flip(session, len(session)/2))
	wantLoginRedirect(t, "a tampered session", resp, body, extIssuer)

	// Logout: RP-initiated logout at the provider, back to the gate's
	// post-logout page (its "/", protected). That page now sends the
	// browser to the provider's login page: the gate's session cookie is
	// gone (else "/" would be the legacy app) and so is the provider's
	// sign-in (else it would answer with a code at once).
	n := app.count()
	wd.Navigate(extGate + "/oauth2/logout")
	wd.WaitURL(func(u string) bool { return strings.HasPrefix(u, extIssuer+"/oauth/authorize?") })
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	if app.count() != n {
		t.Fatal("the upstream was reached during the logout")
	}
}

// foreignIssuerCaddyfile: this Caddy's oauth app (the same storage file,
// so the same keys, in both configs) and one gated site at extGate, in
// built-in mode or, with external, signing in at the external provider.
func foreignIssuerCaddyfile(t *testing.T, storage, upstream string, external bool) string {
	h, err := bcrypt.GenerateFromPassword([]byte(carolPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	login := "login"
	if external {
		login = fmt.Sprintf("login {\n\t\t\tissuer %s\n\t\t\tclient_id wiki-gate\n\t\t\tclient_secret %s\n\t\t}", extIssuer, extSecret)
	}
	return fmt.Sprintf(`{
	skip_install_trust
	admin %s
	default_bind 127.0.0.1
	http_port 19150
	https_port 19151
	grace_period 1ns
	oauth {
		issuer %s
		storage_path %s
		user carol {
			password_hash %s
		}
	}
}
http://:19152 {
	oauth_server
}
http://127.0.0.1:19161 {
	oauth_protect {
		audience %s
		forward_header X-Forwarded-User sub
		%s
	}
	reverse_proxy %s
}
`, adminAddr, gateIssuer, storage, h, extGate, login, upstream)
}

// TestGateLoginForeignIssuerCookie: a session cookie is bound to its
// provider. The same site, sealing with the same keys (one oauth app, one
// storage file), switched from this Caddy's provider to the external one:
// the built-in session of a "carol" is no session for the external
// provider's gate, and the other way round; each config's own sign-in works.
func TestGateLoginForeignIssuerCookie(t *testing.T) {
	startExternalProvider(t)
	app := newIdentityApp(t)
	storage := storagePath(t)
	page := extGate + "/doc"

	startCaddy(t, foreignIssuerCaddyfile(t, storage, app.addr(), false))
	_, builtin := newGateClient(t).signIn(page, gateIssuer, "carol", carolPass)
	if resp, body := withCookie(t, page, gateCookie, builtin.Value); resp.StatusCode != 200 || !strings.Contains(body, "user=carol ") {
		t.Fatalf("the built-in session: %d %s", resp.StatusCode, body)
	}

	startCaddy(t, foreignIssuerCaddyfile(t, storage, app.addr(), true))
	n := app.count()
	resp, body := withCookie(t, page, gateCookie, builtin.Value)
	wantLoginRedirect(t, "the built-in provider's session at the external provider's gate", resp, body, extIssuer)
	if app.count() != n {
		t.Fatal("the foreign session reached the upstream")
	}
	_, external := newGateClient(t).signIn(page, extIssuer, "carol", carolPass)
	if resp, body := withCookie(t, page, gateCookie, external.Value); resp.StatusCode != 200 || !strings.Contains(body, "user=carol ") {
		t.Fatalf("the external provider's session: %d %s", resp.StatusCode, body)
	}

	startCaddy(t, foreignIssuerCaddyfile(t, storage, app.addr(), false))
	resp, body = withCookie(t, page, gateCookie, external.Value)
	wantLoginRedirect(t, "the external provider's session at the built-in provider's gate", resp, body, gateIssuer)
	if resp, body := withCookie(t, page, gateCookie, builtin.Value); resp.StatusCode != 200 || !strings.Contains(body, "user=carol ") {
		t.Fatalf("the built-in session after switching back: %d %s", resp.StatusCode, body)
	}
}
