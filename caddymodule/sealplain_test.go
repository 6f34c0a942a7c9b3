package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
)

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
