package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"golang.org/x/oauth2/clientcredentials"
)

// Ports of TestTrustIssuer (see the registry in main_test.go).
const (
	trustIssuer = "http://localhost:19320" // the external provider, a child Caddy
	trustGate   = "http://localhost:19321" // the gate, in this process, without the oauth app
	trustAdmin  = "localhost:19322"        // the provider's admin endpoint
)

// trustProviderCaddyfile is the "external" identity provider: our own
// oauth_server, as a separate Caddy process on another issuer.
const trustProviderCaddyfile = `{
	skip_install_trust
	admin localhost:19322
	http_port 19323
	https_port 19324
	grace_period 1ns
	oauth {
		issuer http://localhost:19320
		storage_path @STORAGE@
		client ext-svc {
			secret ext-svc-secret-0123456789abcdef
			grant_types client_credentials
			scopes read write
			audience http://localhost:19321
		}
	}
}

http://:19320 {
	bind 127.0.0.1
	oauth_server
}
`

// trustGateCaddyfile is the legacy app's gate: no oauth app, only the
// provider's tokens (ES256, the provider's default algorithm); the
// upstream (respond) echoes the identity header.
const trustGateCaddyfile = `{
	skip_install_trust
	admin localhost:2999
	http_port 19080
	https_port 19443
	grace_period 1ns
}

http://localhost:19321 {
	bind 127.0.0.1
	oauth_protect {
		audience http://localhost:19321
		scopes read
		forward_header X-Forwarded-User sub
		trust_issuer http://localhost:19320 {
			algs ES256
		}
	}
	respond "user={http.request.header.X-Forwarded-User}"
}
`

// TestTrustIssuer: a gate trusts the tokens of a real external provider
// (a second Caddy running oauth_server on another issuer): they pass
// with the identity forwarded, the scope rule answers 403, a third
// issuer's token is 401, and a key rotation at the provider is picked up.
func TestTrustIssuer(t *testing.T) {
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cfg := filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(trustProviderCaddyfile, "@STORAGE@", filepath.Join(home, "oauth.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	startCrashChild(t, bin, cfg, home, "provider.log", trustIssuer)
	startCaddy(t, trustGateCaddyfile)

	token := func(scopes ...string) string {
		t.Helper()
		cc := clientcredentials.Config{ClientID: "ext-svc", ClientSecret: "ext-svc-secret-0123456789abcdef",
			TokenURL: trustIssuer + "/oauth/token", Scopes: scopes}
		tok, err := cc.Token(clientContext(t))
		if err != nil {
			t.Fatalf("token from the provider: %v", err)
		}
		return tok.AccessToken
	}
	call := func(tok string) (*http.Response, string) {
		t.Helper()
		req := newRequest(t, http.MethodGet, trustGate+"/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-User", "mallory")
		return httpDo(t, req)
	}

	first := token("read")
	_, claims := jwtParts(t, first)
	resp, body := call(first)
	firstAnswered := time.Now()
	if resp.StatusCode != http.StatusOK || body != "user="+claims["sub"].(string) {
		t.Fatalf("provider's token: status %d, body %q (sub %v)", resp.StatusCode, body, claims["sub"])
	}

	resp, _ = call(token("write"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("token without read: status %d, %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A third issuer: its own key, its own iss; and the same key claiming
	// the provider's iss and current kid.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := jwtParts(t, first)
	for name, c := range map[string]map[string]any{
		"third issuer":          {"iss": "http://localhost:19325", "kid": "third"},
		"forged provider's kid": {"iss": trustIssuer, "kid": hdr["kid"]},
	} {
		claims["iss"] = c["iss"]
		payload, _ := json.Marshal(claims)
		h := jws.NewHeaders()
		_ = h.Set(jws.KeyIDKey, c["kid"])
		_ = h.Set(jws.TypeKey, "at+jwt")
		forged, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), priv, jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatal(err)
		}
		resp, _ = call(string(forged))
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("%s: status %d, %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// Rotation at the provider, through its admin API (what `caddy oauth
	// keys rotate` calls): tokens signed with the new key pass once the
	// gate's refetch bound (one fetch per 10s for unknown kids) allows.
	req := newRequest(t, http.MethodPost, "http://"+trustAdmin+"/oauth/keys/rotate", nil)
	if resp, body := httpDo(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	rotated := token("read")
	if h, _ := jwtParts(t, rotated); h["kid"] == hdr["kid"] {
		t.Fatalf("the provider still signs with %v after rotation", hdr["kid"])
	}
	if time.Since(firstAnswered) < 8*time.Second {
		if resp, _ := call(rotated); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("new kid within 10s of the last fetch: status %d, want 401 (refetch bounded)", resp.StatusCode)
		}
	}
	time.Sleep(time.Until(firstAnswered.Add(10*time.Second + 200*time.Millisecond)))
	if resp, body := call(rotated); resp.StatusCode != http.StatusOK {
		t.Fatalf("token of the rotated key: status %d %q", resp.StatusCode, body)
	}
	if resp, _ := call(first); resp.StatusCode != http.StatusOK {
		t.Fatalf("token of the old key after rotation: status %d", resp.StatusCode)
	}
}
