package caddymodule

// The fixtures of the caddymodule tests: an oauth app and oauth_protect
// handlers parsed from Caddyfile text, provisioned as Caddy does.

import (
	"context"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
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

// testApp provisions one oauth app, the way Caddy would, for handlers
// under test. It opens no storage.
var testApp = sync.OnceValues(func() (*App, error) {
	return provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n}")
})

func provisionApp(src string) (*App, error) {
	tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
	if err != nil {
		return nil, err
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		return nil, err
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	return app, app.Provision(ctx)
}
