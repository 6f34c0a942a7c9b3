package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
	_ "github.com/caddyserver/caddy/v2/modules/logging"
)

// issuerServed finds an oauth_server for the issuer's scheme, host and
// port through host matchers and subroutes, as the Caddyfile adapter
// builds them; and only one the endpoints' requests reach with their
// paths: not behind a path matcher that does not take them, a path
// strip (handle_path), or a handler that answers first.
func TestIssuerServed(t *testing.T) {
	site := func(hosts []string, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		var sets caddyhttp.MatcherSets
		if hosts != nil {
			sets = caddyhttp.MatcherSets{{caddyhttp.MatchHost(hosts)}}
		}
		return caddyhttp.Route{MatcherSets: sets, Handlers: []caddyhttp.MiddlewareHandler{
			&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: handlers}}}}}
	}
	tlsOn := caddytls.ConnectionPolicies{new(caddytls.ConnectionPolicy)}
	server := func(listen string, tls caddytls.ConnectionPolicies, routes ...caddyhttp.Route) *caddyhttp.App {
		return &caddyhttp.App{Servers: map[string]*caddyhttp.Server{"srv0": {Listen: []string{listen}, TLSConnPolicies: tls, Routes: routes}}}
	}
	other := &caddyhttp.StaticResponse{}
	// handle and handle_path blocks as the Caddyfile compiles them: a
	// route with a path matcher around a subroute.
	handle := func(paths []string, routes ...caddyhttp.Route) caddyhttp.MiddlewareHandler {
		return &caddyhttp.Subroute{Routes: caddyhttp.RouteList{{
			MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchPath(paths)}},
			Handlers:    []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}}}
	}
	handlers := func(hs ...caddyhttp.MiddlewareHandler) caddyhttp.Route { return caddyhttp.Route{Handlers: hs} }
	stripAuth := handlers(&rewrite.Rewrite{StripPathPrefix: "/auth"})
	headerOnly := caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchHeader{"X-Tenant": {"a"}}}}, Handlers: []caddyhttp.MiddlewareHandler{&Server{}}}
	for _, tc := range []struct {
		name    string
		app     *caddyhttp.App
		issuer  string
		behind  bool
		present bool
	}{
		{"https site", server(":443", tlsOn, site([]string{"auth.example.com"}, &Server{})), "https://auth.example.com", false, true},
		{"host in another case", server(":443", tlsOn, site([]string{"auth.example.com"}, &Server{})), "https://Auth.Example.com", false, true},
		{"wildcard host", server(":443", tlsOn, site([]string{"*.example.com"}, &Server{})), "https://auth.example.com", false, true},
		{"issuer with a path", server(":443", tlsOn, site([]string{"auth.example.com"}, &Server{})), "https://auth.example.com/tenant", false, true},
		{"other host", server(":443", tlsOn, site([]string{"api.example.com"}, &Server{})), "https://auth.example.com", false, false},
		{"site without oauth_server", server(":443", tlsOn, site([]string{"auth.example.com"}, other)), "https://auth.example.com", false, false},
		{"http site for an https issuer", server(":443", nil, site([]string{"auth.example.com"}, &Server{})), "https://auth.example.com", false, false},
		{"https site for an http issuer", server(":80", tlsOn, site([]string{"auth.example.com"}, &Server{})), "http://auth.example.com", false, false},
		{"other port", server(":8443", tlsOn, site([]string{"auth.example.com"}, &Server{})), "https://auth.example.com", false, false},
		{"explicit port", server(":8443", tlsOn, site([]string{"auth.example.com"}, &Server{})), "https://auth.example.com:8443", false, true},
		{"port range", server("127.0.0.1:9000-9100", nil, site(nil, &Server{})), "http://localhost:9080", false, true},
		{"catch-all site", server(":9080", nil, site(nil, &Server{})), "http://localhost:9080", false, true},
		{"behind a TLS proxy", server(":8080", nil, site([]string{"auth.example.com"}, &Server{})), "https://auth.example.com", true, true},
		{"behind a TLS proxy, other host", server(":8080", nil, site([]string{"api.example.com"}, &Server{})), "https://auth.example.com", true, false},
		{"nested subroute", server(":443", tlsOn, site([]string{"auth.example.com"}, &caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&Server{}}}}})), "https://auth.example.com", false, true},
		{"no servers", &caddyhttp.App{}, "https://auth.example.com", false, false},
		// Path matchers, path stripping and handlers that answer first.
		{"handle /other/*", server(":443", tlsOn, site([]string{"auth.example.com"}, handle([]string{"/other/*"}, handlers(&Server{})))), "https://auth.example.com", false, false},
		{"handle_path /auth/*", server(":443", tlsOn, site([]string{"auth.example.com"}, handle([]string{"/auth/*"}, stripAuth, handlers(&Server{})))), "https://auth.example.com/auth", false, false},
		{"handle_path /auth/*, issuer without the path", server(":443", tlsOn, site([]string{"auth.example.com"}, handle([]string{"/auth/*"}, stripAuth, handlers(&Server{})))), "https://auth.example.com", false, false},
		{"respond before oauth_server in a route", server(":443", tlsOn, site([]string{"auth.example.com"}, &caddyhttp.Subroute{Routes: caddyhttp.RouteList{handlers(other, &Server{})}})), "https://auth.example.com", false, false},
		{"reverse_proxy before oauth_server", server(":443", tlsOn, site([]string{"auth.example.com"}, &reverseproxy.Handler{}, &Server{})), "https://auth.example.com", false, false},
		{"oauth_server before respond in a route", server(":443", tlsOn, site([]string{"auth.example.com"}, &caddyhttp.Subroute{Routes: caddyhttp.RouteList{handlers(&Server{}, other)}})), "https://auth.example.com", false, true},
		{"handle /other/* answers, oauth_server after it", server(":443", tlsOn, site([]string{"auth.example.com"}, handle([]string{"/other/*"}, handlers(other)), &Server{})), "https://auth.example.com", false, true},
		{"handle with both endpoints' paths", server(":443", tlsOn, site([]string{"auth.example.com"}, handle([]string{"/.well-known/*", "/oauth/*"}, handlers(&Server{})))), "https://auth.example.com", false, true},
		{"handle /tenant/* for an issuer under /tenant (OIDC discovery inside)", server(":443", tlsOn, site([]string{"auth.example.com"}, handle([]string{"/tenant/*"}, handlers(&Server{})))), "https://auth.example.com/tenant", false, true},
		{"header matcher may match", server(":443", tlsOn, site([]string{"auth.example.com"}, &caddyhttp.Subroute{Routes: caddyhttp.RouteList{headerOnly}})), "https://auth.example.com", false, true},
		{"respond behind a header matcher may not answer", server(":443", tlsOn, site([]string{"auth.example.com"}, &caddyhttp.Subroute{Routes: caddyhttp.RouteList{{MatcherSets: headerOnly.MatcherSets, Handlers: []caddyhttp.MiddlewareHandler{other}}, handlers(&Server{})}})), "https://auth.example.com", false, true},
		{"file_server pass_thru before oauth_server", server(":443", tlsOn, site([]string{"auth.example.com"}, &fileserver.FileServer{PassThru: true}, &Server{})), "https://auth.example.com", false, true},
		{"file_server before oauth_server", server(":443", tlsOn, site([]string{"auth.example.com"}, &fileserver.FileServer{}, &Server{})), "https://auth.example.com", false, false},
	} {
		iss, _ := url.Parse(tc.issuer)
		if got := issuerServed(tc.app, iss, tc.behind); got != tc.present {
			t.Errorf("%s: issuerServed(%s) = %v, want %v", tc.name, tc.issuer, got, tc.present)
		}
	}
}

// Through a real Caddy (in this process, loopback only, no admin
// endpoint): the warning appears at start when the issuer's host, port
// or scheme has no oauth_server, and not when it has one.
func TestIssuerNotServedWarnsAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	t.Setenv("OAUTH_KEK", "") // restored when the test ends
	os.Unsetenv("OAUTH_KEK")
	for _, tc := range []struct {
		issuer string
		warn   bool
	}{
		{fmt.Sprintf("http://localhost:%d", port), false},
		{fmt.Sprintf("http://127.0.0.1:%d", port), true},
		{fmt.Sprintf("https://localhost:%d", port), true},
		{fmt.Sprintf("http://localhost:%d", port+1), true},
	} {
		dir := t.TempDir()
		logFile := filepath.Join(dir, "caddy.log")
		cfg := map[string]any{
			"admin": map[string]any{"disabled": true},
			"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
				"writer": map[string]any{"output": "file", "filename": logFile}, "encoder": map[string]any{"format": "json"}}}},
			"storage": map[string]any{"module": "file_system", "root": filepath.Join(dir, "caddy")},
			"apps": map[string]any{
				"oauth": map[string]any{"issuer": tc.issuer, "storage_path": filepath.Join(dir, "oauth.db")},
				"http": map[string]any{"servers": map[string]any{"srv0": map[string]any{
					"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
					"automatic_https": map[string]any{"disable": true},
					"routes": []any{map[string]any{
						"match":  []any{map[string]any{"host": []string{"localhost"}}},
						"handle": []any{map[string]any{"handler": "subroute", "routes": []any{map[string]any{"handle": []any{map[string]any{"handler": "oauth_server"}}}}}},
					}},
				}}},
			},
		}
		raw, _ := json.Marshal(cfg)
		if err := caddy.Load(raw, true); err != nil {
			t.Fatalf("%s: %v", tc.issuer, err)
		}
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		// Let the file writer flush after the stop.
		var logs []byte
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			logs, _ = os.ReadFile(logFile)
			if strings.Contains(string(logs), "stopped") || time.Now().After(deadline) {
				break
			}
		}
		got := strings.Contains(string(logs), "no site with oauth_server serves the issuer")
		if got != tc.warn {
			t.Errorf("issuer %s: warning %v, want %v; log:\n%s", tc.issuer, got, tc.warn, logs)
		}
	}
}
