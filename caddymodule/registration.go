package caddymodule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/internal/cfargs"
)

// RegistrationConfig turns on dynamic client registration (RFC 7591) at
// <issuer>/oauth/register and the management of registered clients (RFC
// 7592). Without it, the default, clients are registered by the operator
// only. Exactly one of Open and InitialAccessToken must be set, so that
// open registration is always a stated choice.
//
// Registered clients are never trusted: the consent page is shown every
// time, errors are shown to the user instead of being redirected to the
// client, and public clients must use PKCE.
type RegistrationConfig struct {
	// Open lets anyone who can reach the endpoint register a client,
	// within the limits below. Default: false.
	Open bool `json:"open,omitempty"`

	// InitialAccessToken is the bearer token a registration must carry
	// (RFC 7591 §3), at least 16 characters; use a placeholder such as
	// {env.OAUTH_REGISTRATION_TOKEN}. Default: none.
	InitialAccessToken string `json:"initial_access_token,omitempty"`

	// Rate is how many registrations one client address may attempt per
	// minute; more get 429 with Retry-After. Default: 10.
	Rate int `json:"rate,omitempty"`

	// MaxBody is the largest registration body in bytes; a larger one
	// gets 413. Default: 16384 (16 KiB).
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxClients is how many registered clients may exist at once; past
	// it registration is refused with invalid_client_metadata saying so.
	// Default: 1000.
	MaxClients int `json:"max_clients,omitempty"`

	// UnusedClientTTL removes a registered client that has obtained no
	// token this long after registering. Default: 24h.
	UnusedClientTTL caddy.Duration `json:"unused_client_ttl,omitempty"`

	// Scopes are the scopes a registered client may ask for; a
	// registration without scope gets them all. Default: openid profile
	// email offline_access.
	Scopes []string `json:"scopes,omitempty"`

	// Audience are the resources (RFC 8707) registered clients' tokens
	// may be for, such as an MCP server's URL behind oauth_protect.
	// Default: the issuer.
	Audience []string `json:"audience,omitempty"`

	// GrantTypes are the grant types registered clients may use, among
	// authorization_code, refresh_token and client_credentials. Default:
	// authorization_code refresh_token, so every token of a registered
	// client is one a user allowed. Offering client_credentials lets
	// whoever can register get tokens with no user (their sub is the
	// registered client's id).
	GrantTypes []string `json:"grant_types,omitempty"`
}

// build checks the config and makes the engine's, with placeholders in
// the initial access token replaced. nil stays nil (registration off).
func (rc *RegistrationConfig) build(repl *caddy.Replacer) (*grants.RegistrationConfig, error) {
	if rc == nil {
		return nil, nil
	}
	tok := repl.ReplaceKnown(rc.InitialAccessToken, "")
	switch {
	case rc.Open && rc.InitialAccessToken != "":
		return nil, fmt.Errorf("oauth: registration: open and initial_access_token exclude each other; choose one")
	case !rc.Open && rc.InitialAccessToken == "":
		return nil, fmt.Errorf("oauth: registration: say who may register: open, or initial_access_token <token>")
	case rc.InitialAccessToken != "" && tok == "":
		return nil, fmt.Errorf("oauth: registration: initial_access_token %q is empty after replacing placeholders (is the environment variable set?)", rc.InitialAccessToken)
	}
	out := &grants.RegistrationConfig{InitialAccessToken: tok, Rate: rc.Rate, MaxBody: rc.MaxBody, MaxClients: rc.MaxClients,
		UnusedClientTTL: time.Duration(rc.UnusedClientTTL), Scopes: rc.Scopes, Audience: rc.Audience, GrantTypes: rc.GrantTypes}
	return out, nil
}

// registrationOptions are the options of the registration block.
var registrationOptions = optionParsers[RegistrationConfig]{
	"open": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error { rc.Open = true; return cfargs.NoArgs(d) },
	"initial_access_token": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error {
		return cfargs.OneArg(d, &rc.InitialAccessToken)
	},
	"rate":        func(d *caddyfile.Dispenser, rc *RegistrationConfig) error { return positiveInt(d, &rc.Rate) },
	"max_clients": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error { return positiveInt(d, &rc.MaxClients) },
	"max_body": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error {
		var n int
		if err := positiveInt(d, &n); err != nil {
			return err
		}
		if n > 1<<20 {
			return d.Errf("max_body is in bytes and at most 1048576, not %d", n)
		}
		rc.MaxBody = int64(n)
		return nil
	},
	"unused_client_ttl": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error {
		return cfargs.DurationArg(d, &rc.UnusedClientTTL)
	},
	"scopes":   func(d *caddyfile.Dispenser, rc *RegistrationConfig) error { return cfargs.ListArg(d, &rc.Scopes) },
	"audience": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error { return cfargs.ListArg(d, &rc.Audience) },
	"grant_types": func(d *caddyfile.Dispenser, rc *RegistrationConfig) error {
		return cfargs.ListArg(d, &rc.GrantTypes)
	},
}

// parseRegistration reads `registration { ... }` in the oauth option.
func parseRegistration(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	rc := &RegistrationConfig{}
	if err := parseBlock(d, registrationOptions, rc, func() error {
		return d.Errf("unknown option %q in registration (use open, initial_access_token, rate, max_body, max_clients, unused_client_ttl, scopes, audience or grant_types)", d.Val())
	}); err != nil {
		return err
	}
	a.Registration = rc
	return nil
}

// positiveInt reads one argument, a positive integer.
func positiveInt(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	var s string
	if err := cfargs.OneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return d.Errf("%s must be a positive integer, not %q", opt, s)
	}
	*dst = n
	return nil
}
