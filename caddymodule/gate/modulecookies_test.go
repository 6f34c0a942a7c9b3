package gate

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestModuleCookiesStripped: two login gates on one host (different
// cookie_name) never forward each other's session or sign-in cookies,
// nor the authorization server's, to their upstreams; a token-only gate
// strips them too. Other cookies reach the upstream as sent.
func TestModuleCookiesStripped(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	gateA := loginGate(t, app, "oauth_protect {\n audience https://app.test/a\n login {\n cookie_name gate_a\n callback_path /a/callback\n logout_path /a/logout\n }\n}")
	gateB := loginGate(t, app, "oauth_protect {\n audience https://app.test/b\n login {\n cookie_name gate_b\n callback_path /b/callback\n logout_path /b/logout\n }\n}")
	bA := newTestBrowser(t, app.eng, gateA)
	if rec := bA.visit("https://app.test/a/", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("sign-in at gate A: %d", rec.Code)
	}
	sessA := bA.jars["app.test"]["__Host-gate_a"]
	if sessA == nil {
		t.Fatalf("no session cookie for gate A: %v", bA.jars["app.test"])
	}
	others := "__Host-gate_b=stolen; gate_b=x; __Host-gate_b_login2=y; gate_b_login0=z; oauthgate_session=s; oauthgate_csrf=c; __Host-oauthgate_session=t"
	const keep = "theme=dark; gate_b_x=1; other = v w"
	send := func(p *Protect, own string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://app.test/a/page", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		r.TLS = tlsState
		r.Header["Cookie"] = []string{own + others + "; " + keep, "lang=en"}
		r, _ = caddyRequest(r)
		var seen *http.Request
		w := httptest.NewRecorder()
		_ = p.ServeHTTP(w, r, handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r
			return nil
		}))
		if seen == nil {
			t.Fatalf("upstream not reached: %d", w.Code)
		}
		return seen
	}
	seen := send(gateA, "__Host-gate_a="+sessA.Value+"; ")
	if got := seen.Header["Cookie"]; len(got) != 2 || got[0] != keep || got[1] != "lang=en" {
		t.Errorf("gate A forwarded Cookie %q, want [%q %q]", got, keep, "lang=en")
	}
	// A token-only gate in the same process strips every login gate's
	// cookies and the server's.
	p, token := startedGate(t, "oauth_protect {\n audience https://api.test\n}")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header["Cookie"] = []string{"__Host-gate_a=" + sessA.Value + "; " + others + "; " + keep}
	r, _ = caddyRequest(r)
	var got []string
	w := httptest.NewRecorder()
	_ = p.ServeHTTP(w, r, handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got = r.Header["Cookie"]
		return nil
	}))
	if w.Code != http.StatusOK || len(got) != 1 || got[0] != keep {
		t.Errorf("token gate: %d, forwarded Cookie %q, want %q", w.Code, got, keep)
	}
	// Gate B's names leave the registry with its configuration.
	if err := gateB.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if moduleCookies.has("__Host-gate_b") || !moduleCookies.has("__Host-gate_a_login3") || !moduleCookies.has("oauthgate_csrf") {
		t.Error("Cleanup did not remove exactly gate B's cookie names")
	}
	_ = gateB.Cleanup() // twice is harmless
	if !moduleCookies.has("gate_a") {
		t.Error("a second Cleanup removed another gate's names")
	}
}
