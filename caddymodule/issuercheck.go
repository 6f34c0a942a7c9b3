package caddymodule

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// warnIssuerNotServed warns when no oauth_server of the http app can take
// a request for the issuer: a typo in the issuer or the site address, a
// site on another port or scheme. Clients then find neither discovery
// nor the token endpoint at the URLs the tokens name, and nothing else
// would say so. It runs at Start, when every app is provisioned (apps
// are provisioned in no fixed order, and the http app provisions this
// one from its handlers).
func (a *App) warnIssuerNotServed(ctx caddy.Context) {
	v, err := ctx.AppIfConfigured("http")
	if err != nil {
		return // no http app: the config serves nothing, by design or not
	}
	httpApp, ok := v.(*caddyhttp.App)
	if !ok {
		return
	}
	iss, err := url.Parse(a.Issuer)
	if err != nil || iss.Host == "" {
		return // Provision has refused it already
	}
	if !issuerServed(httpApp, iss, a.BehindTLSProxy) {
		a.logger.Warn("no site with oauth_server serves the issuer's scheme, host and port: clients will not find discovery or the token endpoint there; "+
			"put oauth_server in the site of the issuer (for https://auth.example.com: a site auth.example.com { oauth_server }), or correct the issuer",
			zap.String("issuer", a.Issuer), zap.Bool("behind_tls_proxy", a.BehindTLSProxy))
	}
}

// issuerServed reports whether a request for the issuer's discovery
// document can reach an oauth_server of app: a server that listens on
// the issuer's port with TLS for https (both unchecked behind a TLS
// proxy, which listens for the server), and a route whose host matchers
// take the issuer's host, on the way to oauth_server through any
// subroutes. Only host matchers are evaluated; other matchers (paths,
// headers, client IPs) may take some request and are assumed to.
func issuerServed(app *caddyhttp.App, iss *url.URL, behindTLSProxy bool) bool {
	port := iss.Port()
	if port == "" {
		port = "80"
		if iss.Scheme == "https" {
			port = "443"
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return false
	}
	path := iss.EscapedPath() + "/.well-known/openid-configuration"
	r, err := http.NewRequest(http.MethodGet, iss.Scheme+"://"+iss.Host+path, nil)
	if err != nil {
		return false
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	for _, srv := range app.Servers {
		if !behindTLSProxy && (!listensOn(srv, uint(p)) || (iss.Scheme == "https") != (len(srv.TLSConnPolicies) > 0)) {
			continue
		}
		if routesReachServer(srv.Routes, r) {
			return true
		}
	}
	return false
}

// listensOn reports whether srv listens on port.
func listensOn(srv *caddyhttp.Server, port uint) bool {
	for _, l := range srv.Listen {
		na, err := caddy.ParseNetworkAddress(l)
		if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() {
			continue
		}
		if na.StartPort <= port && port <= na.EndPort {
			return true
		}
	}
	return false
}

// routesReachServer reports whether r can reach an oauth_server handler
// of routes (or of their subroutes).
func routesReachServer(routes caddyhttp.RouteList, r *http.Request) bool {
	for _, route := range routes {
		if !hostsMayMatch(route.MatcherSets, r) {
			continue
		}
		for _, h := range route.Handlers {
			switch h := h.(type) {
			case *Server:
				return true
			case *caddyhttp.Subroute:
				if routesReachServer(h.Routes, r) {
					return true
				}
			}
		}
	}
	return false
}

// hostsMayMatch reports whether some matcher set of a route may take r,
// judged by its host matchers only. No matcher set matches everything.
func hostsMayMatch(sets caddyhttp.MatcherSets, r *http.Request) bool {
	if len(sets) == 0 {
		return true
	}
	for _, set := range sets {
		ok := true
		for _, m := range set {
			var host caddyhttp.MatchHost
			switch m := m.(type) {
			case caddyhttp.MatchHost:
				host = m
			case *caddyhttp.MatchHost:
				host = *m
			default:
				continue
			}
			if match, err := host.MatchWithError(r); err != nil || !match {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}
