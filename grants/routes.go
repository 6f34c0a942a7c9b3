package grants

import (
	"net/http"
	"path"
	"strings"
)

// paths returns the path of each endpoint by name: decoded, as a router
// matches them.
func (e *Engine) paths() map[string]string {
	return map[string]string{
		"token":                e.basePath + TokenPath,
		"jwks":                 e.basePath + JWKSPath,
		"authorize":            e.basePath + AuthorizePath,
		"userinfo":             e.basePath + UserinfoPath,
		"logout":               e.basePath + LogoutPath,
		"assets":               e.basePath + AssetsPath,
		"revoke":               e.basePath + RevokePath,
		"introspect":           e.basePath + IntrospectPath,
		"par":                  e.basePath + PARPath,
		"register":             e.basePath + RegisterPath,
		"as_meta":              "/.well-known/oauth-authorization-server" + e.basePath,
		"oidc_meta":            e.basePath + "/.well-known/openid-configuration",
		"device_authorization": e.basePath + DeviceAuthorizationPath,
		"device":               e.basePath + DevicePath,
		// Every endpoint but discovery is under prefix; a path there that
		// is no endpoint is answered 404, not passed on.
		"prefix": e.basePath + "/oauth/",
	}
}

// routes builds the engine's route table: every path it answers, exactly.
func (e *Engine) routes() map[string]http.HandlerFunc {
	p := e.paths()
	return map[string]http.HandlerFunc{
		p["token"]:                  e.serveToken,
		p["jwks"]:                   e.serveJWKS,
		p["as_meta"]:                e.serveMetadata,
		p["oidc_meta"]:              e.serveMetadata,
		p["authorize"]:              e.serveAuthorize,
		p["authorize"] + "/login":   e.serveLogin,
		p["authorize"] + "/consent": e.serveConsent,
		p["userinfo"]:               e.serveUserinfo,
		p["revoke"]:                 e.serveRevoke,
		p["introspect"]:             e.serveIntrospect,
		p["par"]:                    e.servePAR,
		p["register"]:               e.serveRegister,
		p["device_authorization"]:   e.serveDeviceAuthorization,
		p["device"]:                 e.serveDevice,
		p["device"] + "/consent":    e.serveDeviceConsent,
		p["logout"]:                 e.serveLogout,
		p["logout"] + "/confirm":    e.serveLogout,
		p["assets"] + "style.css":   e.serveAsset,
		p["assets"] + "logo":        e.serveAsset,
	}
}

// Route finds the handler of a request path (r.URL.Path). ok is false
// for a path that is not the engine's, which the caller passes on. Every
// path under the endpoints' prefix (the issuer's path + /oauth/) is the
// engine's: one that is no endpoint is answered 404 with a JSON error,
// never handed to the next handler. The handlers need a started engine.
func (e *Engine) Route(p string) (h http.HandlerFunc, ok bool) {
	if h, ok := e.routeTable[p]; ok {
		return h, true
	}
	if strings.HasPrefix(p, e.prefix) || e.mayReadAsOurs(p) {
		return serveNoEndpoint, true
	}
	return nil, false
}

// mayReadAsOurs reports whether a path outside the prefix is one that a
// component after this one could read as under it: in another case, with
// repeated slashes or dot segments (//oauth/token, /OAUTH/token,
// /x/../oauth/token). Such a request, which may carry credentials, is
// answered here (404) rather than handed on. Ordinary paths cost no
// allocation.
func (e *Engine) mayReadAsOurs(p string) bool {
	odd := strings.Contains(p, "//") || strings.Contains(p, "/.")
	for i := 0; !odd && i < len(p); i++ {
		odd = 'A' <= p[i] && p[i] <= 'Z'
	}
	if !odd {
		return false
	}
	return strings.HasPrefix(strings.ToLower(path.Clean("/"+p))+"/", strings.ToLower(e.prefix))
}

// ServeHTTP serves the engine's endpoints, for a plain net/http server
// (Caddy's oauth_server uses Route, to pass other paths on).
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := e.Route(r.URL.Path)
	if !ok {
		h = serveNoEndpoint
	}
	h(w, r)
}

func serveNoEndpoint(w http.ResponseWriter, r *http.Request) {
	DiscardBody(r)
	WriteError(w, &Error{Code: CodeInvalidRequest, Status: http.StatusNotFound,
		Description: "no endpoint at this path; the discovery document lists them"})
}
