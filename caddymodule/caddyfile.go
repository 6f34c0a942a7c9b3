package caddymodule

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/oauthgate/caddy-oauthgate/internal/cfargs"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("oauth", parseGlobalOption)
	httpcaddyfile.RegisterDirective("oauth_server", parseServer)
	httpcaddyfile.RegisterDirectiveOrder("oauth_server", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption sets up the oauth app:
//
//	oauth {
//		issuer <url>
//		storage_path <path>
//		storage <module> [<module options>]
//		signing_alg ES256|EdDSA|RS256|PS256
//		access_token_ttl <duration>
//		refresh_token_ttl <duration>
//		refresh_token_idle_ttl <duration>
//		refresh_grace_period <duration>
//		session_ttl <duration>
//		sweep_interval <duration>
//		key_rotation <duration>
//		key_encryption_key <secret>
//		seal_plain_keys
//		tls_client_ca_file <pem>
//		client_cert_header <name> {
//			trusted_proxies <ip|cidr...>
//		}
//		templates_dir <dir>
//		logo <file>
//		login_max_failures <n>
//		behind_tls_proxy
//		dpop_nonce
//		dpop_signing_algs <alg...>
//		require_pushed_authorization_requests
//		pushed_request_ttl <duration>
//		device_code_ttl <duration>
//		device_poll_interval <duration>
//		scope_description <scope> <text>
//		registration {
//			open
//			initial_access_token <token>
//			rate <n per minute>
//			max_body <bytes>
//			max_clients <n>
//			unused_client_ttl <duration>
//			scopes <scope...>
//			audience <uri...>
//			grant_types <authorization_code|refresh_token|client_credentials...>
//		}
//		client_id_metadata {
//			allowed_hosts <host...>
//			cache_min <duration>
//			cache_max <duration>
//			max_size <bytes>
//			scopes <scope...>
//			audience <uri...>
//		}
//		client <id> {
//			name <display name>
//			logo_uri <https url>
//			client_uri <https url>
//			policy_uri <https url>
//			secret <secret>
//			secret_hash sha256:<hex>
//			auth_method client_secret_basic|client_secret_post|client_secret_jwt|private_key_jwt|tls_client_auth|self_signed_tls_client_auth
//			tls_client_auth_subject_dn <dn>
//			tls_client_auth_san_dns <name>
//			tls_client_auth_san_uri <uri>
//			tls_client_auth_san_ip <ip>
//			tls_client_auth_san_email <email>
//			tls_client_ca_file <pem>
//			tls_client_cert_file <pem>
//			jwks <json>
//			jwks_file <path>
//			jwks_uri <https url>
//			grant_types <type...>
//			scopes <scope...>
//			audience <uri...>
//			redirect_uri|redirect_uris <uri...>
//			post_logout_redirect_uri|post_logout_redirect_uris <uri...>
//			public
//			trusted
//			pkce_optional
//			resource_server
//			access_token_format jwt|opaque
//			id_token_signed_response_alg RS256|<signing_alg>
//			dpop_bound_access_tokens
//			require_pushed_authorization_requests
//			exchange {
//				audience <uri...>
//				resource <uri...>
//			}
//		}
//		trust_issuer <iss> {
//			jwks <json>
//			jwks_file <path>
//			jwks_uri <https url>
//			subject_claim <claim>
//			map_subject external|local_users
//			allowed_clients <id...>
//			scopes <scope...>
//		}
//		saml_idp <entityID> {
//			cert_file <pem>
//			allowed_clients <id...>
//			subject_attribute <name>
//			map_subject external|local_users
//			scopes <scope...>
//		}
//		user <name> {
//			password_hash <bcrypt>
//			claim <name> <value>
//		}
//	}
//
// A client has secret or secret_hash unless it is public, and at most one
// of jwks, jwks_file and jwks_uri (for private_key_jwt); a trust_issuer
// has one of them. client, trust_issuer, saml_idp and user may be given
// any number of times; options that take a list may be repeated and add
// to it. Names joined by | are one option spelled two ways.
//
// Every option above is a key of appOptions or of the table of its block
// (TestSyntaxCommentListsEveryOption checks both ways).
//
// The option may be given once: Caddy hands a second block the value of
// the first, which would otherwise be replaced without a word.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		d.Next()
		return nil, d.Err("the oauth global option is given twice; merge the two blocks into one (a second block would replace the first)")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "oauth", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	if err := parseBlock(d, appOptions, a, func() error {
		return d.Errf("unknown oauth option %q", d.Val())
	}); err != nil {
		return err
	}
	if a.StorageRaw != nil && a.StoragePath != "" {
		return d.Errf("oauth: %v", errStorageTwice)
	}
	return nil
}

// optionParsers maps each option a block takes to the func that reads the
// option's arguments (and its own block, if it has one) into *T.
type optionParsers[T any] map[string]func(d *caddyfile.Dispenser, dst *T) error

// parseBlock reads the options of the block the current line opens.
// unknown makes the error for an option the block does not take (the
// dispenser is on it).
func parseBlock[T any](d *caddyfile.Dispenser, opts optionParsers[T], dst *T, unknown func() error) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		parse, ok := opts[d.Val()]
		if !ok {
			return unknown()
		}
		if err := parse(d, dst); err != nil {
			return err
		}
	}
	return nil
}

// parseNamedBlock reads `<option> <name> { ... }`, the form of client,
// trust_issuer, saml_idp and user: exactly one argument, stored in *name,
// then the block. missing is the error when the name is not given; it
// shows the form.
func parseNamedBlock[T any](d *caddyfile.Dispenser, opts optionParsers[T], dst *T, name *string, missing string) error {
	option := d.Val()
	if !d.NextArg() {
		return d.Err(missing)
	}
	*name = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, opts, dst, func() error {
		return d.Errf("unknown option %q in %s %q", d.Val(), option, *name)
	})
}

// appOptions are the options of the oauth global option.
var appOptions = optionParsers[App]{
	"issuer":                 func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.Issuer) },
	"storage_path":           func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.StoragePath) },
	"storage":                parseStorageOption,
	"signing_alg":            func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.SigningAlg) },
	"access_token_ttl":       func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.AccessTokenTTL) },
	"refresh_token_ttl":      func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.RefreshTokenTTL) },
	"refresh_token_idle_ttl": func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.RefreshTokenIdleTTL) },
	"refresh_grace_period":   func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.RefreshGracePeriod) },
	"session_ttl":            func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.SessionTTL) },
	"key_rotation":           func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.KeyRotation) },
	"key_encryption_key":     func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.KeyEncryptionKey) },
	"templates_dir":          func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.TemplatesDir) },
	"logo":                   func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.Logo) },
	"behind_tls_proxy":       func(d *caddyfile.Dispenser, a *App) error { a.BehindTLSProxy = true; return cfargs.NoArgs(d) },
	"seal_plain_keys":        func(d *caddyfile.Dispenser, a *App) error { a.SealPlainKeys = true; return cfargs.NoArgs(d) },
	"dpop_nonce":             func(d *caddyfile.Dispenser, a *App) error { a.DPoPNonce = true; return cfargs.NoArgs(d) },
	"dpop_signing_algs":      func(d *caddyfile.Dispenser, a *App) error { return cfargs.ListArg(d, &a.DPoPSigningAlgs) },
	"require_pushed_authorization_requests": func(d *caddyfile.Dispenser, a *App) error {
		a.RequirePushedAuthorizationRequests = true
		return cfargs.NoArgs(d)
	},
	"pushed_request_ttl":   func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.PushedRequestTTL) },
	"tls_client_ca_file":   func(d *caddyfile.Dispenser, a *App) error { return cfargs.OneArg(d, &a.TLSClientCAFile) },
	"client_cert_header":   func(d *caddyfile.Dispenser, a *App) error { return cfargs.CertHeaderArg(d, &a.ClientCertHeader) },
	"registration":         parseRegistration,
	"client_id_metadata":   parseClientIDMetadata,
	"device_code_ttl":      func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.DeviceCodeTTL) },
	"device_poll_interval": func(d *caddyfile.Dispenser, a *App) error { return cfargs.DurationArg(d, &a.DevicePollInterval) },
	"sweep_interval": func(d *caddyfile.Dispenser, a *App) error {
		if err := cfargs.DurationArg(d, &a.SweepInterval); err != nil {
			return err
		}
		if a.SweepInterval <= 0 {
			return d.Errf("sweep_interval must be positive")
		}
		return nil
	},
	"login_max_failures": func(d *caddyfile.Dispenser, a *App) error {
		var s string
		if err := cfargs.OneArg(d, &s); err != nil {
			return err
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return d.Errf("login_max_failures must be a positive integer, not %q", s)
		}
		a.LoginMaxFailures = n
		return nil
	},
	"scope_description": func(d *caddyfile.Dispenser, a *App) error {
		var scope, text string
		if !d.Args(&scope, &text) || d.NextArg() {
			return d.Err(`scope_description needs a scope and its text: scope_description invoices:read "Read your invoices"`)
		}
		if a.ScopeDescriptions == nil {
			a.ScopeDescriptions = map[string]string{}
		}
		a.ScopeDescriptions[scope] = text
		return nil
	},
	"client": func(d *caddyfile.Dispenser, a *App) error {
		var c ClientConfig
		if err := parseNamedBlock(d, clientOptions, &c, &c.ID, "client needs an id: client <id> { ... }"); err != nil {
			return err
		}
		a.Clients = append(a.Clients, c)
		return nil
	},
	"trust_issuer": func(d *caddyfile.Dispenser, a *App) error {
		var ti TrustIssuerConfig
		if err := parseNamedBlock(d, trustIssuerOptions, &ti, &ti.Issuer, "trust_issuer needs the issuer: trust_issuer <iss> { ... }"); err != nil {
			return err
		}
		a.TrustIssuers = append(a.TrustIssuers, ti)
		return nil
	},
	"saml_idp": func(d *caddyfile.Dispenser, a *App) error {
		var sc SAMLIdPConfig
		if err := parseNamedBlock(d, samlIdPOptions, &sc, &sc.EntityID, "saml_idp needs the entity ID: saml_idp <entityID> { ... }"); err != nil {
			return err
		}
		a.SAMLIdPs = append(a.SAMLIdPs, sc)
		return nil
	},
	"user": func(d *caddyfile.Dispenser, a *App) error {
		var u UserConfig
		if err := parseNamedBlock(d, userOptions, &u, &u.Name, "user needs a name: user <name> { password_hash <bcrypt> }"); err != nil {
			return err
		}
		a.Users = append(a.Users, u)
		return nil
	},
}

// clientOptions are the options of a client block.
var clientOptions = optionParsers[ClientConfig]{
	"name":        func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.Name) },
	"logo_uri":    func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.LogoURI) },
	"client_uri":  func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.ClientURI) },
	"policy_uri":  func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.PolicyURI) },
	"secret":      func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.Secret) },
	"secret_hash": func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.SecretHash) },
	"auth_method": func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.AuthMethod) },
	"jwks": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return jwksArg(d, &c.JWKS, "client "+strconv.Quote(c.ID))
	},
	"jwks_file": func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.JWKSFile) },
	"jwks_uri":  func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.JWKSURI) },
	"tls_client_auth_subject_dn": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.TLSClientSubject.SubjectDN)
	},
	"tls_client_auth_san_dns": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.TLSClientSubject.SANDNS)
	},
	"tls_client_auth_san_uri": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.TLSClientSubject.SANURI)
	},
	"tls_client_auth_san_ip": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.TLSClientSubject.SANIP)
	},
	"tls_client_auth_san_email": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.TLSClientSubject.SANEmail)
	},
	"tls_client_ca_file": func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.OneArg(d, &c.TLSClientCAFile) },
	"tls_client_cert_file": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.TLSClientCertFile)
	},
	"grant_types":   func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.ListArg(d, &c.GrantTypes) },
	"scopes":        func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.ListArg(d, &c.Scopes) },
	"audience":      func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.ListArg(d, &c.Audience) },
	"redirect_uri":  func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.ListArg(d, &c.RedirectURIs) },
	"redirect_uris": func(d *caddyfile.Dispenser, c *ClientConfig) error { return cfargs.ListArg(d, &c.RedirectURIs) },
	"post_logout_redirect_uri": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.ListArg(d, &c.PostLogoutRedirectURIs)
	},
	"post_logout_redirect_uris": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.ListArg(d, &c.PostLogoutRedirectURIs)
	},
	"public":          func(d *caddyfile.Dispenser, c *ClientConfig) error { c.Public = true; return cfargs.NoArgs(d) },
	"trusted":         func(d *caddyfile.Dispenser, c *ClientConfig) error { c.Trusted = true; return cfargs.NoArgs(d) },
	"pkce_optional":   func(d *caddyfile.Dispenser, c *ClientConfig) error { c.PKCEOptional = true; return cfargs.NoArgs(d) },
	"resource_server": func(d *caddyfile.Dispenser, c *ClientConfig) error { c.ResourceServer = true; return cfargs.NoArgs(d) },
	"dpop_bound_access_tokens": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		c.DPoPBoundAccessTokens = true
		return cfargs.NoArgs(d)
	},
	"require_pushed_authorization_requests": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		c.RequirePushedAuthorizationRequests = true
		return cfargs.NoArgs(d)
	},
	"access_token_format": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.AccessTokenFormat)
	},
	"id_token_signed_response_alg": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		return cfargs.OneArg(d, &c.IDTokenSignedResponseAlg)
	},
	"exchange": func(d *caddyfile.Dispenser, c *ClientConfig) error {
		if d.NextArg() {
			return d.ArgErr()
		}
		if c.Exchange == nil {
			c.Exchange = new(ExchangeConfig)
		}
		return parseBlock(d, exchangeOptions, c.Exchange, func() error {
			return d.Errf("unknown option %q in exchange of client %q", d.Val(), c.ID)
		})
	},
}

// exchangeOptions are the options of a client's exchange block.
var exchangeOptions = optionParsers[ExchangeConfig]{
	"audience": func(d *caddyfile.Dispenser, x *ExchangeConfig) error { return cfargs.ListArg(d, &x.Audiences) },
	"resource": func(d *caddyfile.Dispenser, x *ExchangeConfig) error { return cfargs.ListArg(d, &x.Resources) },
}

// trustIssuerOptions are the options of a trust_issuer block.
var trustIssuerOptions = optionParsers[TrustIssuerConfig]{
	"jwks": func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error {
		return jwksArg(d, &ti.JWKS, "trust_issuer "+strconv.Quote(ti.Issuer))
	},
	"jwks_file":     func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error { return cfargs.OneArg(d, &ti.JWKSFile) },
	"jwks_uri":      func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error { return cfargs.OneArg(d, &ti.JWKSURI) },
	"subject_claim": func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error { return cfargs.OneArg(d, &ti.SubjectClaim) },
	"map_subject":   func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error { return cfargs.OneArg(d, &ti.MapSubject) },
	"allowed_clients": func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error {
		return cfargs.ListArg(d, &ti.AllowedClients)
	},
	"scopes": func(d *caddyfile.Dispenser, ti *TrustIssuerConfig) error { return cfargs.ListArg(d, &ti.Scopes) },
}

// samlIdPOptions are the options of a saml_idp block.
var samlIdPOptions = optionParsers[SAMLIdPConfig]{
	"cert_file":         func(d *caddyfile.Dispenser, sc *SAMLIdPConfig) error { return cfargs.OneArg(d, &sc.CertFile) },
	"subject_attribute": func(d *caddyfile.Dispenser, sc *SAMLIdPConfig) error { return cfargs.OneArg(d, &sc.SubjectAttribute) },
	"map_subject":       func(d *caddyfile.Dispenser, sc *SAMLIdPConfig) error { return cfargs.OneArg(d, &sc.MapSubject) },
	"allowed_clients":   func(d *caddyfile.Dispenser, sc *SAMLIdPConfig) error { return cfargs.ListArg(d, &sc.AllowedClients) },
	"scopes":            func(d *caddyfile.Dispenser, sc *SAMLIdPConfig) error { return cfargs.ListArg(d, &sc.Scopes) },
}

// userOptions are the options of a user block.
var userOptions = optionParsers[UserConfig]{
	"password_hash": func(d *caddyfile.Dispenser, u *UserConfig) error { return cfargs.OneArg(d, &u.PasswordHash) },
	"claim": func(d *caddyfile.Dispenser, u *UserConfig) error {
		var name, value string
		if !d.Args(&name, &value) || d.NextArg() {
			return d.Err("claim needs a name and a value: claim email alice@example.com")
		}
		if u.Claims == nil {
			u.Claims = map[string]string{}
		}
		u.Claims[name] = value
		return nil
	},
}

// jwksArg reads an inline key set; owner names the client or issuer in
// the error.
func jwksArg(d *caddyfile.Dispenser, dst *json.RawMessage, owner string) error {
	var raw string
	if err := cfargs.OneArg(d, &raw); err != nil {
		return err
	}
	if !json.Valid([]byte(raw)) {
		return d.Errf("jwks of %s is not valid JSON (quote the JSON with backticks)", owner)
	}
	*dst = json.RawMessage(raw)
	return nil
}

// parseServer sets up oauth_server, which takes no arguments, no
// matcher and no block. It is registered as a plain directive, not a
// handler directive, because Caddy would take a first argument such as
// /oauth/* as a matcher and wrap the handler in it: the discovery
// documents under /.well-known/ would then go to the next handler and
// silently disappear.
func parseServer(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	h.Next() // the directive
	if h.NextArg() {
		arg := h.Val()
		if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "@") || arg == "*" {
			return nil, h.Errf("oauth_server takes no matcher (%s): its endpoints are at fixed paths under the issuer, "+
				"/oauth/... and /.well-known/..., and a matcher would hide some of them (discovery first); "+
				"write oauth_server alone in the issuer's site: requests for other paths go on to the next handler", arg)
		}
		return nil, h.Errf("oauth_server takes no arguments (%s); configure it in the oauth global option", arg)
	}
	if h.NextBlock(0) {
		return nil, h.Err("oauth_server takes no block; configure it in the oauth global option")
	}
	return h.NewRoute(nil, new(Server)), nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*App)(nil)
