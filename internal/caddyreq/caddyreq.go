// Package caddyreq reads what Caddy knows of a request, for the handlers
// of the oauth app and of oauth_protect.
package caddyreq

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// ClientIP is Caddy's client IP for r (trusted_proxies honoured), or "".
func ClientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// RequestID is the uuid Caddy gave the request (its access log line
// carries it too), or "". Caddy makes it when it is first read.
func RequestID(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		return LazyID{repl}.String()
	}
	return ""
}

// LazyID is Caddy's request uuid, made when first read: a request that
// logs nothing makes none. A struct of one pointer goes into an
// interface without an allocation.
type LazyID struct{ Repl *caddy.Replacer }

func (id LazyID) String() string {
	s, _ := id.Repl.GetString("http.request.uuid")
	return s
}
