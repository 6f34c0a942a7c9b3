package gate

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// DPoP at the gate (RFC 9449 §7): a DPoP-bound token (cnf.jkt) comes as
// `Authorization: DPoP <token>` with one fresh proof for this request,
// signed by the key the token is bound to; never as Bearer. The proof's
// htu is checked against the resource's configured URL (dpopGate.origin
// plus the path the client sent), never one built from Host or
// X-Forwarded-*.

// DPoPIssuer is what the gate reads of the oauth app's DPoP settings,
// when the app offers them: the proof algorithms it accepts and its
// server nonces (nil when dpop_nonce is off). The nonces are the token
// endpoint's, stateless, so one nonce serves both.
type DPoPIssuer interface {
	DPoPSettings() (algs []string, nonces *tokens.DPoPNonces)
}

// dpopGate is one gate's DPoP state.
type dpopGate struct {
	verifier *tokens.DPoPVerifier
	// origin is scheme://host[:port] of the resource as configured
	// (dpop_origin, else the http(s) audience); "" when the gate has no
	// URL, and then no DPoP-bound token passes.
	origin    string
	challenge string // `DPoP realm="…", algs="…"[, resource_metadata="…"]`
}

// provisionDPoP builds the verifier (the app's algorithms and nonces, or
// the defaults without nonces for a gate of trusted issuers only) and
// the origin proofs are checked against.
func (p *Protect) provisionDPoP(iss Issuer) error {
	var o tokens.DPoPOptions
	if di, ok := iss.(DPoPIssuer); ok {
		o.Algs, o.Nonces = di.DPoPSettings()
	}
	v, err := tokens.NewDPoPVerifier(o)
	if err != nil {
		return fmt.Errorf("oauth_protect: %w", err)
	}
	p.dpop = &dpopGate{verifier: v}
	src := p.DPoPOrigin
	if src == "" {
		if u, _ := parseAudience(p.Audience); u != nil && (u.Scheme == "https" || u.Scheme == "http") {
			src = p.Audience
		}
	}
	if src != "" {
		u, _ := url.Parse(src)
		p.dpop.origin = u.Scheme + "://" + u.Host
	}
	if p.RequireDPoP && p.dpop.origin == "" {
		return errors.New("oauth_protect: require_dpop needs the URL clients reach this resource at: an https audience, or dpop_origin https://host")
	}
	return nil
}

// validateDPoPOrigin checks dpop_origin: an absolute http(s) URL with a
// host and nothing after it but an optional "/".
func validateDPoPOrigin(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("oauth_protect: dpop_origin %q must be the scheme and host clients reach this resource at, such as https://api.example.com", s)
	}
	return nil
}

// dpopOffered reports whether the gate accepts DPoP-bound tokens (it has
// a URL to check proofs against).
func (p *Protect) dpopOffered() bool { return p.dpop != nil && p.dpop.origin != "" }

// answersInDPoP reports whether a refusal of r uses the DPoP scheme: the
// gate takes DPoP-bound tokens only, or r's token came with that scheme
// (RFC 9449 §7.1).
func (p *Protect) answersInDPoP(r *http.Request) bool {
	return p.RequireDPoP || p.dpopOffered() && sentDPoP(r)
}

// sentDPoP reports whether r's token came with the DPoP scheme.
func sentDPoP(r *http.Request) bool {
	authz := r.Header["Authorization"]
	return len(authz) == 1 && len(authz[0]) >= 5 && strings.EqualFold(authz[0][:5], "DPoP ")
}

// dpopURL is the htu a proof for r must name: the configured origin and
// the path the client sent (Caddy's original request, before any
// handle_path or rewrite changed r.URL).
func (p *Protect) dpopURL(r *http.Request) string {
	u := r.URL
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		u = or.URL
	}
	return p.dpop.origin + u.EscapedPath()
}

// errDPoPUnchecked refuses a DPoP-bound token, or the DPoP scheme, at a
// gate with no URL to check proofs against (a urn: audience without
// dpop_origin): it offers no DPoP, so the answer is a plain Bearer
// invalid_token, with no DPoP challenge or nonce.
var errDPoPUnchecked = errors.New("this resource has no configured URL to check DPoP proofs against: set dpop_origin")

// checkDPoP applies RFC 9449 §7 to a verified token, on every request
// (a cached token still needs this request's proof), and require_dpop.
func (p *Protect) checkDPoP(r *http.Request, token string, claims *tokens.AccessClaims, dpopScheme bool) error {
	jkt := ""
	if claims.Cnf != nil {
		jkt = claims.Cnf.JKT
	}
	if jkt == "" && !dpopScheme && p.RequireDPoP {
		return &tokens.DPoPError{Code: tokens.ErrDPoPTokenScheme, Reason: "this resource takes DPoP-bound access tokens only"}
	}
	if (jkt != "" || dpopScheme) && !p.dpopOffered() {
		return errDPoPUnchecked
	}
	if !dpopScheme && jkt == "" {
		return nil
	}
	return p.dpop.verifier.CheckResource(r.Header, tokens.DPoPCheck{Method: r.Method, URL: p.dpopURL(r), AccessToken: token}, jkt, dpopScheme)
}

// denyDPoP answers a DPoP refusal: the DPoP challenge with the error,
// the Bearer one beside it unless require_dpop, and a fresh nonce when
// nonces are on.
func (p *Protect) denyDPoP(w http.ResponseWriter, r *http.Request, err error) error {
	drainBody(r)
	if ce := p.logger.Check(zapcore.DebugLevel, "DPoP refused"); ce != nil {
		ce.Write(zap.Error(err))
	}
	bearer := p.challenge
	if p.RequireDPoP {
		bearer = ""
	}
	nonce := ""
	if n := p.dpop.verifier.Nonces(); n != nil {
		nonce = n.Current(time.Now())
	}
	dpop := p.dpop.challenge
	if dpop == "" {
		dpop = `DPoP realm="` + p.realm + `"`
	}
	tokens.WriteDPoPError(w, bearer, dpop, err, nonce)
	return nil
}
