// Package oauthgate is caddy-oauthgate's entry point for Caddy builds:
// importing it registers the oauth app and the oauth_server and
// oauth_protect handlers, as `xcaddy build --with
// github.com/oauthgate/caddy-oauthgate` does.
package oauthgate

import _ "github.com/oauthgate/caddy-oauthgate/caddymodule"
