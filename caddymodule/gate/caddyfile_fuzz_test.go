package gate

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzProtectCaddyfile: the oauth_protect directive parses and provisions
// any input without panicking (Caddy provisions before it validates, so
// Provision must check every value itself); one that provisions also
// validates and has a challenge.
func FuzzProtectCaddyfile(f *testing.F) {
	for _, s := range []string{
		"oauth_protect {\n scopes a\n audience https://x\n forward_header X-User sub\n}",
		"oauth_protect {\n audience \"http://[::1\"\n}", "oauth_protect {\n audience urn:example:billing\n strip_header X-A-*\n}",
		"oauth_protect {\n audience any\n cors {\n origins https://a.test http://b.test:8080\n methods GET\n headers X-Y\n max_age 1m\n credentials\n }\n}",
		"oauth_protect {\n audience https://a.test/p\n forward_preflight\n block_preflight\n realm r\n}",
		"oauth_protect {\n forward_header X\n}",
		"oauth_protect {\n audience https://a.test\n trust_issuer https://i.test {\n algs ES256\n introspect a b\n leeway 1s\n }\n trust_issuer http://localhost:1\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil || len(tokens) == 0 || tokens[0].Text != "oauth_protect" {
			return
		}
		p, err := provisionProtect(input)
		if err == nil && p.challenge == "" {
			t.Fatalf("provisioned %q without a challenge", input)
		}
	})
}
