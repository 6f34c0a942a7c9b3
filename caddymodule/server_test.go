package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// The engine's sign-in throttle counts the client address Caddy
// determined (client_ip, which honours trusted_proxies), not the peer: a
// load balancer's address would otherwise stand for everyone behind it.
func TestServerPassesClientIP(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
	r.RemoteAddr = "10.0.0.1:4321" // the proxy
	vars := map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.7"}
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
	got := withCaddyContext(r)
	if ip := grants.ClientIP(got); ip != "192.0.2.7" {
		t.Fatalf("client address passed to the engine = %q, want Caddy's client_ip 192.0.2.7", ip)
	}
}

// Caddy makes a request's uuid only when something reads it (and then
// also puts it in the access log line). The token endpoint passes the
// engine a lazy id, so a request that logs nothing makes none, and one
// that logs gets the uuid Caddy's access log shows.
func TestServerRequestIDLazy(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), nil)
	got := withCaddyContext(r)
	if id := caddyhttp.GetVar(got.Context(), "uuid"); id != nil {
		t.Fatalf("the request uuid was made before anything was logged: %v", id)
	}
	id := grants.RequestID(got.Context())
	uuid, _ := repl.GetString("http.request.uuid")
	if len(id) != 36 || id != uuid {
		t.Fatalf("the engine's request id = %q, want Caddy's uuid %q", id, uuid)
	}
}
