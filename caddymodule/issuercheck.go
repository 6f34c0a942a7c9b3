package caddymodule

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/oauthgate/caddy-oauthgate/grants"
	"go.uber.org/zap"
)

// warnIssuerNotServed warns when no oauth_server of the http app can take
// the requests for the issuer's endpoints: a typo in the issuer or the
// site address, a site on another port or scheme, an oauth_server behind
// a path matcher, a path strip or a handler that answers first. Clients then find neither discovery
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
			"put oauth_server in the site of the issuer (for https://auth.example.com: a site auth.example.com { oauth_server }), "+
			"not in a handle or handle_path that does not take the issuer's paths nor after a respond or reverse_proxy, or correct the issuer",
			zap.String("issuer", a.Issuer), zap.Bool("behind_tls_proxy", a.BehindTLSProxy))
	}
}

// issuerServed reports whether requests for the issuer's endpoints reach
// an oauth_server of app with their paths intact: a server that listens
// on the issuer's port with TLS for https (both unchecked behind a TLS
// proxy, which listens for the server), and, through the routes and any
// subroutes, the token endpoint and one of the discovery documents. On
// the way, host and path matchers are evaluated with caddyhttp's own
// code; other matchers (headers, client IPs, expressions, placeholders)
// cannot be judged without a real request and are assumed to match, so
// that an ordinary config is never warned about.
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
	base := iss.EscapedPath()
	token := issuerRequest(http.MethodPost, iss, base+grants.TokenPath)
	discovery := []*http.Request{
		issuerRequest(http.MethodGet, iss, "/.well-known/oauth-authorization-server"+base),
		issuerRequest(http.MethodGet, iss, base+"/.well-known/openid-configuration"),
	}
	for _, srv := range app.Servers {
		if !behindTLSProxy && (!listensOn(srv, uint(p)) || (iss.Scheme == "https") != (len(srv.TLSConnPolicies) > 0)) {
			continue
		}
		if !reachesServer(srv.Routes, token) {
			continue
		}
		for _, r := range discovery {
			if r != nil && reachesServer(srv.Routes, r) {
				return true
			}
		}
	}
	return false
}

// issuerRequest is a request for path at the issuer's scheme and host,
// with the replacer that matchers expect in its context; nil if the
// URL does not parse.
func issuerRequest(method string, iss *url.URL, path string) *http.Request {
	r, err := http.NewRequest(method, iss.Scheme+"://"+iss.Host+path, nil)
	if err != nil {
		return nil
	}
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
}

// reachesServer reports whether r reaches an oauth_server of routes with
// its path unchanged (a handle_path before it strips the issuer's path,
// and oauth_server then passes the request on).
func reachesServer(routes caddyhttp.RouteList, r *http.Request) bool {
	if r == nil {
		return false
	}
	got, _ := walkRoutes(routes, r, r.URL.Path)
	return got == reachServer
}

// reach is where a request walked through routes ends.
type reach int

const (
	reachOn       reach = iota // past the routes, to whatever follows them
	reachServer                // at an oauth_server, with the endpoint's path
	reachAnswered              // answered or ended before any oauth_server
)

// walkRoutes follows r through routes the way caddyhttp runs them, and
// returns where it ends and r as rewritten on the way. A route whose
// matchers surely take r runs its handlers: a handler that always
// answers (respond, error, reverse_proxy, file_server without pass_thru)
// ends the walk, a path-prefix strip rewrites r, a terminal route or a
// matched route of a group ends the rest. A route whose matchers may
// take r (ones this cannot judge) is searched for an oauth_server but
// neither ends the walk nor rewrites r: the warning must not be raised
// for a config that may well serve the issuer.
func walkRoutes(routes caddyhttp.RouteList, r *http.Request, path string) (reach, *http.Request) {
	groups := map[string]bool{}
routes:
	for _, route := range routes {
		if route.Group != "" && groups[route.Group] {
			continue
		}
		m := routeMatches(route.MatcherSets, r)
		if m == matchNo {
			continue
		}
		sure := m == matchYes
		if sure && route.Group != "" {
			groups[route.Group] = true
		}
		for _, h := range route.Handlers {
			switch h := h.(type) {
			case *Server:
				if r.URL.Path == path {
					return reachServer, r
				}
			case *caddyhttp.Subroute:
				got, r2 := walkRoutes(h.Routes, r, path)
				if got == reachServer {
					return got, r2
				}
				if !sure {
					continue routes
				}
				if got == reachAnswered {
					return got, r2
				}
				r = r2
			case *rewrite.Rewrite:
				if sure {
					r = stripPrefix(h, r)
				}
			case *caddyhttp.StaticResponse, *caddyhttp.StaticError, *reverseproxy.Handler:
				if sure {
					return reachAnswered, r
				}
				continue routes
			case *fileserver.FileServer:
				if h.PassThru {
					break
				}
				if sure {
					return reachAnswered, r
				}
				continue routes
			}
		}
		if sure && route.Terminal {
			return reachAnswered, r
		}
	}
	return reachOn, r
}

// stripPrefix returns r as rw's strip_path_prefix leaves it, by
// caddyhttp's rewrite code on a copy of r. A prefix with placeholders
// cannot be judged here and leaves r as it is.
func stripPrefix(rw *rewrite.Rewrite, r *http.Request) *http.Request {
	if rw.StripPathPrefix == "" || strings.Contains(rw.StripPathPrefix, "{") {
		return r
	}
	r2 := r.Clone(r.Context())
	rewrite.Rewrite{StripPathPrefix: rw.StripPathPrefix}.Rewrite(r2, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer))
	return r2
}

// match is whether matchers take a request: no, yes, or maybe (some
// matcher could not be judged).
type match int

const (
	matchNo match = iota
	matchYes
	matchMaybe
)

// routeMatches judges a route's matcher sets (any set, all its matchers)
// on r: host and path matchers by caddyhttp's code, any other matcher
// as maybe. No matcher set matches everything.
func routeMatches(sets caddyhttp.MatcherSets, r *http.Request) match {
	if len(sets) == 0 {
		return matchYes
	}
	result := matchNo
	for _, set := range sets {
		s := matchYes
		for _, m := range set {
			switch judge(m, r) {
			case matchNo:
				s = matchNo
			case matchMaybe:
				if s == matchYes {
					s = matchMaybe
				}
			}
			if s == matchNo {
				break
			}
		}
		if s == matchYes {
			return matchYes
		}
		if s == matchMaybe {
			result = matchMaybe
		}
	}
	return result
}

// judge evaluates one matcher on r if it is a host or path matcher
// without placeholders, and says maybe for any other.
func judge(m any, r *http.Request) match {
	switch m := m.(type) {
	case caddyhttp.MatchHost:
		return judged(m.MatchWithError(r))
	case *caddyhttp.MatchHost:
		return judged(m.MatchWithError(r))
	case caddyhttp.MatchPath:
		return judgePath(m, r)
	case *caddyhttp.MatchPath:
		return judgePath(*m, r)
	}
	return matchMaybe
}

func judgePath(m caddyhttp.MatchPath, r *http.Request) match {
	for _, p := range m {
		if strings.Contains(p, "{") {
			return matchMaybe
		}
	}
	return judged(m.MatchWithError(r))
}

func judged(ok bool, err error) match {
	switch {
	case err != nil:
		return matchMaybe
	case ok:
		return matchYes
	}
	return matchNo
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
