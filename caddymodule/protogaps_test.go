package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// parseOAuth parses an oauth global option block into the app.
func parseOAuth(t *testing.T, input string) (*App, error) {
	t.Helper()
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	app := new(App)
	return app, app.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
}

func TestRefreshTokenIdleTTLOption(t *testing.T) {
	app, err := parseOAuth(t, "oauth {\n issuer https://as.test\n refresh_token_idle_ttl 36h\n}")
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(app.RefreshTokenIdleTTL) != 36*time.Hour {
		t.Fatalf("refresh_token_idle_ttl = %v", time.Duration(app.RefreshTokenIdleTTL))
	}
	b, _ := json.Marshal(app)
	if !strings.Contains(string(b), `"refresh_token_idle_ttl":129600000000000`) {
		t.Fatalf("JSON = %s", b)
	}
	if _, err := parseOAuth(t, "oauth {\n refresh_token_idle_ttl soon\n}"); err == nil {
		t.Fatal("a bad duration was accepted")
	}
}
