package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Attacks on the gate's browser mode, each its own test, with a plain
// net/http client and cookie jar (gatelogin_test.go has the config and
// the helpers).

// noSessionSet fails when resp sets a session cookie with a value.
func noSessionSet(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	if c := setCookie(resp, gateCookie); c != nil && c.Value != "" && c.MaxAge >= 0 {
		t.Fatalf("%s set a session cookie: %v", what, resp.Header.Values("Set-Cookie"))
	}
}

// TestGateLoginCallbackStateMismatch: the callback redeems a code only for
// the browser that started that sign-in. A state that does not match the
// browser's login cookie, another browser's code and state, and a callback
// with no login cookie at all are each answered 400 with no session.
func TestGateLoginCallbackStateMismatch(t *testing.T) {
	startGate(t)
	target := gateWiki + "/secret"

	// The victim's own code, with a state other than its login cookie's:
	// PKCE alone would let this through, so only the state check stops it.
	victim := newGateClient(t)
	cb := victim.authorize(victim.startLogin(target, gateIssuer), "alice", alicePass)
	forged := *cb
	q := forged.Query()
	q.Set("state", strings.Repeat("x", len(q.Get("state"))))
	forged.RawQuery = q.Encode()
	resp, body := victim.get(forged.String())
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback with a state not matching the login cookie: %d %q, want 400: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	noSessionSet(t, "a callback with the wrong state", resp)
	resp, body = victim.get(target)
	wantLoginRedirect(t, "after a refused callback", resp, body, gateIssuer)

	// Login CSRF: the attacker's own code and state, fed to the victim's
	// browser, never sign the victim in as the attacker.
	attacker := newGateClient(t)
	acb := attacker.authorize(attacker.startLogin(target, gateIssuer), "bob", bobPass)
	victim2 := newGateClient(t)
	victim2.startLogin(target, gateIssuer)
	resp, body = victim2.get(acb.String())
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback with another browser's code and state: %d %q, want 400: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	noSessionSet(t, "another browser's callback", resp)
	resp, body = victim2.get(target)
	wantLoginRedirect(t, "after another browser's callback", resp, body, gateIssuer)

	// No login cookie at all (the link opened in a fresh browser).
	resp, body = withCookie(t, acb.String(), "", "")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback without a login cookie: %d %q, want 400: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	noSessionSet(t, "a callback without a login cookie", resp)

	// The real thing still works: a fresh sign-in is let in.
	ok := newGateClient(t)
	ok.signIn(target, gateIssuer, "alice", alicePass)
	if resp, body := ok.get(target); resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("a matching callback: %d %s", resp.StatusCode, body)
	}
}

// rawGet sends a request line with target exactly as given (no URL
// cleaning by the client) and returns the answer.
func rawGet(t *testing.T, hostport, target string, cookies []*http.Cookie) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", hostport, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var ck []string
	for _, c := range cookies {
		ck = append(ck, c.Name+"="+c.Value)
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: " + hostport + "\r\nConnection: close\r\n"
	if len(ck) > 0 {
		req += "Cookie: " + strings.Join(ck, "; ") + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	resp.Body.Close()
	return resp
}

// sameSite reports why a Location would take a browser off site, or "".
func offSite(site, loc string) string {
	if strings.ContainsAny(loc, "\\\t\r\n") || strings.TrimSpace(loc) != loc {
		return "has a backslash, control character or space, which browsers drop or read as /"
	}
	if strings.HasPrefix(loc, site+"/") {
		return ""
	}
	if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
		return "is neither a path on the site nor the site's origin"
	}
	base, _ := url.Parse(site + "/")
	u, err := url.Parse(loc)
	if err != nil {
		return "does not parse"
	}
	if r := base.ResolveReference(u); r.Scheme+"://"+r.Host != site {
		return "resolves to " + r.Scheme + "://" + r.Host
	}
	return ""
}

// TestGateLoginOpenRedirect: the address the browser returns to after
// signing in is the one it asked for on this site, whatever that path
// looks like: no path makes the gate redirect to another host.
func TestGateLoginOpenRedirect(t *testing.T) {
	startGate(t)
	host := strings.TrimPrefix(gateWiki, "http://")
	paths := []string{
		"//evil.example/",
		"///evil.example/x",
		"//evil.example/%2F..",
		`/\evil.example/`,
		`/\/evil.example/`,
		"/%5Cevil.example/",
		"/%2F%2Fevil.example/",
		"/%2f/evil.example/",
		"/%5C%5Cevil.example",
		"/https://evil.example/",
		"/https:%2F%2Fevil.example/",
		"/..//evil.example/",
		"/.//evil.example",
		"/%09/evil.example",
		"/%0D%0ALocation:%20https://evil.example/",
		"/?next=https://evil.example/",
		"https://evil.example/",
	}
	for _, p := range paths {
		g := newGateClient(t)
		resp := rawGet(t, host, p, nil)
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, gateIssuer+"/oauth/authorize?") {
			// Refused outright (400, 404): fine, as long as it does not
			// send the browser anywhere.
			if loc != "" {
				if why := offSite(gateWiki, loc); why != "" {
					t.Errorf("GET %q: Location %q %s", p, loc, why)
				}
			}
			t.Logf("GET %q: %d %q", p, resp.StatusCode, loc)
			continue
		}
		authz, _ := url.Parse(loc)
		if ru := authz.Query().Get("redirect_uri"); ru != gateWiki+"/oauth2/callback" {
			t.Errorf("GET %q: redirect_uri %q", p, ru)
			continue
		}
		g.jar.SetCookies(&url.URL{Scheme: "http", Host: host, Path: "/"}, resp.Cookies())
		cb := g.authorize(authz, "alice", alicePass)
		resp, body := g.get(cb.String())
		if resp.StatusCode < 300 || resp.StatusCode > 399 || setCookie(resp, gateCookie) == nil {
			t.Errorf("GET %q: callback %d, want a redirect with a session: %s", p, resp.StatusCode, body)
			continue
		}
		back := resp.Header.Get("Location")
		if why := offSite(gateWiki, back); why != "" {
			t.Errorf("GET %q: after sign-in, Location %q %s", p, back, why)
		}
		t.Logf("GET %q: back to %q", p, back)
	}

	// The logout path takes no return address from the request.
	g := newGateClient(t)
	g.signIn(gateWiki+"/", gateIssuer, "alice", alicePass)
	evil := url.QueryEscape("https://evil.example/")
	resp, _ := g.get(gateWiki + "/oauth2/logout?post_logout_redirect_uri=" + evil + "&rd=" + evil + "&return_to=" + evil + "&next=" + evil)
	if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil") {
		t.Fatalf("logout redirected to %q", loc)
	}
}

// randomCookie is a URL-safe random value of n bytes.
func randomCookie(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// flip changes the character at i to another URL-safe one.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// TestGateLoginForgedSession: a session cookie the gate did not seal, or
// sealed by another Caddy's keys, is no session: the browser is sent to
// sign in and a script gets 401, never the upstream.
func TestGateLoginForgedSession(t *testing.T) {
	startGate(t)
	page := gateWiki + "/secret"
	_, real := newGateClient(t).signIn(page, gateIssuer, "alice", alicePass)
	v := real.Value
	if resp, body := withCookie(t, page, gateCookie, v); resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("the real session cookie: %d %s", resp.StatusCode, body)
	}
	forged := map[string]string{
		"random":             randomCookie(len(v) * 3 / 4),
		"random short":       randomCookie(16),
		"random long":        randomCookie(3000),
		"dots":               "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
		"first char changed": flip(v, 0),
		"middle changed":     flip(v, len(v)/2),
		"last char changed":  flip(v, len(v)-1),
		"truncated":          v[:len(v)-1],
		"extended":           v + "A",
		"doubled":            v + v,
	}
	for name, c := range forged {
		resp, body := withCookie(t, page, gateCookie, c)
		wantLoginRedirect(t, "a forged session cookie ("+name+")", resp, body, gateIssuer)
		resp, body = withCookie(t, page, gateCookie, c, "Accept", "application/json")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a forged session cookie (%s) on a JSON request: %d, want 401: %s", name, resp.StatusCode, body)
		}
	}

	// Another Caddy's cookie: the same config on another storage file
	// (other keys) does not take the first one's session.
	startGate(t)
	resp, body := withCookie(t, page, gateCookie, v)
	wantLoginRedirect(t, "a session cookie sealed by another Caddy's keys", resp, body, gateIssuer)
	_, other := newGateClient(t).signIn(page, gateIssuer, "alice", alicePass)
	if resp, body := withCookie(t, page, gateCookie, other.Value); resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("the second Caddy's own session cookie: %d %s", resp.StatusCode, body)
	}
}

// TestGateLoginSessionFixation: a session cookie planted in the browser
// before sign-in is not the session after it: the callback sets a new
// value, and the planted one still authenticates nobody.
func TestGateLoginSessionFixation(t *testing.T) {
	startGate(t)
	page := gateWiki + "/secret"
	planted := randomCookie(96)
	g := newGateClient(t)
	g.jar.SetCookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(gateWiki, "http://"), Path: "/"},
		[]*http.Cookie{{Name: gateCookie, Value: planted, Path: "/"}})
	_, c := g.signIn(page, gateIssuer, "alice", alicePass)
	if c.Value == planted {
		t.Fatal("the callback kept the planted session cookie")
	}
	if resp, body := g.get(page); resp.StatusCode != http.StatusOK || !strings.Contains(body, "user=alice ") {
		t.Fatalf("after sign-in with a planted cookie: %d %s", resp.StatusCode, body)
	}
	resp, body := withCookie(t, page, gateCookie, planted)
	wantLoginRedirect(t, "the planted cookie after the victim signed in", resp, body, gateIssuer)
}

// TestGateLoginOtherGateSession: a session made for one gate is not a
// session at another gate of the same Caddy (another audience): it cannot
// carry a user past allow rules it was not checked against, or into an
// app it was not issued for.
func TestGateLoginOtherGateSession(t *testing.T) {
	app := startGate(t)
	_, bob := newGateClient(t).signIn(gateWiki+"/", gateIssuer, "bob", bobPass)
	_, alice := newGateClient(t).signIn(gateWiki+"/", gateIssuer, "alice", alicePass)
	for _, site := range []string{gateAdmins, gateAlice} {
		n := app.count()
		resp, body := withCookie(t, site+"/report", gateCookie, bob.Value)
		if resp.StatusCode == http.StatusOK || app.count() != n {
			t.Fatalf("%s: the wiki's session of bob was let through: %d %s", site, resp.StatusCode, body)
		}
		resp, body = withCookie(t, site+"/report", gateCookie, alice.Value)
		wantLoginRedirect(t, fmt.Sprintf("%s with the wiki's session of alice", site), resp, body, gateIssuer)
	}
}

// TestGateLoginClientOnlyInProcess: the gate's client at the built-in
// server has no secret; it authenticates only through the gate's
// in-process transport. Someone who reads its client_id and redirect URI
// off the authorization request, runs an authorization with their own
// PKCE verifier and sees the code, cannot redeem it over HTTP: the token
// endpoint answers invalid_client, however the client is presented.
func TestGateLoginClientOnlyInProcess(t *testing.T) {
	startGate(t)
	g := newGateClient(t)
	gateAuthz := g.startLogin(gateWiki+"/", gateIssuer)
	clientID, redirectURI := gateAuthz.Query().Get("client_id"), gateAuthz.Query().Get("redirect_uri")

	verifier := oauth2.GenerateVerifier()
	own := *gateAuthz
	q := own.Query()
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
	q.Set("state", randomCookie(16))
	q.Set("nonce", randomCookie(16))
	own.RawQuery = q.Encode()
	cb := g.authorize(&own, "alice", alicePass)
	code := cb.Query().Get("code")

	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}
	for name, present := range map[string]func(*http.Request, url.Values){
		"client_id in the body, no secret": func(_ *http.Request, f url.Values) { f.Set("client_id", clientID) },
		"Basic with an empty secret":       func(r *http.Request, _ url.Values) { r.SetBasicAuth(clientID, "") },
		"Basic with a guessed secret":      func(r *http.Request, _ url.Values) { r.SetBasicAuth(clientID, "secret") },
		"client_secret_post":               func(_ *http.Request, f url.Values) { f.Set("client_id", clientID); f.Set("client_secret", "x") },
	} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		req := newRequest(t, http.MethodPost, gateIssuer+"/oauth/token", nil)
		present(req, f)
		req.Body = io.NopCloser(strings.NewReader(f.Encode()))
		req.ContentLength = int64(len(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := httpDo(t, req)
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"invalid_client"`) {
			t.Fatalf("redeeming the gate client's code over HTTP (%s): %d %s, want invalid_client", name, resp.StatusCode, body)
		}
		if strings.Contains(body, "access_token") {
			t.Fatalf("an access token for the gate's client over HTTP (%s): %s", name, body)
		}
	}
}
