package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile: the oauth global option and the oauth_protect directive
// parse and provision any input without panicking (Caddy provisions
// before it validates, so Provision must check every value itself); an
// oauth_protect that provisions also validates.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"oauth {\n issuer https://as.test\n client c {\n secret s\n grant_types client_credentials\n scopes a b\n }\n}",
		"oauth {\n issuer https://as.test\n user alice {\n password_hash $2a$04$x\n claim email a@b\n }\n}",
		"oauth {\n issuer http://[::1\n access_token_ttl 10m\n login_max_failures 3\n behind_tls_proxy\n}",
		"oauth {\n issuer https://as.test\n client c {\n public\n redirect_uri http://[::1\n exchange {\n audience urn:x\n }\n }\n}",
		"oauth_protect {\n scopes a\n audience https://x\n forward_header X-User sub\n}",
		"oauth_protect {\n audience \"http://[::1\"\n}", "oauth_protect {\n audience urn:example:billing\n strip_header X-A-*\n}",
		"oauth_protect {\n audience any\n cors {\n origins https://a.test http://b.test:8080\n methods GET\n headers X-Y\n max_age 1m\n credentials\n }\n}",
		"oauth_protect {\n audience https://a.test/p\n forward_preflight\n block_preflight\n realm r\n}",
		"oauth {\n client\n}", "oauth_protect {\n forward_header X\n}", "oauth {\n access_token_ttl nope\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil || len(tokens) == 0 {
			return
		}
		switch tokens[0].Text {
		case "oauth":
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
		case "oauth_protect":
			p, err := provisionProtect(input)
			if err == nil && p.challenge == "" {
				t.Fatalf("provisioned %q without a challenge", input)
			}
		}
	})
}
