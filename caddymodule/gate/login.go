package gate

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/caddyreq"
)

// LoginIssuer is an Issuer whose authorization server can sign browsers
// in for a gate (browser mode with the built-in provider).
type LoginIssuer interface {
	Issuer
	// LoginClient registers (idempotently, by redirectURI; a second gate
	// with the same redirectURI adds its audience and scopes) the
	// first-party client of a browser-mode gate: grant types
	// authorization_code + refresh_token, exact redirectURI and
	// postLogoutURI, consent skipped (first party), audience = the gates'
	// audiences, scopes = openid profile email + the given scopes. It
	// returns the client_id and a RoundTripper that carries the gate's
	// own requests for the issuer's URLs (discovery, JWKS, token,
	// revocation, userinfo) to this server IN PROCESS, authenticated as
	// that client (no secret: a request that did not come through this
	// RoundTripper can never authenticate as a gate client).
	LoginClient(redirectURI, postLogoutURI, name, audience string, scopes []string) (clientID string, rt http.RoundTripper, err error)
	// SessionSealer seals the gate's session cookies with a key derived
	// from the key ring (opens storage on first use).
	SessionSealer() (*tokens.Sealer, error)
}

// Login turns on browser mode: a browser without a session is sent to
// the OpenID provider to sign in, and comes back with a sealed session
// cookie the gate checks on every request. With no issuer the provider
// is this Caddy's `oauth` app (the built-in mode); with one it is an
// external OpenID provider (Keycloak, Entra ID, Okta, …) found by
// discovery. See docs/browser-login.md.
type Login struct {
	// Issuer is the issuer URL of an external OpenID provider, whose
	// discovery document is at Issuer + /.well-known/openid-configuration.
	// Default: this Caddy's oauth app, which needs the `oauth` global
	// option.
	Issuer string `json:"issuer,omitempty"`

	// ClientID is the gate's client at the external provider. Required
	// with issuer; not allowed without (the built-in provider registers
	// the gate's client itself).
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the gate's client secret at the external provider
	// (client_secret_basic); placeholders such as {env.GATE_SECRET} are
	// expanded at start. Default: none (a public client with PKCE).
	ClientSecret string `json:"client_secret,omitempty"`

	// Scopes are asked for at sign-in. Default: openid profile email,
	// plus the gate's scopes; openid is always added.
	Scopes []string `json:"scopes,omitempty"`

	// RedirectURI is the callback URL registered with the provider.
	// Default: the audience's origin + callback_path (an audience that is
	// not an http(s) URL needs it set).
	RedirectURI string `json:"redirect_uri,omitempty"`

	// CallbackPath is the path on which the gate takes the provider's
	// answer. Default: the path of redirect_uri when that is set, else
	// /oauth2/callback.
	CallbackPath string `json:"callback_path,omitempty"`

	// LogoutPath ends the session (POST, or GET for plain links) and
	// sends the browser to the provider's end_session_endpoint. Default:
	// /oauth2/logout.
	LogoutPath string `json:"logout_path,omitempty"`

	// PostLogoutRedirectURI is where the provider sends the browser after
	// logout. Default: the redirect URI's origin + "/".
	PostLogoutRedirectURI string `json:"post_logout_redirect_uri,omitempty"`

	// CookieName names the session cookie; over TLS (or behind_tls_proxy)
	// it is prefixed with __Host-. The sign-in cookies are named after it
	// (<name>_login0…3). Default: oauthgate_app, which differs from the
	// authorization server's own sign-in cookie (oauthgate_session): over
	// plain HTTP on one host (loopback) a browser would send both to the
	// server, which refuses a request with two.
	CookieName string `json:"cookie_name,omitempty"`

	// SessionTTL is the longest a session with an external provider
	// lives before the browser signs in again. With the built-in provider
	// the session lives as long as its grant (refresh_token_ttl) and ends
	// when the grant, the user or the client is revoked. Default: 12h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
}

// Defaults of the login block.
const (
	defaultCallbackPath = "/oauth2/callback"
	defaultLogoutPath   = "/oauth2/logout"
	defaultCookieName   = "oauthgate_app"
	// serverCookieName is the authorization server's own session cookie
	// (grants), which a gate's cookie must not be named after.
	serverCookieName  = "oauthgate_session"
	defaultSessionTTL = 12 * time.Hour
	// loginTTL is how long a started sign-in may take.
	loginTTL = 10 * time.Minute
	// maxLoginCookies bounds the sign-ins in progress in one browser
	// (tabs): one cookie each.
	maxLoginCookies = 4
)

// loginState is a gate's browser mode, made at Provision; the relying
// party itself is made on first use (rp.go), so that Provision never
// waits for a network.
type loginState struct {
	external      bool
	issuerURL     string
	clientID      string // external mode
	clientSecret  string
	scopes        []string
	audience      string
	redirectURI   string
	postLogoutURI string
	callbackPath  string
	logoutPath    string
	cookieName    string
	sessionTTL    time.Duration
	behindTLS     bool
	name          string // the gate's client name at the built-in provider

	app     LoginIssuer // built-in mode, or nil
	storage storageLike // external mode without the oauth app: holds the sealing secret
	logger  *zap.Logger

	rpMu    sync.Mutex
	rp      *relyingParty // nil until made; read under rpMu or via current()
	rpErr   error
	rpRetry time.Time

	sessions *sessionCache
	refresh  refresher
	// now is time.Now, replaced by tests.
	now func() time.Time
	// externalClient, when set (tests), carries the requests to an
	// external provider.
	externalClient *http.Client
}

// validateLogin checks the login block and the rules that need it.
func (p *Protect) validateLogin() error {
	for _, u := range p.AllowUsers {
		if u == "" || !printableASCII(u) {
			return fmt.Errorf("oauth_protect: allow_users %q must be a user name or subject of printable ASCII", u)
		}
	}
	for _, g := range p.AllowGroups {
		if g == "" || strings.ContainsAny(g, "\r\n\x00") {
			return fmt.Errorf("oauth_protect: allow_groups %q must be a group name", g)
		}
	}
	if p.GroupsClaim != "" && !printableASCII(p.GroupsClaim) {
		return fmt.Errorf("oauth_protect: groups_claim %q must be a claim name", p.GroupsClaim)
	}
	l := p.Login
	if l == nil {
		return nil
	}
	if l.Issuer != "" {
		u, err := url.Parse(l.Issuer)
		if err != nil || u.Scheme != "https" && !(u.Scheme == "http" && tokens.IsLoopbackHost(u.Hostname())) || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("oauth_protect: login issuer %q must be the provider's https URL (http only for loopback), without query or fragment", l.Issuer)
		}
		if l.ClientID == "" {
			return fmt.Errorf("oauth_protect: login with issuer %s needs client_id: the gate's client at that provider", l.Issuer)
		}
	} else if l.ClientID != "" || l.ClientSecret != "" {
		return errors.New("oauth_protect: login client_id and client_secret are for an external provider (issuer); the built-in provider registers the gate's client itself")
	}
	for _, s := range l.Scopes {
		if s == "" || !printableASCII(s) || strings.ContainsAny(s, "\"\\") {
			return fmt.Errorf("oauth_protect: login scope %q is not a valid scope token (RFC 6749 §3.3)", s)
		}
	}
	for name, path := range map[string]string{"callback_path": l.CallbackPath, "logout_path": l.LogoutPath} {
		if path != "" && (!strings.HasPrefix(path, "/") || !printableASCII(path) || strings.ContainsAny(path, "?#\\")) {
			return fmt.Errorf("oauth_protect: login %s %q must be a path starting with /", name, path)
		}
	}
	if l.CallbackPath != "" && l.CallbackPath == l.LogoutPath {
		return errors.New("oauth_protect: login callback_path and logout_path must differ")
	}
	for name, uri := range map[string]string{"redirect_uri": l.RedirectURI, "post_logout_redirect_uri": l.PostLogoutRedirectURI} {
		if uri == "" {
			continue
		}
		u, err := url.Parse(uri)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("oauth_protect: login %s %q must be an absolute http(s) URL without fragment", name, uri)
		}
	}
	if l.CookieName != "" && (!headerName(l.CookieName) || strings.HasPrefix(strings.ToLower(l.CookieName), "__")) {
		return fmt.Errorf("oauth_protect: login cookie_name %q must be a cookie name (a token) without a __ prefix: the gate adds __Host- over TLS", l.CookieName)
	}
	if l.SessionTTL < 0 {
		return errors.New("oauth_protect: login session_ttl must be positive")
	}
	if l.RedirectURI == "" {
		if u, _ := parseAudience(p.Audience); u == nil || (u.Scheme != "https" && u.Scheme != "http") {
			return errors.New("oauth_protect: login needs redirect_uri when the audience is not an http(s) URL: redirect_uri https://app.example.com/oauth2/callback")
		}
	}
	return nil
}

// provisionLogin makes the browser mode's state. app is the oauth app
// (nil without one); storage keeps the sealing secret of a gate without
// it.
func (p *Protect) provisionLogin(app any, storage storageLike) error {
	if p.Login == nil {
		return nil
	}
	if err := p.validateLogin(); err != nil {
		return err
	}
	l := p.Login
	repl := caddy.NewReplacer()
	ls := &loginState{
		external:      l.Issuer != "",
		issuerURL:     l.Issuer,
		clientID:      repl.ReplaceKnown(l.ClientID, ""),
		clientSecret:  repl.ReplaceKnown(l.ClientSecret, ""),
		audience:      p.Audience,
		redirectURI:   l.RedirectURI,
		postLogoutURI: l.PostLogoutRedirectURI,
		callbackPath:  l.CallbackPath,
		logoutPath:    l.LogoutPath,
		cookieName:    l.CookieName,
		sessionTTL:    time.Duration(l.SessionTTL),
		behindTLS:     p.behindTLS,
		storage:       storage,
		logger:        p.logger,
		sessions:      newSessionCache(),
		now:           time.Now,
	}
	ls.refresh.init()
	if ls.redirectURI == "" {
		u, _ := parseAudience(p.Audience)
		path := ls.callbackPath
		if path == "" {
			path = defaultCallbackPath
		}
		ls.redirectURI = u.Scheme + "://" + u.Host + path
	}
	ru, _ := url.Parse(ls.redirectURI)
	if ls.callbackPath == "" {
		ls.callbackPath = ru.Path
		if l.RedirectURI == "" || ls.callbackPath == "" {
			ls.callbackPath = defaultCallbackPath
		}
	}
	if ls.logoutPath == "" {
		ls.logoutPath = defaultLogoutPath
	}
	if ls.callbackPath == ls.logoutPath {
		return errors.New("oauth_protect: login callback_path and logout_path must differ")
	}
	if ls.postLogoutURI == "" {
		ls.postLogoutURI = ru.Scheme + "://" + ru.Host + "/"
	}
	if ls.cookieName == "" {
		ls.cookieName = defaultCookieName
	}
	if strings.HasPrefix(ls.cookieName, serverCookieName) || ls.cookieName == "oauthgate_csrf" {
		p.logger.Warn("oauth_protect: login cookie_name is the authorization server's own cookie name: over plain HTTP on one host the server refuses requests that carry both; use another name or HTTPS",
			zap.String("cookie_name", ls.cookieName))
	}
	if ls.sessionTTL == 0 {
		ls.sessionTTL = defaultSessionTTL
	}
	ls.scopes = []string{"openid"}
	want := l.Scopes
	if len(want) == 0 {
		want = append([]string{"openid", "profile", "email"}, p.Scopes...)
		if l.Issuer == "" {
			// The built-in provider releases the user's groups with
			// this scope (an external one may refuse a scope it does
			// not know, and sends its groups claim as configured).
			want = append(want, "groups")
		}
	}
	for _, s := range want {
		if !slices.Contains(ls.scopes, s) {
			ls.scopes = append(ls.scopes, s)
		}
	}
	ls.name = "oauth_protect " + ru.Host
	if !ls.external {
		li, ok := app.(LoginIssuer)
		if app == nil || !ok {
			return errors.New("oauth_protect: login with the built-in provider needs the `oauth` global option (with at least an issuer); or set login { issuer … client_id … } for an external OpenID provider")
		}
		ls.app = li
		ls.issuerURL, _ = li.GateSettings()
	} else if li, ok := app.(LoginIssuer); ok {
		ls.app = li // only its sealer
	} else if storage == nil {
		return errors.New("oauth_protect: login needs Caddy's storage for its session key")
	}
	p.login = ls
	p.registerCookies()
	return nil
}

// overTLS reports whether the browser reached the gate over TLS, which
// makes the cookies Secure and __Host- prefixed.
func (ls *loginState) overTLS(r *http.Request) bool { return r.TLS != nil || ls.behindTLS }

// serveBrowser is the browser mode's part of ServeHTTP. It answers the
// callback and logout paths, checks a session (when the request has no
// Authorization header) and sends a browser without one to sign in.
// handled is false when the request goes on to the bearer token path.
func (p *Protect) serveBrowser(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, sessionValue string, loginCookies map[int]string) (handled bool, err error) {
	ls := p.login
	own := r.URL.Path == ls.callbackPath || r.URL.Path == ls.logoutPath
	if _, ok := r.Header["Authorization"]; ok && !own {
		return false, nil
	}
	// The bearer path's TLS rule: cookies are credentials too.
	if r.TLS == nil && !ls.behindTLS && !tokens.IsLoopbackFrom(r, caddyreq.ClientIP(r)) {
		countGate(gateBadRequest)
		drainBody(r)
		writePage(w, http.StatusBadRequest, "Sign-in needs HTTPS", "This site accepts sign-in over HTTPS only.")
		return true, nil
	}
	switch r.URL.Path {
	case ls.callbackPath:
		return true, p.serveCallback(w, r, loginCookies)
	case ls.logoutPath:
		return true, p.serveLogout(w, r, sessionValue)
	}
	// A token in the query or a form body is refused as on the bearer
	// path: the upstream might take it for credentials the gate checked.
	if _, status, _ := tokens.BearerToken(r); status == http.StatusBadRequest {
		countGate(gateBadRequest)
		return true, p.denyRequest(w, r, status, "send the access token once, in the Authorization header as Bearer")
	}
	if st, desc := p.checkFormBody(r); st != 0 {
		countGate(gateBadRequest)
		return true, p.denyRequest(w, r, st, desc)
	}
	if sessionValue != "" {
		s, status := p.openSession(w, r, sessionValue)
		switch {
		case status == http.StatusServiceUnavailable:
			countGate(gateUnavailable)
			return true, writeUnavailable(w, r)
		case s != nil:
			if !p.allowed(s.claims) {
				countGate(gateForbidden)
				drainBody(r)
				writePage(w, http.StatusForbidden, "Access denied", "You are signed in, but this page is not open to you.")
				return true, nil
			}
			for _, scope := range p.Scopes {
				if !hasScope(s.claims.Scope, scope) {
					countGate(gateScope)
					drainBody(r)
					writePage(w, http.StatusForbidden, "Access denied", "You are signed in, but this page is not open to you.")
					return true, nil
				}
			}
			countGate(gateAllowed)
			p.setIdentity(r, s.claims)
			return true, p.serveNext(w, r, next, s.claims)
		}
		// An invalid or ended session is cleared, then treated as none.
		ls.clearCookie(w, r, ls.sessionCookieName(r))
	}
	if !isNavigation(r) {
		countGate(gateNoToken)
		return true, p.deny(w, r, http.StatusUnauthorized, "", "")
	}
	return true, p.startLogin(w, r, loginCookies)
}

// isNavigation reports whether r is a browser's top-level navigation,
// which may be redirected to sign in; a script's request (fetch, XHR) or
// a non-GET one gets 401 instead, which it can handle.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	if _, ok := r.Header["X-Requested-With"]; ok {
		return false
	}
	accept := strings.ToLower(strings.Join(r.Header["Accept"], ","))
	if strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html") {
		return false
	}
	return true
}

// maxReturnPath bounds the path+query a browser returns to after sign-in.
const maxReturnPath = 2048

// returnPath is where the browser goes after sign-in: only the original
// request's own path and query, and "/" for anything a browser could
// read as another origin (//host, /\host, control characters a browser
// drops). Nothing the request names elsewhere can choose it.
func (ls *loginState) returnPath(r *http.Request) string {
	target := r.URL.RequestURI()
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		target = or.URL.RequestURI()
	}
	return safeReturnPath(target, ls.callbackPath, ls.logoutPath)
}

// safeReturnPath passes a local path+query and turns anything else into
// "/". It is checked again when the callback uses it.
func safeReturnPath(target string, avoid ...string) string {
	if len(target) == 0 || len(target) > maxReturnPath || target[0] != '/' {
		return "/"
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return "/"
	}
	// An escaped slash or backslash right after the first one is no
	// other origin to a browser, but an upstream that decodes the path
	// and redirects to it would make it one.
	if len(target) >= 4 && (strings.EqualFold(target[1:4], "%2f") || strings.EqualFold(target[1:4], "%5c")) {
		return "/"
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < 0x21 || c >= 0x7f || c == '\\' {
			return "/"
		}
	}
	path, _, _ := strings.Cut(target, "?")
	if slices.Contains(avoid, path) {
		return "/"
	}
	return target
}

// cookieHash is the key of an opened session in the cache.
func cookieHash(v string) [32]byte { return sha256.Sum256([]byte(v)) }
