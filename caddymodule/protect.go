package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

func init() {
	caddy.RegisterModule(Protect{})
}

// Protect lets a request through only with a valid access token issued by
// this server's oauth app, checked in-process, and hands the next handler
// (usually reverse_proxy) identity headers it can trust. Failures are
// answered per RFC 6750.
type Protect struct {
	// Scopes the token must all carry. Default: none.
	Scopes []string `json:"scopes,omitempty"`

	// Audience is this resource's identifier; the token's `aud` must
	// contain it. When set, the RFC 9728 protected resource metadata is
	// served at /.well-known/oauth-protected-resource (plus the
	// audience's path) and 401 answers point to it. Default: any audience.
	Audience string `json:"audience,omitempty"`

	// ForwardHeaders copy token claims into request headers for the
	// upstream. A client-sent copy of each header is always removed first.
	ForwardHeaders []ForwardHeader `json:"forward_headers,omitempty"`

	// Realm is the realm of the WWW-Authenticate challenge. Default: the
	// audience, or else "oauth".
	Realm string `json:"realm,omitempty"`

	// PassAuthorization forwards the client's Authorization header to the
	// upstream. Default: false; the token is removed so it cannot be
	// replayed by the upstream.
	PassAuthorization bool `json:"pass_authorization,omitempty"`

	// BlockPreflight requires a token on CORS preflight requests too.
	// Default: false; browsers never send credentials on a preflight, so
	// OPTIONS requests with Access-Control-Request-Method go through.
	BlockPreflight bool `json:"block_preflight,omitempty"`

	app       *App
	logger    *zap.Logger
	strip     map[string]bool
	prmPath   string
	prm       []byte
	challenge string // `Bearer realm="…"[, resource_metadata="…"]`
	scopeList string
}

// ForwardHeader copies one claim into one request header.
type ForwardHeader struct {
	// Header is the request header to set, such as X-Forwarded-User.
	Header string `json:"header"`
	// Claim is the token claim to copy, such as sub, client_id or scope.
	// Arrays are joined with spaces; a missing claim leaves the header out.
	Claim string `json:"claim"`
}

// identityHeaders are removed from every request because upstreams
// commonly trust them as "the authenticated user" (RFC 9700 §4.13).
var identityHeaders = []string{
	"remote-user", "x-remote-user", "x-forwarded-user", "x-forwarded-email",
	"x-forwarded-groups", "x-forwarded-preferred-username", "x-user", "x-email",
}

// CaddyModule returns the Caddy module information.
func (Protect) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_protect",
		New: func() caddy.Module { return new(Protect) },
	}
}

// Provision finds the oauth app and precomputes the answers.
func (p *Protect) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("oauth_protect: registering metrics: %w", err)
	}
	app, err := appFrom(ctx, "oauth_protect")
	if err != nil {
		return err
	}
	p.app = app
	p.strip = map[string]bool{}
	for _, h := range identityHeaders {
		p.strip[h] = true
	}
	for _, fh := range p.ForwardHeaders {
		p.strip[normalizeHeader(fh.Header)] = true
	}
	realm := p.Realm
	if realm == "" {
		realm = p.Audience
	}
	if realm == "" {
		realm = "oauth"
	}
	p.challenge = `Bearer realm="` + realm + `"`
	if p.Audience != "" {
		u, _ := url.Parse(p.Audience)
		p.prmPath = "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.Path, "/")
		p.challenge += `, resource_metadata="` + u.Scheme + "://" + u.Host + p.prmPath + `"`
		p.prm, err = json.Marshal(map[string]any{
			"resource":                 p.Audience,
			"authorization_servers":    []string{app.Issuer},
			"bearer_methods_supported": []string{"header"},
			"scopes_supported":         p.Scopes,
		})
		if err != nil {
			return err
		}
	}
	p.scopeList = strings.Join(p.Scopes, " ")
	return nil
}

// Validate checks the configuration and says what to fix.
func (p *Protect) Validate() error {
	if strings.ContainsAny(p.Realm, "\"\\\r\n") {
		return fmt.Errorf("oauth_protect: realm %q must not contain quotes, backslashes or line breaks", p.Realm)
	}
	if p.Audience != "" {
		u, err := url.Parse(p.Audience)
		if err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsAny(p.Audience, "\"\\ ") {
			return fmt.Errorf("oauth_protect: audience %q must be an absolute URL", p.Audience)
		}
	}
	for _, s := range p.Scopes {
		if s == "" || strings.ContainsAny(s, "\" \\") {
			return fmt.Errorf("oauth_protect: scope %q is not a valid scope token", s)
		}
	}
	for _, fh := range p.ForwardHeaders {
		if fh.Header == "" || fh.Claim == "" || strings.ContainsAny(fh.Header, " :\r\n") {
			return fmt.Errorf("oauth_protect: forward_header needs a header name and a claim name (got %q %q)", fh.Header, fh.Claim)
		}
	}
	return nil
}

// normalizeHeader folds case and treats '_' as '-', because CGI-style
// upstreams read X_Remote_User and X-Remote-User as the same variable.
func normalizeHeader(h string) string {
	return strings.ReplaceAll(strings.ToLower(h), "_", "-")
}

func (p *Protect) stripIdentityHeaders(r *http.Request) {
	for name := range r.Header {
		n := normalizeHeader(name)
		if p.strip[n] || strings.HasPrefix(n, "x-auth-") {
			delete(r.Header, name)
		}
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (p *Protect) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p.stripIdentityHeaders(r)
	if p.prmPath != "" && r.URL.Path == p.prmPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.prm)))
		_, err := w.Write(p.prm)
		return err
	}
	if !p.BlockPreflight && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		countGate(gatePreflight)
		return next.ServeHTTP(w, r)
	}
	token, status, code := grants.BearerToken(r)
	if status != 0 {
		if status == http.StatusUnauthorized {
			countGate(gateNoToken)
		} else {
			countGate(gateBadRequest)
		}
		return p.deny(w, status, code, "")
	}
	eng, err := p.app.ready()
	if err != nil {
		countGate(gateUnavailable)
		p.logger.Error("oauth storage unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return nil
	}
	claims, err := eng.Verifier.Verify(token, time.Now())
	if err == nil && p.Audience != "" && !claims.Audience.Contains(p.Audience) {
		err = &grants.TokenError{Reason: "audience mismatch"}
	}
	if err != nil {
		if ce := p.logger.Check(zapcore.DebugLevel, "access token refused"); ce != nil {
			ce.Write(zap.Error(err))
		}
		countGate(gateInvalid)
		return p.deny(w, http.StatusUnauthorized, "invalid_token", "")
	}
	if len(p.Scopes) > 0 {
		have := claims.Scopes()
		for _, s := range p.Scopes {
			if !slices.Contains(have, s) {
				countGate(gateScope)
				return p.deny(w, http.StatusForbidden, "insufficient_scope", p.scopeList)
			}
		}
	}
	countGate(gateAllowed)
	p.setIdentity(r, claims)
	if !p.PassAuthorization {
		r.Header.Del("Authorization")
	}
	return next.ServeHTTP(w, r)
}

// setIdentity publishes the verified claims as placeholders and headers.
func (p *Protect) setIdentity(r *http.Request, c *grants.AccessClaims) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("oauth.sub", c.Subject)
	repl.Set("oauth.client_id", c.ClientID)
	repl.Set("oauth.scope", c.Scope)
	repl.Set("http.auth.user.id", c.Subject)
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "oauth.claim.")
		if !ok {
			return nil, false
		}
		return claimString(c, name)
	})
	for _, fh := range p.ForwardHeaders {
		if v, ok := claimString(c, fh.Claim); ok {
			r.Header.Set(fh.Header, v)
		}
	}
}

// claimString renders a claim as a header-safe string.
func claimString(c *grants.AccessClaims, name string) (string, bool) {
	v, ok := c.Claim(name)
	if !ok {
		return "", false
	}
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case json.Number:
		s = t.String()
	case bool:
		s = strconv.FormatBool(t)
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			if es, ok := e.(string); ok {
				parts = append(parts, es)
			}
		}
		s = strings.Join(parts, " ")
	default:
		b, _ := json.Marshal(t)
		s = string(b)
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", false
	}
	return s, true
}

// deny answers per RFC 6750 §3. Nothing from the request is echoed.
func (p *Protect) deny(w http.ResponseWriter, status int, code, scope string) error {
	grants.WriteBearerError(w, p.challenge, status, code, scope)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Protect)(nil)
	_ caddy.Validator             = (*Protect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Protect)(nil)
)
