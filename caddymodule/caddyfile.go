package caddymodule

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("oauth", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("oauth_server", parseServer)
	httpcaddyfile.RegisterDirectiveOrder("oauth_server", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption sets up the oauth app:
//
//	oauth {
//		issuer <url>
//		storage_path <path>
//		signing_alg ES256|EdDSA|RS256|PS256
//		access_token_ttl <duration>
//		refresh_token_ttl <duration>
//		refresh_token_idle_ttl <duration>
//		refresh_grace_period <duration>
//		session_ttl <duration>
//		templates_dir <dir>
//		logo <file>
//		login_max_failures <n>
//		behind_tls_proxy
//		key_encryption_key <secret>
//		seal_plain_keys
//		client <id> {
//			secret <secret> | secret_hash sha256:<hex>
//			auth_method client_secret_basic|client_secret_post|client_secret_jwt|private_key_jwt
//			jwks <json> | jwks_file <path> | jwks_uri <https url>
//			exchange {
//				audience <uri...>
//				resource <uri...>
//			}
//			grant_types <type...>
//			scopes <scope...>
//			audience <uri...>
//			public
//			redirect_uri <uri...>
//			post_logout_redirect_uri <uri...>
//			trusted
//			pkce_optional
//			id_token_signed_response_alg RS256|<signing_alg>
//		}
//		trust_issuer <iss> {
//			jwks <json> | jwks_file <path> | jwks_uri <https url>
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
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
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
	for d.NextBlock(0) {
		switch d.Val() {
		case "issuer":
			if err := oneArg(d, &a.Issuer); err != nil {
				return err
			}
		case "storage_path":
			if err := oneArg(d, &a.StoragePath); err != nil {
				return err
			}
		case "signing_alg":
			if err := oneArg(d, &a.SigningAlg); err != nil {
				return err
			}
		case "access_token_ttl":
			if err := durationArg(d, &a.AccessTokenTTL); err != nil {
				return err
			}
		case "refresh_token_ttl":
			if err := durationArg(d, &a.RefreshTokenTTL); err != nil {
				return err
			}
		case "refresh_token_idle_ttl":
			if err := durationArg(d, &a.RefreshTokenIdleTTL); err != nil {
				return err
			}
		case "refresh_grace_period":
			if err := durationArg(d, &a.RefreshGracePeriod); err != nil {
				return err
			}
		case "session_ttl":
			if err := durationArg(d, &a.SessionTTL); err != nil {
				return err
			}
		case "key_rotation":
			if err := durationArg(d, &a.KeyRotation); err != nil {
				return err
			}
		case "key_encryption_key":
			if err := oneArg(d, &a.KeyEncryptionKey); err != nil {
				return err
			}
		case "sweep_interval":
			if err := durationArg(d, &a.SweepInterval); err != nil {
				return err
			}
			if a.SweepInterval <= 0 {
				return d.Errf("sweep_interval must be positive")
			}
		case "templates_dir":
			if err := oneArg(d, &a.TemplatesDir); err != nil {
				return err
			}
		case "logo":
			if err := oneArg(d, &a.Logo); err != nil {
				return err
			}
		case "login_max_failures":
			var s string
			if err := oneArg(d, &s); err != nil {
				return err
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return d.Errf("login_max_failures must be a positive integer, not %q", s)
			}
			a.LoginMaxFailures = n
		case "user":
			var u UserConfig
			if err := u.unmarshalCaddyfile(d); err != nil {
				return err
			}
			a.Users = append(a.Users, u)
		case "behind_tls_proxy":
			if err := noArgs(d); err != nil {
				return err
			}
			a.BehindTLSProxy = true
		case "seal_plain_keys":
			if err := noArgs(d); err != nil {
				return err
			}
			a.SealPlainKeys = true
		case "trust_issuer":
			var ti TrustIssuerConfig
			if err := ti.unmarshalCaddyfile(d); err != nil {
				return err
			}
			a.TrustIssuers = append(a.TrustIssuers, ti)
		case "saml_idp":
			var sc SAMLIdPConfig
			if err := sc.unmarshalCaddyfile(d); err != nil {
				return err
			}
			a.SAMLIdPs = append(a.SAMLIdPs, sc)
		case "client":
			var c ClientConfig
			if err := c.unmarshalCaddyfile(d); err != nil {
				return err
			}
			a.Clients = append(a.Clients, c)
		default:
			return d.Errf("unknown oauth option %q", d.Val())
		}
	}
	return nil
}

func (c *ClientConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("client needs an id: client <id> { ... }")
	}
	c.ID = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "secret":
			err = oneArg(d, &c.Secret)
		case "secret_hash":
			err = oneArg(d, &c.SecretHash)
		case "auth_method":
			err = oneArg(d, &c.AuthMethod)
		case "jwks", "jwks_file", "jwks_uri":
			err = c.JWKSSource.unmarshalOption(d, "client "+strconv.Quote(c.ID))
		case "exchange":
			if c.Exchange == nil {
				c.Exchange = new(ExchangeConfig)
			}
			err = c.Exchange.unmarshalCaddyfile(d, c.ID)
		case "grant_types":
			err = listArg(d, &c.GrantTypes)
		case "scopes":
			err = listArg(d, &c.Scopes)
		case "audience":
			err = listArg(d, &c.Audience)
		case "redirect_uri", "redirect_uris":
			err = listArg(d, &c.RedirectURIs)
		case "post_logout_redirect_uri", "post_logout_redirect_uris":
			err = listArg(d, &c.PostLogoutRedirectURIs)
		case "public":
			c.Public = true
			err = noArgs(d)
		case "trusted":
			c.Trusted = true
			err = noArgs(d)
		case "pkce_optional":
			c.PKCEOptional = true
			err = noArgs(d)
		case "resource_server":
			c.ResourceServer = true
			err = noArgs(d)
		case "access_token_format":
			err = oneArg(d, &c.AccessTokenFormat)
		case "id_token_signed_response_alg":
			err = oneArg(d, &c.IDTokenSignedResponseAlg)
		default:
			err = d.Errf("unknown option %q in client %q", d.Val(), c.ID)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *ExchangeConfig) unmarshalCaddyfile(d *caddyfile.Dispenser, client string) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "audience":
			err = listArg(d, &x.Audiences)
		case "resource":
			err = listArg(d, &x.Resources)
		default:
			err = d.Errf("unknown option %q in exchange of client %q", d.Val(), client)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (ti *TrustIssuerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("trust_issuer needs the issuer: trust_issuer <iss> { ... }")
	}
	ti.Issuer = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "jwks", "jwks_file", "jwks_uri":
			err = ti.JWKSSource.unmarshalOption(d, "trust_issuer "+strconv.Quote(ti.Issuer))
		case "subject_claim":
			err = oneArg(d, &ti.SubjectClaim)
		case "map_subject":
			err = oneArg(d, &ti.MapSubject)
		case "allowed_clients":
			err = listArg(d, &ti.AllowedClients)
		case "scopes":
			err = listArg(d, &ti.Scopes)
		default:
			err = d.Errf("unknown option %q in trust_issuer %q", d.Val(), ti.Issuer)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (sc *SAMLIdPConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("saml_idp needs the entity ID: saml_idp <entityID> { ... }")
	}
	sc.EntityID = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "cert_file":
			err = oneArg(d, &sc.CertFile)
		case "subject_attribute":
			err = oneArg(d, &sc.SubjectAttribute)
		case "map_subject":
			err = oneArg(d, &sc.MapSubject)
		case "allowed_clients":
			err = listArg(d, &sc.AllowedClients)
		case "scopes":
			err = listArg(d, &sc.Scopes)
		default:
			err = d.Errf("unknown option %q in saml_idp %q", d.Val(), sc.EntityID)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalOption reads jwks (inline JSON), jwks_file or jwks_uri.
func (ks *JWKSSource) unmarshalOption(d *caddyfile.Dispenser, owner string) error {
	switch d.Val() {
	case "jwks_file":
		return oneArg(d, &ks.JWKSFile)
	case "jwks_uri":
		return oneArg(d, &ks.JWKSURI)
	}
	var raw string
	if err := oneArg(d, &raw); err != nil {
		return err
	}
	if !json.Valid([]byte(raw)) {
		return d.Errf("jwks of %s is not valid JSON (quote the JSON with backticks)", owner)
	}
	ks.JWKS = json.RawMessage(raw)
	return nil
}

func (u *UserConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("user needs a name: user <name> { password_hash <bcrypt> }")
	}
	u.Name = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "password_hash":
			if err := oneArg(d, &u.PasswordHash); err != nil {
				return err
			}
		case "claim":
			var name, value string
			if !d.Args(&name, &value) || d.NextArg() {
				return d.Err("claim needs a name and a value: claim email alice@example.com")
			}
			if u.Claims == nil {
				u.Claims = map[string]string{}
			}
			u.Claims[name] = value
		default:
			return d.Errf("unknown option %q in user %q", d.Val(), u.Name)
		}
	}
	return nil
}

// parseServer sets up oauth_server, which takes no arguments.
func parseServer(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	if h.NextArg() || h.NextBlock(0) {
		return nil, h.Err("oauth_server takes no arguments; configure it in the oauth global option")
	}
	return new(Server), nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func listArg(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("invalid duration %q: %v", s, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*App)(nil)
