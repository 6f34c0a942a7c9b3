// Package cfargs reads the arguments of Caddyfile options, for the
// Caddyfile parsers of the oauth app and of oauth_protect.
package cfargs

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// OneArg reads exactly one argument into dst.
func OneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// ListArg appends one or more arguments to dst.
func ListArg(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

// NoArgs refuses arguments.
func NoArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// DurationArg reads one duration argument into dst.
func DurationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := OneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("invalid duration %q: %v", s, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}
