package gate

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/caddy-oauthgate/internal/cfargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oauth_protect", parseProtect)
	httpcaddyfile.RegisterDirectiveOrder("oauth_protect", httpcaddyfile.After, "basic_auth")
}

// parseProtect sets up oauth_protect:
//
//	oauth_protect {
//		audience <uri>|any
//		scopes <scope...>
//		forward_header <header> <claim>
//		strip_header <header...>
//		realm <realm>
//		pass_authorization
//		cors {
//			origins <origin...>|*
//			methods <method...>
//			headers <header...>
//			expose <header...>
//			max_age <duration>
//			credentials
//		}
//		forward_preflight
//		behind_tls_proxy
//		require_dpop
//		dpop_origin <https://host>
//		client_cert_header <name> {
//			trusted_proxies <ip|cidr...>
//		}
//		trust_issuer <issuer> [{
//			audience <aud>
//			algs <alg...>
//			jwks_uri <url>
//			introspect <client_id> <secret>
//			introspection_cache_ttl <duration>
//			leeway <duration>
//		}]
//		allow_users <user...>
//		allow_groups <group...>
//		groups_claim <claim>
//		login {
//			issuer <url>
//			client_id <id>
//			client_secret <secret>
//			scopes <scope...>
//			redirect_uri <url>
//			callback_path <path>
//			logout_path <path>
//			post_logout_redirect_uri <url>
//			cookie_name <name>
//			session_ttl <duration>
//		}
//	}
func parseProtect(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Protect)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (p *Protect) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "scopes":
			err = cfargs.ListArg(d, &p.Scopes)
		case "audience":
			err = cfargs.OneArg(d, &p.Audience)
		case "realm":
			err = cfargs.OneArg(d, &p.Realm)
		case "forward_header":
			var fh ForwardHeader
			if !d.Args(&fh.Header, &fh.Claim) || d.NextArg() {
				return d.Err("forward_header needs a header name and a claim name: forward_header X-Forwarded-User sub")
			}
			p.ForwardHeaders = append(p.ForwardHeaders, fh)
		case "strip_header":
			err = cfargs.ListArg(d, &p.StripHeaders)
		case "pass_authorization":
			p.PassAuthorization = true
			err = cfargs.NoArgs(d)
		case "behind_tls_proxy":
			p.BehindTLSProxy = true
			err = cfargs.NoArgs(d)
		case "require_dpop":
			p.RequireDPoP = true
			err = cfargs.NoArgs(d)
		case "dpop_origin":
			err = cfargs.OneArg(d, &p.DPoPOrigin)
		case "client_cert_header":
			err = cfargs.CertHeaderArg(d, &p.ClientCertHeader)
		case "cors":
			if p.CORS != nil {
				return d.Err("cors is given twice")
			}
			p.CORS = new(CORS)
			err = p.CORS.unmarshalCaddyfile(d)
		case "forward_preflight":
			p.ForwardPreflight = true
			err = cfargs.NoArgs(d)
		case "trust_issuer":
			ti, terr := unmarshalTrustIssuer(d)
			if terr != nil {
				return terr
			}
			p.TrustIssuers = append(p.TrustIssuers, ti)
		case "allow_users":
			err = cfargs.ListArg(d, &p.AllowUsers)
		case "allow_groups":
			err = cfargs.ListArg(d, &p.AllowGroups)
		case "groups_claim":
			err = cfargs.OneArg(d, &p.GroupsClaim)
		case "login":
			if p.Login != nil {
				return d.Err("login is given twice")
			}
			p.Login = new(Login)
			err = p.Login.unmarshalCaddyfile(d)
		case "block_preflight":
			// Deprecated: preflights need a token by default now;
			// kept so old configs load (Provision warns).
			p.BlockPreflight = true
			err = cfargs.NoArgs(d)
		default:
			err = d.Errf("unknown oauth_protect option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *CORS) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Err("cors takes a block: cors { origins https://app.example.com }")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "origins", "origin":
			err = cfargs.ListArg(d, &c.AllowedOrigins)
		case "methods":
			err = cfargs.ListArg(d, &c.AllowedMethods)
		case "headers":
			err = cfargs.ListArg(d, &c.AllowedHeaders)
		case "expose":
			err = cfargs.ListArg(d, &c.ExposedHeaders)
		case "max_age":
			err = cfargs.DurationArg(d, &c.MaxAge)
		case "credentials":
			c.AllowCredentials = true
			err = cfargs.NoArgs(d)
		default:
			err = d.Errf("unknown option %q in oauth_protect cors", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Protect)(nil)
