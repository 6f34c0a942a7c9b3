// Package oauthgate is caddy-oauthgate's entry point for Caddy builds:
// importing it registers the oauth app, the oauth_server handler and the
// oauth_protect gate, as `xcaddy build --with
// github.com/oauthgate/caddy-oauthgate` does.
package oauthgate

import (
	"github.com/oauthgate/caddy-oauthgate/caddymodule"
	"github.com/oauthgate/caddy-oauthgate/caddymodule/gate"
)

// The gate checks the tokens of the oauth app through gate.Issuer only.
var _ gate.Issuer = (*caddymodule.App)(nil)

// A browser-mode gate (login) signs browsers in through the oauth app as
// a gate.LoginIssuer.
var _ gate.LoginIssuer = (*caddymodule.App)(nil)
