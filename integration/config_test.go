package integration

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// configWith builds a Caddyfile from an oauth global option body and site
// blocks.
func configWith(oauth, sites string) string {
	globals := "{\n\tskip_install_trust\n\tadmin localhost:2999\n\thttp_port 19080\n\thttps_port 19443\n\tgrace_period 1ns\n"
	if oauth != "" {
		globals += "\toauth {\n" + oauth + "\n\t}\n"
	}
	return globals + "}\n\n" + sites
}

const (
	asSite  = "http://:19100 {\n\tbind 127.0.0.1\n\toauth_server\n}\n"
	apiSite = "http://localhost:19101 {\n\tbind 127.0.0.1\n\toauth_protect {\n\t\tscopes invoices:read\n\t\taudience http://localhost:19101\n\t}\n\trespond ok\n}\n"
)

// TestConfigErrors loads broken configs through the admin API, as
// `caddy reload` would: each is refused with a message that names the
// problem, and the running config keeps working.
func TestConfigErrors(t *testing.T) {
	up := newUpstream(t)
	path := storagePath(t)
	startCaddy(t, render(baseCaddyfile, path, up.addr()))
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken

	good := "\t\tissuer http://localhost:19100\n\t\tstorage_path " + path + "\n"
	client := func(body string) string {
		return good + "\t\tclient svc {\n" + body + "\n\t\t}"
	}
	const okClient = "\t\t\tsecret s3cret-0123456789abcdef\n\t\t\tgrant_types client_credentials"

	cases := []struct {
		name string
		cfg  string
		want []string
	}{
		{
			name: "missing issuer",
			cfg:  configWith("\t\tstorage_path "+path+"\n\t\tclient svc {\n"+okClient+"\n\t\t}", asSite),
			want: []string{"issuer is required"},
		},
		{
			name: "plain http issuer off localhost",
			cfg:  configWith("\t\tissuer http://auth.example.com", asSite),
			want: []string{`"http://auth.example.com"`, "must use https"},
		},
		{
			name: "unknown grant type",
			cfg:  configWith(client("\t\t\tsecret s3cret-0123456789abcdef\n\t\t\tgrant_types client_credentials password_nope"), asSite),
			want: []string{`client "svc"`, `grant type "password_nope" is not supported`},
		},
		{
			name: "client without secret",
			cfg:  configWith(client("\t\t\tgrant_types client_credentials"), asSite),
			want: []string{`client "svc"`, "a secret or secret_hash is required"},
		},
		{
			name: "secret from an unset environment variable",
			cfg:  configWith(client("\t\t\tsecret {env.OAUTHGATE_TEST_SURELY_UNSET}\n\t\t\tgrant_types client_credentials"), asSite),
			want: []string{`client "svc"`, "empty after replacing placeholders"},
		},
		{
			name: "secret and secret_hash",
			cfg:  configWith(client("\t\t\tsecret s3cret-0123456789abcdef\n\t\t\tsecret_hash sha256:"+strings.Repeat("ab", 32)+"\n\t\t\tgrant_types client_credentials"), asSite),
			want: []string{`client "svc"`, "secret or secret_hash, not both"},
		},
		{
			name: "malformed secret_hash",
			cfg:  configWith(client("\t\t\tsecret_hash md5:abcd\n\t\t\tgrant_types client_credentials"), asSite),
			want: []string{`client "svc"`, "sha256:<64 hex digits>"},
		},
		{
			name: "unsupported signing_alg",
			cfg:  configWith(good+"\t\tsigning_alg HS256", asSite),
			want: []string{`signing_alg "HS256" is not supported`},
		},
		{
			name: "client defined twice",
			cfg:  configWith(client(okClient)+"\n\t\tclient svc {\n"+okClient+"\n\t\t}", asSite),
			want: []string{`client "svc" is defined twice`},
		},
		{
			name: "oauth_protect without the oauth global option",
			cfg:  configWith("", apiSite),
			want: []string{"oauth_protect needs the `oauth` global option"},
		},
		{
			name: "oauth_server without the oauth global option",
			cfg:  configWith("", asSite),
			want: []string{"oauth_server needs the `oauth` global option"},
		},
		{
			name: "unknown oauth_protect subdirective",
			cfg:  configWith(good, strings.Replace(apiSite, "scopes invoices:read", "scope invoices:read", 1)),
			want: []string{`unknown oauth_protect option "scope"`, "Caddyfile:"},
		},
		{
			name: "unknown client subdirective",
			cfg:  configWith(client(okClient+"\n\t\t\tscope invoices:read"), asSite),
			want: []string{`unknown option "scope" in client "svc"`, "Caddyfile:"},
		},
		{
			name: "unknown oauth option",
			cfg:  configWith(good+"\t\tisuer http://localhost:19100", asSite),
			want: []string{`unknown oauth option "isuer"`, "Caddyfile:"},
		},
		{
			name: "forward_header without a claim",
			cfg:  configWith(good, strings.Replace(apiSite, "scopes invoices:read", "forward_header X-Forwarded-User", 1)),
			want: []string{"forward_header needs a header name and a claim name"},
		},
		{
			name: "oauth_protect without audience",
			cfg:  configWith(good, strings.Replace(apiSite, "\t\taudience http://localhost:19101\n", "", 1)),
			want: []string{"audience is required", "`any`"},
		},
		{
			name: "unparsable audience",
			cfg:  configWith(good, strings.Replace(apiSite, "audience http://localhost:19101", `audience "http://[::1"`, 1)),
			want: []string{`audience "http://[::1" is not a URI`},
		},
		{
			name: "cors origin * with credentials",
			cfg:  configWith(good, strings.Replace(apiSite, "scopes invoices:read", "cors {\n\t\t\torigins *\n\t\t\tcredentials\n\t\t}", 1)),
			want: []string{"cors origin * cannot go with credentials"},
		},
		{
			name: "oauth_server with arguments",
			cfg:  configWith(good, strings.Replace(asSite, "oauth_server", "oauth_server extra", 1)),
			want: []string{"oauth_server takes no arguments"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := loadConfig(t, tc.cfg, "text/caddyfile")
			if status == http.StatusOK {
				t.Fatalf("the config loaded; want an error containing %q\n%s", tc.want, tc.cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("error %s\ndoes not contain %q", body, w)
				}
			}
		})
	}

	// None of the refused configs disturbed the running one.
	assertPasses(t, up, tok, "after the refused loads")
	if tok2 := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken; tok2 == "" {
		t.Error("no token after the refused loads")
	}
}
