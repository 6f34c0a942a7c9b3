package caddymodule

import (
	"context"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// provisionApp parses an oauth global option and provisions the app, the
// way Caddy would. It opens no storage.
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
