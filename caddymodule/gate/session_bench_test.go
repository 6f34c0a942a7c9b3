package gate

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkGateSession is a request with a session cookie through a
// browser-mode gate (cached session, access token verified from the
// verifier's cache, identity header set), next to BenchmarkGateBearer,
// the same gate's work for a bearer token.
func BenchmarkGateSession(b *testing.B) {
	app := startedLoginIssuer(b, time.Hour)
	p := loginGate(b, app, "oauth_protect {\n audience https://app.test\n forward_header X-Forwarded-User preferred_username\n login\n}")
	br := newTestBrowser(b, app.eng, p)
	if rec := br.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		b.Fatalf("sign-in: %d", rec.Code)
	}
	cookie := "theme=dark; __Host-oauthgate_app=" + br.session("app.test")
	benchGate(b, p, func(r *http.Request) { r.Header.Set("Cookie", cookie) })
}

// BenchmarkGateBearer is BenchmarkGateSession's baseline: a bearer token
// through a gate without login.
func BenchmarkGateBearer(b *testing.B) {
	app := startedLoginIssuer(b, time.Hour)
	br := newTestBrowser(b, app.eng, loginGate(b, app, "oauth_protect {\n audience https://app.test\n login\n}"))
	if rec := br.visit("https://app.test/", "alice"); rec.Code != http.StatusOK {
		b.Fatalf("sign-in: %d", rec.Code)
	}
	p := loginGate(b, app, "oauth_protect {\n audience https://app.test\n forward_header X-Forwarded-User sub\n}")
	rp, _ := br.gate.login.relyingParty(b.Context())
	token := rp.openCookie(br.session("app.test")).data.AccessToken
	benchGate(b, p, func(r *http.Request) {
		r.Header.Set("Cookie", "theme=dark")
		r.Header.Set("Authorization", "Bearer "+token)
	})
}

func benchGate(b *testing.B, p *Protect, set func(*http.Request)) {
	next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get("X-Forwarded-User") == "" {
			b.Fatal("no identity")
		}
		return nil
	})
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "https://app.test/page", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		r.TLS = tlsState
		set(r)
		r, _ = caddyRequest(r)
		w := httptest.NewRecorder()
		if err := p.ServeHTTP(w, r, next); err != nil || w.Code != http.StatusOK {
			b.Fatalf("%d %v", w.Code, err)
		}
	}
}
