package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/internal/cfargs"
)

// ClientIDMetadataConfig turns on client ID metadata documents
// (draft-ietf-oauth-client-id-metadata-document, as MCP clients use
// them): a client_id that is an https URL with a path names a JSON
// document of client metadata, which the server fetches — from public
// addresses only, to the address it checked, without redirects, within
// 5 s and max_size — and uses as the registration of a public client
// (token_endpoint_auth_method none, or private_key_jwt with a jwks_uri).
// Such clients are never trusted: consent every time, PKCE always,
// errors shown instead of redirected. Default: off.
type ClientIDMetadataConfig struct {
	// AllowedHosts, when set, are the only hosts whose documents are
	// fetched (exact host names). Default: any host with public addresses.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`

	// CacheMin is the least time a document, or a refusal, is kept
	// before it is fetched again, whatever its Cache-Control says.
	// Default: 1m.
	CacheMin caddy.Duration `json:"cache_min,omitempty"`

	// CacheMax is the most time a document is kept. Default: 24h.
	CacheMax caddy.Duration `json:"cache_max,omitempty"`

	// MaxSize is the largest document in bytes. Default: 5120.
	MaxSize int64 `json:"max_size,omitempty"`

	// Scopes are the scopes such clients may ask for. Default: openid
	// profile email offline_access.
	Scopes []string `json:"scopes,omitempty"`

	// Audience are the resources (RFC 8707) their tokens may be for.
	// Default: the issuer.
	Audience []string `json:"audience,omitempty"`
}

// build makes the engine's config; nil stays nil (off).
func (cc *ClientIDMetadataConfig) build() *grants.ClientIDMetadataConfig {
	if cc == nil {
		return nil
	}
	return &grants.ClientIDMetadataConfig{AllowedHosts: cc.AllowedHosts, CacheMin: time.Duration(cc.CacheMin),
		CacheMax: time.Duration(cc.CacheMax), MaxSize: cc.MaxSize, Scopes: cc.Scopes, Audience: cc.Audience}
}

// clientIDMetadataOptions are the options of the client_id_metadata block.
var clientIDMetadataOptions = optionParsers[ClientIDMetadataConfig]{
	"allowed_hosts": func(d *caddyfile.Dispenser, cc *ClientIDMetadataConfig) error {
		return cfargs.ListArg(d, &cc.AllowedHosts)
	},
	"cache_min": func(d *caddyfile.Dispenser, cc *ClientIDMetadataConfig) error {
		return cfargs.DurationArg(d, &cc.CacheMin)
	},
	"cache_max": func(d *caddyfile.Dispenser, cc *ClientIDMetadataConfig) error {
		return cfargs.DurationArg(d, &cc.CacheMax)
	},
	"max_size": func(d *caddyfile.Dispenser, cc *ClientIDMetadataConfig) error {
		var n int
		if err := positiveInt(d, &n); err != nil {
			return err
		}
		if n > 64<<10 {
			return d.Errf("max_size is in bytes and at most 65536, not %d", n)
		}
		cc.MaxSize = int64(n)
		return nil
	},
	"scopes":   func(d *caddyfile.Dispenser, cc *ClientIDMetadataConfig) error { return cfargs.ListArg(d, &cc.Scopes) },
	"audience": func(d *caddyfile.Dispenser, cc *ClientIDMetadataConfig) error { return cfargs.ListArg(d, &cc.Audience) },
}

// parseClientIDMetadata reads `client_id_metadata [{ ... }]` in the
// oauth option; the bare option turns it on with the defaults.
func parseClientIDMetadata(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	cc := &ClientIDMetadataConfig{}
	if err := parseBlock(d, clientIDMetadataOptions, cc, func() error {
		return d.Errf("unknown option %q in client_id_metadata (use allowed_hosts, cache_min, cache_max, max_size, scopes or audience)", d.Val())
	}); err != nil {
		return err
	}
	a.ClientIDMetadata = cc
	return nil
}
