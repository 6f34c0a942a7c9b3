package gate

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauthgate/caddy-oauthgate/internal/cfargs"
)

// unmarshalCaddyfile reads the login block; a bare `login` takes every
// default.
func (l *Login) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Err("login takes no arguments, only a block: login { issuer https://idp.example.com … }")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "issuer":
			err = cfargs.OneArg(d, &l.Issuer)
		case "client_id":
			err = cfargs.OneArg(d, &l.ClientID)
		case "client_secret":
			err = cfargs.OneArg(d, &l.ClientSecret)
		case "scopes":
			err = cfargs.ListArg(d, &l.Scopes)
		case "redirect_uri":
			err = cfargs.OneArg(d, &l.RedirectURI)
		case "callback_path":
			err = cfargs.OneArg(d, &l.CallbackPath)
		case "logout_path":
			err = cfargs.OneArg(d, &l.LogoutPath)
		case "post_logout_redirect_uri":
			err = cfargs.OneArg(d, &l.PostLogoutRedirectURI)
		case "cookie_name":
			err = cfargs.OneArg(d, &l.CookieName)
		case "session_ttl":
			err = cfargs.DurationArg(d, &l.SessionTTL)
		default:
			err = d.Errf("unknown option %q in oauth_protect login", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
