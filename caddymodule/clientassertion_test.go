package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// Client configs of the assertion methods: what loads and what is
// refused, with a message that says what to fix.
func TestClientAssertionConfig(t *testing.T) {
	const jwks = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
	file := filepath.Join(t.TempDir(), "c.jwks")
	if err := os.WriteFile(file, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	cc := func(mod func(*ClientConfig)) ClientConfig {
		c := ClientConfig{ClientSpec: grants.ClientSpec{ID: "svc", AuthMethod: "private_key_jwt", GrantTypes: []string{"client_credentials"}}}
		mod(&c)
		return c
	}
	long := strings.Repeat("s", 32)
	tests := []struct {
		name string
		cc   ClientConfig
		want string // "" = loads
	}{
		{"inline jwks", cc(func(c *ClientConfig) { c.JWKS = json.RawMessage(jwks) }), ""},
		{"jwks_file", cc(func(c *ClientConfig) { c.JWKSFile = file }), ""},
		{"jwks_uri", cc(func(c *ClientConfig) { c.JWKSURI = "https://keys.example.com/jwks" }), ""},
		{"client_secret_jwt", cc(func(c *ClientConfig) { c.AuthMethod, c.Secret = "client_secret_jwt", long }), ""},
		{"no keys", cc(func(*ClientConfig) {}), "needs jwks, jwks_file or jwks_uri"},
		{"two key sources", cc(func(c *ClientConfig) { c.JWKS, c.JWKSFile = json.RawMessage(jwks), file }), "use one of jwks, jwks_file and jwks_uri"},
		{"jwks for a secret client", cc(func(c *ClientConfig) { c.AuthMethod, c.Secret, c.JWKSFile = "client_secret_basic", long, file }), "are for auth_method private_key_jwt"},
		{"http jwks_uri", cc(func(c *ClientConfig) { c.JWKSURI = "http://keys.example.com/jwks" }), "must be an absolute https URL"},
		{"missing jwks_file", cc(func(c *ClientConfig) { c.JWKSFile = file + ".nope" }), "no such file"},
		{"private key in jwks", cc(func(c *ClientConfig) {
			c.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}`)
		}), "only public keys"},
		{"pkj with a secret", cc(func(c *ClientConfig) { c.JWKSFile, c.Secret = file, long }), "has no secret"},
		{"short secret for client_secret_jwt", cc(func(c *ClientConfig) { c.AuthMethod, c.Secret = "client_secret_jwt", "short" }), "at least 32 bytes"},
		{"secret_hash for client_secret_jwt", cc(func(c *ClientConfig) {
			c.AuthMethod, c.SecretHash = "client_secret_jwt", "sha256:"+strings.Repeat("ab", 32)
		}), "at least 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.cc.build(caddy.NewReplacer(), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("build: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("build err = %v, want one containing %q", err, tt.want)
			case tt.want == "" && tt.cc.AuthMethod == "client_secret_jwt" && (string(c.Secret) != long || c.SecretHash != [32]byte{}):
				t.Fatal("client_secret_jwt must keep the plain secret and no hash")
			}
		})
	}
}
