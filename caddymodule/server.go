package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/caddyreq"
	"github.com/oauthgate/caddy-oauthgate/internal/lograte"
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
	logger *zap.Logger
	// failures writes the "storage unavailable" lines, at most one a
	// second per cause: while the storage cannot open, every request
	// fails the same way.
	failures *lograte.Limiter
}

// CaddyModule returns the Caddy module information.
func (Server) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_server",
		New: func() caddy.Module { return new(Server) },
	}
}

// Provision finds the oauth app.
func (s *Server) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	s.failures = lograte.New(s.logger)
	app, err := appFrom(ctx, "oauth_server")
	if err != nil {
		return err
	}
	s.app = app
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. The engine owns its
// route table; a path that is not the engine's goes to the next handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	route, ok := s.app.engine.Route(r.URL.Path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	// RFC 8705: the engine reads the client certificate from the TLS
	// connection, or from the configured header of a trusted proxy only;
	// other certificate headers are a client's words.
	if h := s.app.ClientCertHeader; h != nil {
		r = h.Take(r)
	}
	tokens.StripClientCertHeaders(r.Header)
	if _, err := s.app.ready(); err != nil {
		s.failures.Error("oauth storage unavailable\x00"+err.Error(), "oauth storage unavailable",
			zap.Error(err), zap.String("request_id", caddyreq.RequestID(r)))
		grants.WriteError(w, &grants.Error{Code: grants.CodeTemporarilyUnavailable,
			Description: "the authorization server is starting or its storage is unavailable; retry later",
			Status:      http.StatusServiceUnavailable, RetryAfter: grants.RetryAfterUnavailable})
		return nil
	}
	route(w, withCaddyContext(r))
	return nil
}

// withCaddyContext passes the engine what Caddy knows of the request, in
// one context value: the client's address as Caddy determined it
// (honouring trusted_proxies), which the sign-in throttle counts, so that
// it does not count a load balancer's address for everyone behind it;
// and its uuid, which also goes into Caddy's access log line, so the
// engine's log lines can be matched with it. Caddy makes the uuid only
// when asked, so the engine asks only when it writes a line.
func withCaddyContext(r *http.Request) *http.Request {
	f := &grants.Front{ClientIP: caddyreq.ClientIP(r)}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		f.RequestID = caddyreq.LazyID{Repl: repl}
	}
	return r.WithContext(grants.WithFront(r.Context(), f))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Server)(nil)
	_ caddyhttp.MiddlewareHandler = (*Server)(nil)
)
