package gate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// TestBearerAllowGroups: a bearer token of the built-in server passes
// allow_groups when it was granted the groups scope (the server puts the
// user's groups in the access token); without the scope it is 403.
func TestBearerAllowGroups(t *testing.T) {
	app := startedLoginIssuer(t, 10*time.Minute)
	p := loginGate(t, app, "oauth_protect {\n audience https://app.test\n allow_groups admins\n}")
	for scope, want := range map[string]int{"groups": http.StatusOK, "read": http.StatusForbidden, "openid groups read": http.StatusOK} {
		form := url.Values{"grant_type": {grants.GrantPassword}, "username": {"alice"}, "password": {userPassword}, "scope": {scope}}
		r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("pw", extSecret)
		r.RemoteAddr = "127.0.0.1:5555"
		w := httptest.NewRecorder()
		app.eng.ServeHTTP(w, r)
		var tr grants.TokenResponse
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
			t.Fatalf("scope %q: token endpoint %d %s", scope, w.Code, w.Body)
		}
		r = httptest.NewRequest(http.MethodGet, "https://app.test/", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		r.TLS = tlsState
		r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		r, _ = caddyRequest(r)
		if w, ok := serveGate(p, r); w.Code != want || ok != (want == http.StatusOK) {
			t.Errorf("scope %q: the gate answered %d, want %d", scope, w.Code, want)
		}
	}
}
