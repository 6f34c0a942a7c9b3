package gate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAllowUsersAnyIssuer pins what docs/browser-login.md and
// docs/external-tokens.md say: allow_users matches preferred_username
// (else sub) whatever accepted issuer made the token, so a gate that
// trusts two issuers admits both issuers' user of that name.
func TestAllowUsersAnyIssuer(t *testing.T) {
	prov := newTestProvider(t)
	app := startedIssuer(t)
	p := externalGate(t, prov, app, "\n allow_users svc")
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", svcSecret)
	rec := httptest.NewRecorder()
	app.eng.ServeHTTP(rec, r)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token: %s", rec.Body)
	}
	for name, tok := range map[string]string{
		"the app's svc":                 tr.AccessToken,
		"the trusted issuer's sub svc":  sign(t, prov.key("k1"), nil, prov.claims(map[string]any{"sub": "svc"})),
		"the trusted issuer's name svc": sign(t, prov.key("k1"), nil, prov.claims(map[string]any{"sub": "x1", "preferred_username": "svc"})),
	} {
		if w, _ := callGate(t, p, tok); w.Code != http.StatusOK {
			t.Errorf("%s: status %d, want 200", name, w.Code)
		}
	}
	if w, _ := callGate(t, p, sign(t, prov.key("k1"), nil, prov.claims(nil))); w.Code != http.StatusForbidden {
		t.Errorf("the trusted issuer's alice: status %d, want 403", w.Code)
	}
}
