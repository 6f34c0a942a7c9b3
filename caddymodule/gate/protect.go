package gate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
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

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/caddyreq"
	"github.com/oauthgate/caddy-oauthgate/internal/lograte"
)

func init() {
	caddy.RegisterModule(Protect{})
}

// Protect lets a request through only with a valid access token issued by
// this server's oauth app, checked in-process, or by a trusted external
// issuer (TrustIssuers), and hands the next handler
// (usually reverse_proxy) identity headers it can trust. Failures are
// answered per RFC 6750. Nothing reaches the next handler that the gate
// did not check: OPTIONS needs a token like any other method, CORS
// preflights are answered by the gate itself (cors) or, only when asked
// to (forward_preflight), forwarded without credentials or a body.
type Protect struct {
	// Scopes the token must all carry. Default: none.
	Scopes []string `json:"scopes,omitempty"`

	// Audience is this resource's identifier, an absolute URI such as
	// https://api.example.com or urn:example:billing; the token's `aud`
	// must contain it. For an http(s) audience the RFC 9728 protected
	// resource metadata is served at /.well-known/oauth-protected-resource
	// (plus the audience's path) and 401 answers point to it. Required:
	// "any" accepts tokens minted for every API of this server and logs a
	// warning at start.
	Audience string `json:"audience,omitempty"`

	// ForwardHeaders copy token claims into request headers for the
	// upstream. A client-sent copy of each header is always removed first.
	ForwardHeaders []ForwardHeader `json:"forward_headers,omitempty"`

	// StripHeaders are further request headers the upstream trusts as
	// identity, removed from every request like the built-in list (see
	// identityHeaders). A trailing * strips a family (X-App-*). Matched
	// without regard to case, with '_' read as '-'. Default: none.
	StripHeaders []string `json:"strip_headers,omitempty"`

	// Realm is the realm of the WWW-Authenticate challenge. Default: the
	// audience, or "oauth" with audience any.
	Realm string `json:"realm,omitempty"`

	// PassAuthorization forwards the client's Authorization header to the
	// upstream. Default: false; the token is removed so it cannot be
	// replayed by the upstream.
	PassAuthorization bool `json:"pass_authorization,omitempty"`

	// CORS makes the gate answer CORS preflights itself, never forwarding
	// them, and add CORS headers to the answers of allowed cross-origin
	// requests (which still need a token). Default: none; an OPTIONS
	// request then needs a token like any other.
	CORS *CORS `json:"cors,omitempty"`

	// ForwardPreflight forwards CORS preflights without a token, for an
	// upstream that answers CORS itself: only OPTIONS requests with Origin
	// and Access-Control-Request-Method and without a body, and with their
	// Authorization and Cookie headers removed. Excludes cors. Default:
	// false.
	ForwardPreflight bool `json:"forward_preflight,omitempty"`

	// BlockPreflight is deprecated and ignored: preflights need a token
	// unless cors or forward_preflight is set.
	BlockPreflight bool `json:"block_preflight,omitempty"`

	// TrustIssuers are external authorization servers whose access
	// tokens the gate accepts besides the oauth app's (see TrustIssuer).
	// With at least one, the gate also works without the oauth app and
	// then accepts their tokens only. Default: none.
	TrustIssuers []*TrustIssuer `json:"trust_issuers,omitempty"`

	// AllowUsers admits only these users, from a session or a token: the
	// preferred_username claim, else sub. With allow_groups, either
	// admits. Default: every user the provider signs in.
	AllowUsers []string `json:"allow_users,omitempty"`

	// AllowGroups admits only members of one of these groups, read from
	// groups_claim (a string or an array of strings). Default: no group
	// rule.
	AllowGroups []string `json:"allow_groups,omitempty"`

	// GroupsClaim is the claim allow_groups reads. Default: groups.
	GroupsClaim string `json:"groups_claim,omitempty"`

	// BehindTLSProxy says TLS ends in a proxy in front of Caddy, for a
	// gate without the oauth app (trust_issuer, or login with an external
	// provider): tokens and session cookies are then accepted over plain
	// HTTP from any address, and the cookies are Secure and __Host-
	// prefixed. With the oauth app, its behind_tls_proxy applies too.
	// Default: false (plain HTTP only from loopback).
	BehindTLSProxy bool `json:"behind_tls_proxy,omitempty"`

	// ClientCertHeader reads the client certificate (RFC 9440
	// Client-Cert), for certificate-bound tokens, from a header set by a
	// TLS-terminating proxy, for requests whose direct peer is one of its
	// trusted_proxies only; from anyone else the header is removed
	// unread. Default: none (Caddy's own TLS connection only).
	ClientCertHeader *tokens.CertHeader `json:"client_cert_header,omitempty"`

	// Login turns on browser mode: sign-in with a session cookie
	// (login.go, docs/browser-login.md). Default: off, tokens only.
	Login *Login `json:"login,omitempty"`

	// RequireDPoP admits DPoP-bound access tokens only (RFC 9449 §7,
	// docs/dpop.md): a bearer token is refused, and the protected
	// resource metadata says dpop_bound_access_tokens_required. Default:
	// false; DPoP-bound tokens are accepted (with their proof) beside
	// bearer tokens.
	RequireDPoP bool `json:"require_dpop,omitempty"`

	// DPoPOrigin is the scheme and host clients reach this resource at,
	// such as https://api.example.com: a DPoP proof's htu must be it plus
	// the request's path. Default: the audience's scheme and host when
	// the audience is an http(s) URL; with any other audience and no
	// dpop_origin, DPoP-bound tokens are refused.
	DPoPOrigin string `json:"dpop_origin,omitempty"`

	issuer      Issuer
	logger      *zap.Logger
	failures    *lograte.Limiter // "storage unavailable" lines, rate-limited
	strip       map[string]bool
	stripFamily []string // prefixes, normalized, sorted and prefix-free (see inFamily)
	anyAudience bool
	behindTLS   bool
	prmPath     string
	prm         []byte
	challenge   string // `Bearer realm="…"[, resource_metadata="…"]`
	realm       string
	dpop        *dpopGate // DPoP proofs (dpop.go)
	scopeList   string
	corsHeaders corsPolicy
	corsOn      bool
	trusted     *trusted     // the trust_issuers at run time; nil for none
	trustClient *http.Client // fetches from trusted issuers; tests set their own
	login       *loginState  // browser mode, or nil
	registered  []string     // cookie names added to moduleCookies, for Cleanup
	// sessionStorage keeps the session key of a gate without the oauth
	// app (Caddy's storage).
	sessionStorage storageLike
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
// commonly trust them as "the authenticated user" (RFC 9700 §4.13):
// the names of oauth2-proxy, Authelia, Authentik, Grafana's auth proxy,
// Gitea's reverse-proxy login and Apache's REMOTE_USER conventions.
var identityHeaders = []string{
	"remote-user", "x-remote-user", "x-forwarded-email", "x-forwarded-groups",
	"x-forwarded-preferred-username", "x-forwarded-access-token", "x-forwarded-login",
	"x-forwarded-name", "x-forwarded-authorization", "x-original-authorization",
	"x-user", "x-email", "x-remote", "x-webauth", "auth-user",
	"x-id-token", "x-access-token", "x-credential-identifier", "x-forwarded-client-cert",
	"x-client-dn", "x-userinfo", "x-jwt-payload", "x-username", "x-groups", "x-roles",
}

// identityFamilies are removed by prefix: Remote-Groups, Remote-Email,
// Remote-Name, X-Webauth-Email, X-Auth-Request-User, X-Remote-Group,
// X-Forwarded-User-Id, and the identity headers of other proxies an app
// may have been moved from: Kong (X-Authenticated-*, X-Consumer-*), AWS
// ALB (X-Amzn-Oidc-*), Azure App Service (X-Ms-Client-Principal*,
// X-Ms-Token-*), Google IAP (X-Goog-Authenticated-*, X-Goog-Iap-*),
// Cloudflare Access (Cf-Access-*), Apache mod_auth_openidc (Oidc-*, which
// CGI reads as OIDC_CLAIM_*), Pomerium, Vouch, Authentik, Tailscale, and
// TLS client-certificate identity (Ssl-Client-*, X-Forwarded-Client-Cert).
// The list cannot be complete: strip_header adds an app's own names.
var identityFamilies = []string{"remote-", "x-remote-", "x-webauth-", "x-auth-", "x-forwarded-user",
	"x-user-", "x-authenticated-", "x-consumer-", "x-amzn-oidc-", "x-ms-client-principal", "ms-client-principal",
	"x-ms-token-", "x-goog-authenticated-", "x-goog-iap-", "cf-access-", "oidc-", "ssl-client-", "x-ssl-client-",
	"x-pomerium-", "x-vouch-", "x-authentik-", "tailscale-user-"}

// preflightHeader reports whether a header is one a browser sends on a
// CORS preflight (Fetch §4.8), the only ones forwarded with it.
func preflightHeader(name string) bool {
	var buf [maxFoldedHeader]byte
	n, ok := foldHeader(&buf, name)
	if !ok {
		return false // no header a browser sends is that long
	}
	switch n := string(n); n {
	case "origin", "access-control-request-method", "access-control-request-headers",
		"access-control-request-private-network", "user-agent", "accept", "accept-language",
		"accept-encoding", "referer", "connection", "cache-control", "pragma", "priority":
		return true
	default:
		return strings.HasPrefix(n, "sec-fetch-") || strings.HasPrefix(n, "sec-ch-")
	}
}

// audienceAny is the explicit opt-out of the audience check.
const audienceAny = "any"

// Issuer is what the gate needs of the `oauth` app: the verifier of the
// tokens it issues, and how it is reached. The gate checks tokens in
// process, with the app's keys and revocations, and imports nothing of
// the authorization server but the token package.
type Issuer interface {
	// Verifier checks the app's access tokens; it opens the app's storage
	// on first use, and fails while that is unavailable.
	Verifier() (*tokens.Verifier, error)
	// GateSettings are the issuer identifier (for the protected resource
	// metadata) and whether TLS ends in a proxy in front of this server.
	GateSettings() (issuer string, behindTLSProxy bool)
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
	v, err := ctx.AppIfConfigured("oauth")
	p.sessionStorage = ctx.Storage()
	if errors.Is(err, caddy.ErrNotConfigured) && (len(p.TrustIssuers) > 0 || p.Login != nil && p.Login.Issuer != "") {
		return p.provisionWith(nil) // external tokens or an external provider only
	}
	if errors.Is(err, caddy.ErrNotConfigured) {
		return errors.New("oauth_protect needs the `oauth` global option (with at least an issuer), or a trust_issuer")
	}
	if err != nil {
		return err
	}
	iss, ok := v.(Issuer)
	if !ok {
		return fmt.Errorf("oauth_protect: the oauth app (%T) issues no tokens the gate can check", v)
	}
	return p.provisionWith(iss)
}

// provisionWith checks the configuration (Caddy provisions before it
// validates, so nothing here may assume a valid config) and builds the
// answers for the tokens of iss (nil: only trusted issuers' tokens).
func (p *Protect) provisionWith(iss Issuer) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.ClientCertHeader != nil {
		if err := p.ClientCertHeader.Provision(); err != nil {
			return fmt.Errorf("oauth_protect: %w", err)
		}
	}
	if p.logger == nil {
		p.logger = zap.NewNop()
	}
	p.failures = lograte.New(p.logger)
	p.issuer = iss
	var servers []string
	p.behindTLS = p.BehindTLSProxy
	if iss != nil {
		issuerURL, behindTLS := iss.GateSettings()
		p.behindTLS = p.behindTLS || behindTLS
		servers = append(servers, issuerURL)
	}
	servers = append(servers, p.trustedServers()...)
	if p.trustClient == nil {
		p.trustClient = newTrustClient()
	}
	if err := p.provisionTrusted(); err != nil {
		return err
	}
	p.strip = map[string]bool{}
	p.stripFamily = append([]string(nil), identityFamilies...)
	for _, h := range identityHeaders {
		p.strip[h] = true
	}
	// RFC 8705: the certificate comes from the TLS connection only; a
	// certificate header reaching the upstream could be taken for one.
	p.stripFamily = append(p.stripFamily, tokens.ClientCertHeaderPrefixes...)
	for _, fh := range p.ForwardHeaders {
		p.strip[normalizeHeader(fh.Header)] = true
	}
	for _, h := range p.StripHeaders {
		if prefix, ok := strings.CutSuffix(h, "*"); ok {
			p.stripFamily = append(p.stripFamily, normalizeHeader(prefix))
		} else {
			p.strip[normalizeHeader(h)] = true
		}
	}
	p.stripFamily = prefixFree(p.stripFamily)
	if p.BlockPreflight {
		p.logger.Warn("oauth_protect: block_preflight is deprecated and ignored: preflights need a token unless cors or forward_preflight is set; remove it")
	}
	p.anyAudience = p.Audience == audienceAny
	if p.anyAudience {
		p.logger.Warn("oauth_protect: audience any accepts access tokens minted for every API of this server; set audience to this API's identifier")
	}
	realm := p.Realm
	if realm == "" && !p.anyAudience {
		realm = p.Audience
	}
	if realm == "" {
		realm = "oauth"
	}
	p.realm = realm
	p.challenge = `Bearer realm="` + realm + `"`
	if err := p.provisionDPoP(iss); err != nil {
		return err
	}
	if u, _ := parseAudience(p.Audience); u != nil && (u.Scheme == "https" || u.Scheme == "http") {
		p.prmPath = "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.Path, "/")
		rm := `, resource_metadata="` + u.Scheme + "://" + u.Host + p.prmPath + `"`
		p.challenge += rm
		p.dpop.challenge = tokens.DPoPChallenge(realm, p.dpop.verifier.Algs(), rm)
		prm := map[string]any{
			"resource":                 p.Audience,
			"authorization_servers":    servers,
			"bearer_methods_supported": []string{"header"},
			// A certificate-bound token is always checked (RFC 8705 §3),
			// and can pass only where a certificate reaches the gate:
			// over TLS, or in a trusted proxy's header.
			"tls_client_certificate_bound_access_tokens": u.Scheme == "https" || p.ClientCertHeader != nil,
		}
		if len(p.Scopes) > 0 {
			prm["scopes_supported"] = p.Scopes
		}
		if p.dpopOffered() {
			prm["dpop_signing_alg_values_supported"] = p.dpop.verifier.Algs()
			prm["dpop_bound_access_tokens_required"] = p.RequireDPoP
		}
		var err error
		p.prm, err = json.Marshal(prm)
		if err != nil {
			return err
		}
	}
	if p.dpopOffered() && p.dpop.challenge == "" {
		p.dpop.challenge = tokens.DPoPChallenge(realm, p.dpop.verifier.Algs(), "")
	}
	if p.CORS != nil {
		p.corsHeaders = p.CORS.policy()
		p.corsOn = true
	}
	p.scopeList = strings.Join(p.Scopes, " ")
	return p.provisionLogin(iss, p.sessionStorage)
}

// parseAudience checks an audience: an absolute URI (RFC 3986 §4.3)
// without a fragment; an http(s) one needs a host. It returns nil, nil
// for "any".
func parseAudience(aud string) (*url.URL, error) {
	const how = "use this API's identifier, an absolute URI such as https://api.example.com or urn:example:billing, or `any`"
	switch {
	case aud == "":
		return nil, fmt.Errorf("oauth_protect: audience is required: %s", how)
	case aud == audienceAny:
		return nil, nil
	case !printableASCII(aud) || strings.ContainsAny(aud, "\"<>`^{|}"):
		return nil, fmt.Errorf("oauth_protect: audience %q must be a URI of printable ASCII without spaces, quotes or backslashes: %s", aud, how)
	}
	u, err := url.Parse(aud)
	if err != nil {
		return nil, fmt.Errorf("oauth_protect: audience %q is not a URI (%v): %s", aud, err, how)
	}
	switch {
	case u.Scheme == "":
		return nil, fmt.Errorf("oauth_protect: audience %q is not absolute: %s", aud, how)
	case u.Fragment != "" || strings.Contains(aud, "#"):
		return nil, fmt.Errorf("oauth_protect: audience %q must not have a fragment (RFC 8707 §2)", aud)
	case (u.Scheme == "https" || u.Scheme == "http") && (u.Host == "" || u.User != nil):
		return nil, fmt.Errorf("oauth_protect: audience %q needs a host and no user info: %s", aud, how)
	case u.Opaque == "" && u.Host == "" && strings.Trim(u.Path, "/") == "":
		return nil, fmt.Errorf("oauth_protect: audience %q names nothing after its scheme: %s", aud, how)
	}
	return u, nil
}

// printableASCII reports whether s is visible ASCII (%x21-7E) only.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// headerName reports whether s is an RFC 9110 field name (a token).
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// reservedHeaders are not the gate's to set: they frame the message,
// route it, or carry the client's credentials.
var reservedHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"te": true, "trailer": true, "upgrade": true, "host": true, "content-length": true,
	"authorization": true, "proxy-authorization": true, "cookie": true,
}

// Validate checks the configuration and says what to fix.
func (p *Protect) Validate() error {
	if !printableASCIIOrSpace(p.Realm) || strings.ContainsAny(p.Realm, "\"\\") {
		return fmt.Errorf("oauth_protect: realm %q must be printable ASCII without quotes or backslashes", p.Realm)
	}
	if _, err := parseAudience(p.Audience); err != nil {
		return err
	}
	for _, s := range p.Scopes {
		if s == "" || !printableASCII(s) || strings.ContainsAny(s, "\"\\") {
			return fmt.Errorf("oauth_protect: scope %q is not a valid scope token (RFC 6749 §3.3)", s)
		}
	}
	for _, fh := range p.ForwardHeaders {
		if !headerName(fh.Header) || fh.Claim == "" || !printableASCII(fh.Claim) {
			return fmt.Errorf("oauth_protect: forward_header needs a header name and a claim name (got %q %q)", fh.Header, fh.Claim)
		}
		if reservedHeaders[normalizeHeader(fh.Header)] {
			return fmt.Errorf("oauth_protect: forward_header cannot set %s: it is not an identity header", fh.Header)
		}
	}
	for _, h := range p.StripHeaders {
		name, _ := strings.CutSuffix(h, "*")
		if !headerName(name) || strings.Contains(name, "*") {
			return fmt.Errorf("oauth_protect: strip_header %q must be a header name, optionally ending in * for a family (X-App-*)", h)
		}
		if reservedHeaders[normalizeHeader(h)] {
			return fmt.Errorf("oauth_protect: strip_header cannot remove %s: the request needs it (Authorization is kept or removed by pass_authorization)", h)
		}
	}
	if err := validateDPoPOrigin(p.DPoPOrigin); err != nil {
		return err
	}
	if err := validateTrustIssuers(p.TrustIssuers, p.Audience); err != nil {
		return err
	}
	if err := p.validateLogin(); err != nil {
		return err
	}
	if p.CORS != nil {
		if p.ForwardPreflight {
			return fmt.Errorf("oauth_protect: cors and forward_preflight exclude each other: either the gate answers preflights (cors) or the upstream does (forward_preflight)")
		}
		if err := p.CORS.validate(); err != nil {
			return err
		}
	}
	return nil
}

// printableASCIIOrSpace is printableASCII that also allows spaces.
func printableASCIIOrSpace(s string) bool {
	return printableASCII(strings.ReplaceAll(s, " ", "x"))
}

// normalizeHeader folds case and treats '_' as '-', because CGI-style
// upstreams read X_Remote_User and X-Remote-User as the same variable.
func normalizeHeader(h string) string {
	return strings.ReplaceAll(strings.ToLower(h), "_", "-")
}

// maxFoldedHeader is the longest header name foldHeader folds into its
// caller's buffer; a longer one is folded by normalizeHeader.
const maxFoldedHeader = 128

// foldHeader is normalizeHeader into buf, so that the gate can look every
// request header up without allocating (a map index with string(b) and a
// comparison with string(b) do not copy). ok is false when name is longer
// than buf.
func foldHeader(buf *[maxFoldedHeader]byte, name string) (folded []byte, ok bool) {
	if len(name) > len(buf) {
		return nil, false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		buf[i] = c
	}
	return buf[:len(name)], true
}

// stripIdentityHeaders removes what an upstream could take for identity
// the gate vouches for, and cleans Connection so that reverse_proxy,
// which deletes every header Connection names (RFC 9110 §7.6.1), cannot
// be made to delete the headers the gate or a later request_header sets.
func (p *Protect) stripIdentityHeaders(r *http.Request) {
	var buf [maxFoldedHeader]byte
	for name := range r.Header {
		if p.stripped(&buf, name) {
			delete(r.Header, name)
		}
	}
	if conn, ok := r.Header["Connection"]; ok {
		var keep []string
		for _, v := range conn {
			for opt := range strings.SplitSeq(v, ",") {
				opt = strings.TrimSpace(opt)
				switch strings.ToLower(opt) {
				case "close", "keep-alive", "upgrade", "te":
					keep = append(keep, opt)
				}
			}
		}
		if len(keep) == 0 {
			delete(r.Header, "Connection")
		} else {
			r.Header["Connection"] = []string{strings.Join(keep, ", ")}
		}
	}
}

// stripped reports whether the header name is one the gate removes,
// without allocating for any name up to maxFoldedHeader bytes (this runs
// for every header of every request).
func (p *Protect) stripped(buf *[maxFoldedHeader]byte, name string) bool {
	n, ok := foldHeader(buf, name)
	if !ok {
		n := normalizeHeader(name)
		return p.strip[n] || p.inFamily([]byte(n))
	}
	return p.strip[string(n)] || p.inFamily(n)
}

// inFamily reports whether the folded name n starts with a family
// prefix. The prefixes are sorted and none is a prefix of another, so
// the only one that can be a prefix of n is the greatest one not above
// n (every string between a prefix of n and n starts with that prefix):
// a binary search and one comparison instead of one per family, for
// every header of every request. Comparing with string(n) does not copy.
func (p *Protect) inFamily(n []byte) bool {
	fams := p.stripFamily
	lo, hi := 0, len(fams)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if fams[mid] <= string(n) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return false
	}
	f := fams[lo-1]
	return len(n) >= len(f) && string(n[:len(f)]) == f
}

// prefixFree sorts prefixes and drops those that a shorter one already
// covers (x-app-user- when x-app- is there), as inFamily needs.
func prefixFree(prefixes []string) []string {
	sorted := slices.Clone(prefixes)
	slices.Sort(sorted)
	var out []string
	for _, f := range sorted {
		// After sorting, a prefix comes before everything it covers, and
		// everything between them is covered too, so the last kept one
		// is the only one to check.
		if len(out) > 0 && strings.HasPrefix(f, out[len(out)-1]) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// maxFormBody bounds the form bodies the gate reads to look for a
// second token.
const maxFormBody = 1 << 20

// unavailable answers 503 with Retry-After when what the check needs
// (the oauth app's storage, a trusted issuer) failed: the token may be
// good, so it is neither refused nor let through. The cause goes to the
// rate-limited log.
func (p *Protect) unavailable(w http.ResponseWriter, r *http.Request, what string, err error) error {
	countGate(gateUnavailable)
	p.failures.Error(what+"\x00"+err.Error(), what, zap.Error(err), zap.String("request_id", caddyreq.RequestID(r)))
	w.Header().Set("Retry-After", retryAfterUnavailable)
	w.WriteHeader(http.StatusServiceUnavailable)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (p *Protect) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if p.ClientCertHeader != nil {
		r = p.ClientCertHeader.Take(r)
	}
	p.stripIdentityHeaders(r)
	if p.prmPath != "" && r.URL.Path == p.prmPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.prm)))
		_, err := w.Write(p.prm)
		return err
	}
	// A browser sends one Origin: a request with two is no CORS request
	// (no allowances, no preflight answered or forwarded).
	if origin := r.Header.Get("Origin"); origin != "" && len(r.Header["Origin"]) == 1 {
		if p.corsOn {
			if isPreflight(r) {
				countGate(gatePreflight)
				p.corsHeaders.preflight(w, r, origin)
				return nil
			}
			w = p.corsHeaders.wrap(w, origin)
		} else if p.ForwardPreflight && isPreflight(r) && r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			// A preflight is forwarded with what a browser sends on one
			// and nothing else: no credentials, no query, no header a
			// framework would act on (method overrides, X-Original-URL).
			for name := range r.Header {
				if !preflightHeader(name) {
					delete(r.Header, name)
				}
			}
			r.URL.RawQuery, r.URL.ForceQuery = "", false
			countGate(gatePreflight)
			return next.ServeHTTP(w, r)
		}
	}
	// Declared trailers arrive after the gate has looked at the headers,
	// and some upstreams merge them into the headers: an identity header
	// or a token could come that way.
	if _, ok := r.Header["Trailer"]; ok || len(r.Trailer) > 0 {
		countGate(gateBadRequest)
		return p.denyRequest(w, r, http.StatusBadRequest, "request trailers are not accepted here")
	}
	sessionValue, loginCookies := p.takeCookies(r)
	if p.login != nil {
		if handled, err := p.serveBrowser(w, r, next, sessionValue, loginCookies); handled {
			return err
		}
	}
	token, dpopScheme, status, code := tokens.ResourceToken(r)
	if status == 0 || status == http.StatusUnauthorized {
		if st, desc := p.checkFormBody(r); st != 0 {
			countGate(gateBadRequest)
			return p.denyRequest(w, r, st, desc)
		}
	}
	if status != 0 {
		if status == http.StatusUnauthorized {
			countGate(gateNoToken)
		} else {
			countGate(gateBadRequest)
		}
		return p.deny(w, r, status, code, "")
	}
	// The authorization server's TLS rule (grants.TransportOK), with
	// Caddy's client IP, which honours the server's trusted_proxies.
	if r.TLS == nil && !p.behindTLS && !tokens.IsLoopbackFrom(r, caddyreq.ClientIP(r)) {
		countGate(gateBadRequest)
		return p.denyRequest(w, r, http.StatusBadRequest, "access tokens are accepted over HTTPS only")
	}
	// A trusted issuer's token (picked by its unverified iss, then
	// verified in full), else the oauth app's.
	claims, external, err := p.externalClaims(token, time.Now())
	if !external && p.issuer == nil {
		err = &tokens.TokenError{Reason: "not a token of a trusted issuer"}
	} else if !external {
		verifier, verr := p.issuer.Verifier()
		if verr != nil {
			return p.unavailable(w, r, "oauth storage unavailable", verr)
		}
		claims, err = verifier.Verify(token, time.Now())
		if err == nil && !p.anyAudience && !claims.Audience.Contains(p.Audience) {
			err = &tokens.TokenError{Reason: "audience mismatch"}
		}
		if err != nil && localMiss(token, err) {
			claims, err = p.foreignOpaque(token, time.Now())
		}
	}
	if errors.Is(err, tokens.ErrUnavailable) {
		// An opaque token whose lookup failed may be good.
		return p.unavailable(w, r, "oauth storage unavailable", err)
	}
	if errors.Is(err, errIssuerUnavailable) {
		return p.unavailable(w, r, "trusted issuer unavailable", err)
	}
	if err != nil {
		if ce := p.logger.Check(zapcore.DebugLevel, "access token refused"); ce != nil {
			ce.Write(zap.Error(err))
		}
		countGate(gateInvalid)
		return p.deny(w, r, http.StatusUnauthorized, "invalid_token", "")
	}
	// Per request, after the cache: a certificate-bound token only over
	// a connection with that certificate (RFC 8705 §3).
	if !claims.CertBound(r) {
		countGate(gateInvalid)
		return p.deny(w, r, http.StatusUnauthorized, "invalid_token", "")
	}
	// After the token (which the verifier may have cached): the proof is
	// this request's and is checked every time (dpop.go).
	if err := p.checkDPoP(r, token, claims, dpopScheme); err != nil {
		countGate(gateInvalid)
		if errors.Is(err, errDPoPUnchecked) {
			if ce := p.logger.Check(zapcore.DebugLevel, "DPoP refused"); ce != nil {
				ce.Write(zap.Error(err))
			}
			return p.deny(w, r, http.StatusUnauthorized, "invalid_token", "")
		}
		return p.denyDPoP(w, r, err)
	}
	for _, s := range p.Scopes {
		if !hasScope(claims.Scope, s) {
			countGate(gateScope)
			return p.deny(w, r, http.StatusForbidden, "insufficient_scope", p.scopeList)
		}
	}
	if !p.allowed(claims) {
		countGate(gateForbidden)
		return p.denyForbidden(w, r)
	}
	countGate(gateAllowed)
	p.setIdentity(r, claims)
	if !p.PassAuthorization {
		r.Header.Del("Authorization")
		delete(r.Header, "Dpop") // the proof goes with the token
	}
	return p.serveNext(w, r, next, claims)
}

// hasScope reports whether the space-separated scope claim has the scope
// s, as slices.Contains(claims.Scopes(), s) but without making the slice
// on every request.
func hasScope(claim, s string) bool {
	for claim != "" {
		var tok string
		tok, claim, _ = strings.Cut(claim, " ")
		if tok == s {
			return true
		}
	}
	return false
}

// isPreflight reports whether r is a CORS preflight (Fetch §3.2.2).
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// checkFormBody refuses a form-encoded body with an access_token
// parameter (RFC 6750 §2.2): beside a header token it is a second method
// (§2: 400 invalid_request), alone it is a method the gate does not
// accept, and either way the token must not reach the upstream. The body
// is read (bounded) and put back for the next handler.
func (p *Protect) checkFormBody(r *http.Request) (int, string) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return 0, ""
	}
	cts := r.Header["Content-Type"]
	if len(cts) == 0 {
		return 0, ""
	}
	if len(cts) > 1 {
		return http.StatusBadRequest, "send one Content-Type header"
	}
	// The media type as lenient parsers (PHP, Rack, Werkzeug) read it: up
	// to the first ';', ',' or space, whatever follows.
	mt, params, _ := strings.Cut(cts[0], ";")
	if i := strings.IndexAny(strings.TrimSpace(mt), ", \t"); i >= 0 {
		mt = strings.TrimSpace(mt)[:i]
	}
	mt = strings.ToLower(strings.TrimSpace(mt))
	multipartForm := mt == "multipart/form-data"
	if mt != "application/x-www-form-urlencoded" && !multipartForm {
		return 0, ""
	}
	// A form in another charset (UTF-16, EBCDIC) is decoded by some
	// frameworks but would hide its names from the check below.
	if cs := formCharset(params); cs != "" && cs != "utf-8" && cs != "us-ascii" && cs != "iso-8859-1" {
		return http.StatusBadRequest, "form bodies are accepted in UTF-8 only"
	}
	for _, ce := range r.Header["Content-Encoding"] {
		for enc := range strings.SplitSeq(ce, ",") {
			if enc = strings.TrimSpace(enc); enc != "" && !strings.EqualFold(enc, "identity") {
				return http.StatusBadRequest, "compressed form bodies are not accepted here"
			}
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBody+1))
	if err != nil {
		return http.StatusBadRequest, "the request body could not be read"
	}
	if len(body) > maxFormBody {
		return http.StatusRequestEntityTooLarge, "form bodies over 1 MiB are not accepted here"
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	found := false
	if multipartForm {
		found, err = multipartHasToken(cts[0], body)
		if err != nil {
			return http.StatusBadRequest, "the multipart form body could not be read"
		}
	} else {
		found = tokens.HasTokenParam(string(body))
	}
	if found {
		return http.StatusBadRequest, "send the access token once, in the Authorization header as Bearer"
	}
	return 0, ""
}

// formCharset is the lower-cased charset parameter of a Content-Type's
// parameters, or "".
func formCharset(params string) string {
	for param := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(param, "=")
		if strings.EqualFold(strings.TrimSpace(k), "charset") {
			return strings.ToLower(strings.Trim(strings.TrimSpace(v), `"`))
		}
	}
	return ""
}

// multipartHasToken reports whether a multipart/form-data body has a
// field that applications read as access_token.
func multipartHasToken(contentType string, body []byte) (bool, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return false, errors.New("no boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if cd := part.Header.Get("Content-Disposition"); cd != "" {
			// A disposition Go cannot parse (a repeated name parameter,
			// say) has no FormName here, but another parser may read a
			// name from it: the gate cannot tell what the upstream sees.
			if _, _, err := mime.ParseMediaType(cd); err != nil {
				return false, fmt.Errorf("part disposition: %w", err)
			}
		}
		if tokens.IsTokenParamName(part.FormName()) {
			return true, nil
		}
	}
}

// setIdentity publishes the verified claims as placeholders and headers.
// The placeholders are answered from the claims when something reads
// them, rather than stored for every request (boxing each value) when
// most requests read none.
func (p *Protect) setIdentity(r *http.Request, c *tokens.AccessClaims) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if v, ok := repl.Get(identityKey); ok {
		// A gate earlier in this request's chain published its claims:
		// this gate's replace them, as a later value does.
		v.(*gateIdentity).c = c
	} else {
		id := &gateIdentity{c: c}
		repl.Map(id.placeholder)
	}
	// http.auth.user.id is Caddy's: an earlier handler (basic_auth, vars)
	// may have set it as a static value, which would be read before the
	// gate's. The gate's user replaces it; a later handler's Set still
	// replaces the gate's.
	repl.Delete("http.auth.user.id")
	for _, fh := range p.ForwardHeaders {
		if v, ok := claimString(c, fh.Claim); ok {
			r.Header.Set(fh.Header, v)
		}
	}
}

// identityKey is the replacer key under which the gate finds the
// identity an earlier gate of the same request published. No placeholder
// can name it: a placeholder ends at the first '}'.
const identityKey = "oauth}identity"

// gateIdentity answers the gate's placeholders for one request:
// {oauth.sub}, {oauth.client_id}, {oauth.scope}, {oauth.claim.<name>}
// and Caddy's {http.auth.user.id} (the access log's user).
type gateIdentity struct{ c *tokens.AccessClaims }

func (id *gateIdentity) placeholder(key string) (any, bool) {
	switch key {
	case "oauth.sub", "http.auth.user.id":
		return id.c.Subject, true
	case "oauth.client_id":
		return id.c.ClientID, true
	case "oauth.scope":
		return id.c.Scope, true
	case identityKey:
		return id, true
	}
	name, ok := strings.CutPrefix(key, "oauth.claim.")
	if !ok {
		return nil, false
	}
	return claimString(id.c, name)
}

// claimString renders a claim as a header-safe string.
func claimString(c *tokens.AccessClaims, name string) (string, bool) {
	// The string claims every token has, without boxing them as
	// AccessClaims.Claim does: forward_header X-Forwarded-User sub runs
	// on every request.
	if known, ok := c.DecodedString(name); ok {
		return headerSafe(known)
	}
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
	return headerSafe(s)
}

// headerSafe passes s unless it could split or end a header line.
func headerSafe(s string) (string, bool) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", false
	}
	return s, true
}

// deny answers per RFC 6750 §3. Nothing from the request is echoed.
func (p *Protect) deny(w http.ResponseWriter, r *http.Request, status int, code, scope string) error {
	drainBody(r)
	bearer, dpop := p.challenge, ""
	if p.dpop != nil {
		dpop = p.dpop.challenge
	}
	if status == http.StatusUnauthorized {
		bearer, dpop = withScope(bearer, p.scopeList), withScope(dpop, p.scopeList)
	}
	switch {
	case p.answersInDPoP(r):
		// The answer uses the scheme the token came with (RFC 9449 §7.1).
		tokens.WriteBearerError(w, dpop, status, code, scope)
	case p.dpopOffered() && status == http.StatusUnauthorized:
		// Both schemes are acceptable (RFC 9449 §7.1).
		tokens.WriteBearerErrorAlso(w, bearer, dpop, status, code, scope)
	default:
		tokens.WriteBearerError(w, bearer, status, code, scope)
	}
	return nil
}

// denyRequest answers invalid_request with a description of what to fix.
func (p *Protect) denyRequest(w http.ResponseWriter, r *http.Request, status int, desc string) error {
	drainBody(r)
	tokens.WriteBearerRequestError(w, p.challenge, status, desc)
	return nil
}

// drainBody reads a little of a refused request's body, so that a client
// that sent Connection: close gets the answer, not a reset.
func drainBody(r *http.Request) {
	if r != nil && r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Protect)(nil)
	_ caddy.Validator             = (*Protect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Protect)(nil)
)

// retryAfterUnavailable is the Retry-After, in seconds, of a 503 while
// the oauth app's storage is unavailable: the authorization server's
// (grants.RetryAfterUnavailable).
const retryAfterUnavailable = "5"
