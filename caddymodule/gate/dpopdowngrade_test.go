package gate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// dpopTokenFor gets a DPoP-bound token (client_credentials, scope read)
// from eng, with a proof signed by jwx.
func dpopTokenFor(t *testing.T, eng *grants.Engine) string {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	hb, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pub})
	cb, _ := json.Marshal(map[string]any{"jti": tokens.RandomID(12), "htm": "POST", "htu": "https://as.test/oauth/token", "iat": time.Now().Unix()})
	in := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	s, _ := jws.SignerFor(jwa.ES256())
	sig, err := s.Sign(priv, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("DPoP", in+"."+enc.EncodeToString(sig))
	r.SetBasicAuth("svc", "svc-secret-0123456789abcdef0123456789")
	w := httptest.NewRecorder()
	eng.ServeHTTP(w, r)
	var tr grants.TokenResponse
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil || tr.TokenType != "DPoP" {
		t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	return tr.AccessToken
}

// DPOP-18: a DPoP-bound token presented as a bearer token is refused (no
// downgrade); the same client's bearer token passes.
func TestGateRefusesDPoPTokenAsBearer(t *testing.T) {
	p, bearer := startedGate(t, "oauth_protect {\n audience https://api.test\n scopes read\n}")
	bound := dpopTokenFor(t, p.issuer.(testIssuer).eng)
	for tok, want := range map[string]int{bearer: http.StatusOK, bound: http.StatusUnauthorized} {
		r := httptest.NewRequest(http.MethodGet, "https://api.test/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r, _ = caddyRequest(r)
		w := httptest.NewRecorder()
		passed := false
		_ = p.ServeHTTP(w, r, handlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil }))
		if got := map[bool]int{true: http.StatusOK, false: w.Code}[passed]; got != want {
			t.Errorf("token bound=%v: status %d, want %d", tok == bound, got, want)
		}
		if want == http.StatusUnauthorized && !strings.Contains(w.Header().Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("challenge %q", w.Header().Get("WWW-Authenticate"))
		}
	}
}
