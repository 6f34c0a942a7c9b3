package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

func init() {
	caddy.RegisterModule(Server{})
}

// Server serves the authorization server's endpoints: the token endpoint,
// the JWKS and the discovery documents, at the paths the discovery
// documents publish. A path under the endpoints' prefix (the issuer's
// path + /oauth/) that is no endpoint is answered 404 with a JSON error;
// other requests go on to the next handler.
type Server struct {
	app    *App
	routes map[string]func(*grants.Engine, http.ResponseWriter, *http.Request)
	// prefix is the path under which every endpoint but discovery lives
	// (the issuer's path + /oauth/). It belongs to the server: an unknown
	// path there is answered 404, never handed to the next handler.
	prefix string
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Server) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_server",
		New: func() caddy.Module { return new(Server) },
	}
}

// Provision finds the oauth app and the paths it serves.
func (s *Server) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	app, err := appFrom(ctx, "oauth_server")
	if err != nil {
		return err
	}
	s.app = app
	p := app.engine.Paths()
	s.prefix = p["prefix"]
	s.routes = map[string]func(*grants.Engine, http.ResponseWriter, *http.Request){
		p["token"]:                  (*grants.Engine).ServeToken,
		p["jwks"]:                   (*grants.Engine).ServeJWKS,
		p["as_meta"]:                (*grants.Engine).ServeMetadata,
		p["oidc_meta"]:              (*grants.Engine).ServeMetadata,
		p["authorize"]:              (*grants.Engine).ServeAuthorize,
		p["authorize"] + "/login":   (*grants.Engine).ServeLogin,
		p["authorize"] + "/consent": (*grants.Engine).ServeConsent,
		p["userinfo"]:               (*grants.Engine).ServeUserinfo,
		p["revoke"]:                 (*grants.Engine).ServeRevoke,
		p["introspect"]:             (*grants.Engine).ServeIntrospect,
		p["logout"]:                 (*grants.Engine).ServeLogout,
		p["logout"] + "/confirm":    (*grants.Engine).ServeLogout,
		p["assets"] + "style.css":   (*grants.Engine).ServeAsset,
		p["assets"] + "logo":        (*grants.Engine).ServeAsset,
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	route, ok := s.routes[r.URL.Path]
	if !ok && strings.HasPrefix(r.URL.Path, s.prefix) {
		grants.DiscardBody(r)
		grants.WriteError(w, &grants.Error{Code: grants.CodeInvalidRequest, Status: http.StatusNotFound,
			Description: "no endpoint at this path; the discovery document lists them"})
		return nil
	}
	if !ok {
		return next.ServeHTTP(w, r)
	}
	eng, err := s.app.ready()
	if err != nil {
		s.logger.Error("oauth storage unavailable", zap.Error(err))
		grants.WriteError(w, &grants.Error{Code: grants.CodeTemporarilyUnavailable,
			Description: "the authorization server is starting or its storage is unavailable; retry later",
			Status:      http.StatusServiceUnavailable})
		return nil
	}
	route(eng, w, withCaddyContext(r))
	return nil
}

// withCaddyContext passes the engine what Caddy knows of the request: its
// uuid, which also goes into Caddy's access log line, so the engine's
// log lines can be matched with it (made only when the engine logs a
// line, as Caddy makes it only when something reads it); and the
// client's address as Caddy determined it (honouring trusted_proxies),
// which the sign-in throttle counts, so that it does not count a load
// balancer's address for everyone behind it.
func withCaddyContext(r *http.Request) *http.Request {
	ctx := r.Context()
	if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		ctx = grants.WithLazyRequestID(ctx, caddyRequestID{repl})
	}
	if ip := caddyClientIP(r); ip != "" {
		ctx = grants.WithClientIP(ctx, ip)
	}
	return r.WithContext(ctx)
}

// caddyRequestID is Caddy's request uuid, made when first read. A struct
// of one pointer goes into an interface without an allocation.
type caddyRequestID struct{ repl *caddy.Replacer }

func (id caddyRequestID) String() string {
	s, _ := id.repl.GetString("http.request.uuid")
	return s
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Server)(nil)
	_ caddyhttp.MiddlewareHandler = (*Server)(nil)
)
