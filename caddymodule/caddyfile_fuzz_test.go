package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile: the oauth global option parses and provisions any input
// without panicking (Caddy provisions before it validates, so Provision
// must check every value itself). The gate has its own
// (gate.FuzzProtectCaddyfile).
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"oauth {\n issuer https://as.test\n client c {\n secret s\n grant_types client_credentials\n scopes a b\n }\n}",
		"oauth {\n issuer https://as.test\n user alice {\n password_hash $2a$04$x\n claim email a@b\n }\n}",
		"oauth {\n issuer http://[::1\n access_token_ttl 10m\n login_max_failures 3\n behind_tls_proxy\n}",
		"oauth {\n issuer https://as.test\n client c {\n public\n redirect_uri http://[::1\n exchange {\n audience urn:x\n }\n }\n}",
		"oauth {\n client\n}", "oauth {\n access_token_ttl nope\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil || len(tokens) == 0 {
			return
		}
		if tokens[0].Text == "oauth" {
			// Options that read files or fetch URLs at provisioning are
			// left to the table tests.
			for _, tok := range tokens {
				switch tok.Text {
				case "jwks_file", "jwks_uri", "cert_file", "templates_dir", "logo":
					return
				}
				if strings.Contains(tok.Text, "{") {
					return // placeholders read the environment
				}
			}
			_, _ = provisionApp(input)
		}
	})
}
