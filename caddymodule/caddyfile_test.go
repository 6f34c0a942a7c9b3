package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

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

func TestIDTokenSignedResponseAlgOption(t *testing.T) {
	app, err := parseOAuth(t, "oauth {\n client web {\n secret s\n grant_types authorization_code\n redirect_uri https://w.test/cb\n id_token_signed_response_alg ES256\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	if len(app.Clients) != 1 || app.Clients[0].IDTokenSignedResponseAlg != "ES256" {
		t.Fatalf("clients = %+v", app.Clients)
	}
	b, _ := json.Marshal(app.Clients[0])
	if !strings.Contains(string(b), `"id_token_signed_response_alg":"ES256"`) {
		t.Fatalf("JSON = %s", b)
	}
	c, err := app.Clients[0].build(caddy.NewReplacer())
	if err != nil || c.IDTokenSignedResponseAlg != "ES256" {
		t.Fatalf("build: %+v %v", c, err)
	}
	if _, err := parseOAuth(t, "oauth {\n client web {\n id_token_signed_response_alg\n }\n}"); err == nil {
		t.Fatal("missing argument accepted")
	}
}

// TestSealPlainKeysOption: seal_plain_keys is parsed, named the same in
// JSON, takes no argument, and reaches the engine (which refuses it
// without a key encryption key).
func TestSealPlainKeysOption(t *testing.T) {
	app, err := parseOAuth(t, "oauth {\n issuer https://as.test\n key_encryption_key 0123456789abcdef0123456789abcdef\n seal_plain_keys\n}")
	if err != nil {
		t.Fatal(err)
	}
	if !app.SealPlainKeys {
		t.Fatal("seal_plain_keys not set")
	}
	b, _ := json.Marshal(app)
	if !strings.Contains(string(b), `"seal_plain_keys":true`) {
		t.Fatalf("JSON = %s", b)
	}
	if _, err := parseOAuth(t, "oauth {\n seal_plain_keys yes\n}"); err == nil {
		t.Fatal("seal_plain_keys with an argument was accepted")
	}
	t.Setenv("OAUTH_KEK", "")
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n seal_plain_keys\n}"); err == nil || !strings.Contains(err.Error(), "seal_plain_keys") {
		t.Fatalf("seal_plain_keys without a key encryption key: %v", err)
	}
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n key_encryption_key 0123456789abcdef0123456789abcdef\n seal_plain_keys\n}"); err != nil {
		t.Fatalf("seal_plain_keys with a key encryption key: %v", err)
	}
}
