package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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
