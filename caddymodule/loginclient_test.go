package caddymodule

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// loginIssuer is the method set the gate's LoginIssuer interface asks of
// the oauth app (the contract of issue 13); the gate package declares it.
type loginIssuer interface {
	Verifier() (*tokens.Verifier, error)
	GateSettings() (issuer string, behindTLSProxy bool)
	LoginClient(redirectURI, postLogoutURI, name, audience string, scopes []string) (clientID string, rt http.RoundTripper, err error)
	SessionSealer() (*tokens.Sealer, error)
}

var _ loginIssuer = (*App)(nil)

func storedApp(t *testing.T, path string) *App {
	t.Helper()
	app, err := provisionApp("oauth {\n issuer https://as.test\n storage_path " + path + "\n}")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Cleanup() })
	return app
}

func TestAppLoginClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	app := storedApp(t, path)
	id, rt, err := app.LoginClient("https://wiki.test/oauth2/callback", "https://wiki.test/", "Wiki", "https://wiki.test", nil)
	if err != nil || id != grants.LoginClientID("https://wiki.test/oauth2/callback") {
		t.Fatalf("LoginClient = %q, %v", id, err)
	}
	resp, err := (&http.Client{Transport: rt}).Get("https://as.test/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var m grants.Metadata
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &m) != nil || m.EndSessionEndpoint != "https://as.test/oauth/logout" {
		t.Fatalf("discovery in process: %d %s", resp.StatusCode, body)
	}
	if _, err := rt.RoundTrip(mustRequest(t, "https://elsewhere.test/oauth/token")); err == nil {
		t.Fatal("a request for another host went through the in-process transport")
	}
	s, err := app.SessionSealer()
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("cookie"), []byte("alice"))
	// A reload (another app on the same storage) opens what this one sealed.
	_ = app.Cleanup()
	again := storedApp(t, path)
	s2, err := again.SessionSealer()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Open([]byte("cookie"), sealed); err != nil || string(got) != "alice" {
		t.Fatalf("after a reload: Open = %q, %v", got, err)
	}
}

func TestAppLoginClientStorageUnavailable(t *testing.T) {
	app, _ := unopenableApp(t)
	_, rt, err := app.LoginClient("https://wiki.test/oauth2/callback", "", "", "https://wiki.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(mustRequest(t, "https://as.test/oauth/jwks"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"temporarily_unavailable"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("storage unavailable: %d %s", resp.StatusCode, body)
	}
	if _, err := app.SessionSealer(); err == nil {
		t.Fatal("SessionSealer without storage gave no error")
	}
	if _, _, err := app.LoginClient("http://wiki.test/cb", "", "", "", nil); err == nil {
		t.Fatal("an http redirect URI on a public host was accepted")
	}
}

func mustRequest(t *testing.T, u string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
