package cfargs

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// CertHeaderArg parses
//
//	client_cert_header <name> {
//		trusted_proxies <ip|cidr...>
//	}
//
// into dst (the option of the oauth app and of oauth_protect).
func CertHeaderArg(d *caddyfile.Dispenser, dst **tokens.CertHeader) error {
	if *dst != nil {
		return d.Err("client_cert_header is given twice")
	}
	h := new(tokens.CertHeader)
	if !d.NextArg() {
		return d.Err("client_cert_header needs a header name: client_cert_header Client-Cert { trusted_proxies 10.0.0.0/8 }")
	}
	h.Name = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "trusted_proxies":
			if err := ListArg(d, &h.TrustedProxies); err != nil {
				return err
			}
		default:
			return d.Errf("unknown option %q in client_cert_header (it takes trusted_proxies)", d.Val())
		}
	}
	if len(h.TrustedProxies) == 0 {
		return d.Err("client_cert_header needs trusted_proxies <ip|cidr...>: only the proxies that set the header may be believed")
	}
	*dst = h
	return nil
}
