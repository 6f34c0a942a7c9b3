package gate

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestLogoutEndsCopiedSession: with an external provider a copy of the
// session cookie stops working at logout on this node, at this gate and
// at every other gate of the process, though the provider's access
// token has not expired.
func TestLogoutEndsCopiedSession(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	t.Setenv("EXT_SECRET", extSecret)
	const src = `oauth_protect {
	audience https://ext.test
	login {
		issuer https://as.test
		client_id ext
		client_secret {env.EXT_SECRET}
	}
}`
	st := &memStorage{m: map[string][]byte{}}
	p := externalLoginGate(t, src, st, app)
	p2 := externalLoginGate(t, src, st, app)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://ext.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	copied := b.session("ext.test")
	if _, ok := serveGate(p2, sessionRequest("https://ext.test/", copied)); !ok {
		t.Fatal("the session does not pass at the second gate before logout")
	}
	if rec := b.get("https://ext.test/oauth2/logout"); rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", rec.Code)
	}
	for i, g := range []*Protect{p, p2} {
		if w, ok := serveGate(g, sessionRequest("https://ext.test/", copied)); ok || w.Code != http.StatusFound {
			t.Errorf("gate %d: the copied cookie after logout: passed %v, status %d", i, ok, w.Code)
		}
	}
	// The set is bounded and forgets an entry after the session's end.
	k := cookieHash("x")
	loggedOut.put(k, struct{}{}, time.Now().Add(-time.Second), time.Now())
	if loggedOutHas(k, time.Now()) {
		t.Error("an entry past its end still counts")
	}
}

// TestBuiltinLogoutRevokesGrant: with the built-in provider a copied
// cookie fails right after logout even on a node that never saw the
// logout (the set emptied): the grant is revoked, so the session's
// access token no longer verifies.
func TestBuiltinLogoutRevokesGrant(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, wikiGate)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	copied := b.session("app.test")
	if rec := b.get("https://app.test/oauth2/logout"); rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", rec.Code)
	}
	loggedOut.mu.Lock()
	clear(loggedOut.m)
	loggedOut.mu.Unlock()
	p.login.sessions = newSessionCache()
	if w, ok := serveGate(p, sessionRequest("https://app.test/", copied)); ok || w.Code != http.StatusFound {
		t.Errorf("the copied built-in cookie after logout: passed %v, status %d", ok, w.Code)
	}
}

// TestLogoutWithStaleCookie: signing out with a cookie a refresh has
// replaced ends the newer cookie too — with the built-in provider on
// every node (the stale refresh token revokes the grant), with an
// external one on this node (the sign-in's chain id).
func TestLogoutWithStaleCookie(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	t.Setenv("EXT_SECRET", extSecret)
	st := &memStorage{m: map[string][]byte{}}
	for _, mode := range []struct {
		name, host string
		gate       func() *Protect
	}{
		{"built-in", "app.test", func() *Protect { return loginGate(t, app, wikiGate) }},
		{"external", "ext.test", func() *Protect {
			return externalLoginGate(t, "oauth_protect {\n audience https://ext.test\n login {\n issuer https://as.test\n client_id ext\n client_secret {env.EXT_SECRET}\n }\n}", st, app)
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			p := mode.gate()
			b := newTestBrowser(t, app.eng, p)
			if rec := b.visit("https://"+mode.host+"/", "alice"); rec.Code != http.StatusOK {
				t.Fatalf("sign-in: %d", rec.Code)
			}
			stale := b.session(mode.host)
			p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
			w, ok := serveGate(p, sessionRequest("https://"+mode.host+"/", stale))
			if !ok || len(w.Result().Cookies()) != 1 {
				t.Fatalf("refresh: passed %v, cookies %v", ok, w.Result().Cookies())
			}
			newer := w.Result().Cookies()[0].Value
			p.login.now = time.Now
			time.Sleep(10 * time.Millisecond)
			if w, _ := serveGate(p, sessionRequest("https://"+mode.host+"/oauth2/logout", stale)); w.Code != http.StatusSeeOther {
				t.Fatalf("logout with the stale cookie: %d", w.Code)
			}
			if mode.name == "built-in" {
				// Another node: nothing in memory, only the revoked grant.
				loggedOut.mu.Lock()
				clear(loggedOut.m)
				loggedOut.mu.Unlock()
				p.login.sessions = newSessionCache()
			}
			if w, ok := serveGate(p, sessionRequest("https://"+mode.host+"/", newer)); ok || w.Code != http.StatusFound {
				t.Errorf("the newer cookie after logout with the stale one: passed %v, status %d", ok, w.Code)
			}
		})
	}
}

// TestRefusedRefreshEndsChain: when the external provider refuses the
// refresh of the newest cookie (the user was revoked there), the older
// cookies of that sign-in, which a refresh had replaced, are refused
// too instead of being answered with the dead successor.
func TestRefusedRefreshEndsChain(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	t.Setenv("EXT_SECRET", extSecret)
	st := &memStorage{m: map[string][]byte{}}
	p := externalLoginGate(t, "oauth_protect {\n audience https://ext.test\n login {\n issuer https://as.test\n client_id ext\n client_secret {env.EXT_SECRET}\n }\n}", st, app)
	b := newTestBrowser(t, app.eng, p)
	if rec := b.visit("https://ext.test/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d", rec.Code)
	}
	c0 := b.session("ext.test")
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 30*time.Second) }
	w, ok := serveGate(p, sessionRequest("https://ext.test/", c0))
	if !ok || len(w.Result().Cookies()) != 1 {
		t.Fatalf("refresh: passed %v, cookies %v", ok, w.Result().Cookies())
	}
	c1 := w.Result().Cookies()[0].Value
	if _, err := app.eng.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	p.login.now = func() time.Time { return time.Now().Add(9*time.Minute + 40*time.Second) } // within the 30 s the replaced cookie is answered with c1
	if w, ok := serveGate(p, sessionRequest("https://ext.test/", c1)); ok || w.Code != http.StatusFound {
		t.Fatalf("the newest cookie after the refused refresh: passed %v, status %d", ok, w.Code)
	}
	if w, ok := serveGate(p, sessionRequest("https://ext.test/", c0)); ok || w.Code != http.StatusFound {
		t.Errorf("the replaced cookie after the refused refresh: passed %v, status %d", ok, w.Code)
	}
}
