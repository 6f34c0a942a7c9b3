package gate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/cfargs"
)

// TrustIssuer makes the gate accept access tokens of an external
// authorization server (Keycloak, Entra ID, Okta, Auth0, another
// oauthgate): JWTs checked against the issuer's published keys, and
// optionally opaque tokens checked by RFC 7662 introspection. Accepted
// tokens pass the same scope rules, forward headers, placeholders and
// RFC 6750 answers as this server's own.
type TrustIssuer struct {
	// Issuer is the issuer identifier, exactly as the tokens' iss claim
	// and the issuer's discovery document carry it: an https URL (plain
	// http only for a loopback host: localhost, 127.0.0.1 or ::1, for
	// tests). Required.
	Issuer string `json:"issuer"`

	// Audience is the value the token's aud claim must contain: any
	// printable string without spaces or quotes, as the issuer writes it
	// (a URI, or Entra ID v2's client id GUID). Default: the gate's
	// audience (which must then not be `any`).
	Audience string `json:"audience,omitempty"`

	// Algorithms are the JWS algorithms accepted, from RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA; a token
	// signed with another is refused whatever its header says. Default:
	// RS256.
	Algorithms []string `json:"algs,omitempty"`

	// JWKSURI is where the issuer's signing keys are published. Default:
	// the jwks_uri of the issuer's discovery document.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// IntrospectionClientID and IntrospectionClientSecret, when set, make
	// the gate check tokens that are not JWTs at the issuer's RFC 7662
	// introspection endpoint (from discovery), authenticated with HTTP
	// Basic (client_secret_basic). Both may use {env.*} placeholders.
	// At most one trust_issuer of a gate may have them: every token
	// presented to the gate that is not a JWT is sent to that issuer.
	// Default: none; opaque tokens are then refused.
	IntrospectionClientID     string `json:"introspection_client_id,omitempty"`
	IntrospectionClientSecret string `json:"introspection_client_secret,omitempty"`

	// IntrospectionCacheTTL is the longest an introspection answer is
	// reused: an active token for this long or until its exp, whichever
	// is sooner, an inactive one for at most 10s. At most 5m. Default:
	// 60s.
	IntrospectionCacheTTL caddy.Duration `json:"introspection_cache_ttl,omitempty"`

	// Leeway tolerates clock skew between the issuer and this server on
	// exp, nbf and iat. At most 5m. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
}

// Defaults and bounds of a TrustIssuer.
const (
	defaultTrustLeeway   = 30 * time.Second
	maxTrustLeeway       = 5 * time.Minute
	defaultIntrospectTTL = 60 * time.Second
	maxIntrospectTTL     = 5 * time.Minute
)

// trustAlgs are the algorithms trust_issuer may pin: asymmetric only.
// HS* would let anyone holding the published key mint tokens, and none
// has no signature at all.
var trustAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// validate checks one trust_issuer and says what to fix; gateAud is the
// gate's audience.
func (ti *TrustIssuer) validate(gateAud string) error {
	where := fmt.Sprintf("oauth_protect: trust_issuer %q", ti.Issuer)
	if ti.Issuer == "" {
		return errors.New("oauth_protect: trust_issuer needs the issuer identifier: trust_issuer https://login.example.com")
	}
	if err := checkRemoteURL(ti.Issuer, false); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	if ti.JWKSURI != "" {
		if err := checkRemoteURL(ti.JWKSURI, true); err != nil {
			return fmt.Errorf("%s: jwks_uri: %v", where, err)
		}
	}
	aud := ti.Audience
	if aud == "" {
		aud = gateAud
	}
	if aud == audienceAny {
		return fmt.Errorf("%s: needs an audience: the gate's is `any`, and a foreign issuer's tokens for other APIs must not pass; set audience to the aud value the issuer puts in tokens for this API", where)
	}
	if ti.Audience != "" && !audienceValue(ti.Audience) {
		return fmt.Errorf("%s: audience %q must be the aud value the issuer puts in tokens for this API, printable, without spaces or quotes (such as api://legacy, https://api.example.com or Entra ID's client id 6f1e0c1a-…)", where, ti.Audience)
	}
	for _, a := range ti.Algorithms {
		if !slices.Contains(trustAlgs, a) {
			return fmt.Errorf("%s: algorithm %q is not accepted: use asymmetric ones only (%s); none and HS* never are", where, a, strings.Join(trustAlgs, " "))
		}
	}
	if (ti.IntrospectionClientID == "") != (ti.IntrospectionClientSecret == "") {
		return fmt.Errorf("%s: introspection needs both a client id and a secret: introspect <client_id> <secret>", where)
	}
	if strings.ContainsAny(ti.IntrospectionClientID, "\r\n\x00") || strings.ContainsAny(ti.IntrospectionClientSecret, "\r\n\x00") {
		return fmt.Errorf("%s: the introspection client id and secret must be one line each", where)
	}
	if ti.Leeway < 0 || time.Duration(ti.Leeway) > maxTrustLeeway {
		return fmt.Errorf("%s: leeway %s must be between 0 and %s", where, time.Duration(ti.Leeway), maxTrustLeeway)
	}
	if ti.IntrospectionCacheTTL < 0 || time.Duration(ti.IntrospectionCacheTTL) > maxIntrospectTTL {
		return fmt.Errorf("%s: introspection_cache_ttl %s must be between 0 and %s", where, time.Duration(ti.IntrospectionCacheTTL), maxIntrospectTTL)
	}
	return nil
}

// validateTrustIssuers checks the trust_issuers of a gate with the
// audience gateAud. At most one may introspect: an opaque token carries
// no issuer, so every one presented is sent to the introspecting issuer,
// and with two, each would receive the other's live tokens.
func validateTrustIssuers(list []*TrustIssuer, gateAud string) error {
	introspecting := ""
	for _, ti := range list {
		if ti == nil {
			return errors.New("oauth_protect: trust_issuers has an empty entry")
		}
		if err := ti.validate(gateAud); err != nil {
			return err
		}
		if ti.IntrospectionClientID == "" {
			continue
		}
		if introspecting != "" {
			return fmt.Errorf("oauth_protect: trust_issuer %q and %q both have introspect, but at most one trust_issuer may introspect: an opaque token does not say which issuer it is from, so every non-JWT token presented to the gate is sent to the introspecting issuer, and with two, each would receive the other's live tokens; keep introspect on one, and use JWT access tokens for the others", introspecting, ti.Issuer)
		}
		introspecting = ti.Issuer
	}
	return nil
}

// audienceValue accepts a trust_issuer audience: the issuer, not this
// server, decides its form (Entra ID v2 puts the API's client id GUID in
// aud), so any printable string without spaces or quotes is one.
func audienceValue(aud string) bool {
	for _, r := range aud {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == '\'' || r == '`' {
			return false
		}
	}
	return aud != ""
}

// checkRemoteURL accepts an https URL, or plain http to a loopback host
// (a provider in a test, or on this machine); an issuer has no query
// either (RFC 8414 §2). Nothing else may be fetched.
func checkRemoteURL(raw string, query bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && tokens.IsLoopbackHost(u.Hostname())):
		return fmt.Errorf("%q must be an https URL (plain http only for a loopback host: localhost, 127.0.0.1 or ::1)", raw)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("%q needs a host and no user info", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%q must not have a fragment", raw)
	case !query && (u.RawQuery != "" || u.ForceQuery):
		return fmt.Errorf("%q must not have a query (RFC 8414 §2)", raw)
	}
	return nil
}

// unmarshalTrustIssuer parses
//
//	trust_issuer <issuer> [{
//		audience <aud>
//		algs <alg...>
//		jwks_uri <url>
//		introspect <client_id> <secret>
//		introspection_cache_ttl <duration>
//		leeway <duration>
//	}]
func unmarshalTrustIssuer(d *caddyfile.Dispenser) (*TrustIssuer, error) {
	ti := new(TrustIssuer)
	if !d.NextArg() {
		return nil, d.Err("trust_issuer needs the issuer identifier: trust_issuer https://login.example.com")
	}
	ti.Issuer = d.Val()
	if d.NextArg() {
		return nil, d.Err("trust_issuer takes one issuer; repeat trust_issuer for another, and put options in a block")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "audience":
			err = cfargs.OneArg(d, &ti.Audience)
		case "algs", "alg":
			err = cfargs.ListArg(d, &ti.Algorithms)
			for _, alg := range ti.Algorithms {
				if err == nil && !slices.Contains(trustAlgs, alg) {
					err = d.Errf("trust_issuer: algorithm %q is not accepted: use asymmetric ones only (%s); none and HS* never are", alg, strings.Join(trustAlgs, " "))
				}
			}
		case "jwks_uri":
			err = cfargs.OneArg(d, &ti.JWKSURI)
		case "introspect":
			if !d.Args(&ti.IntrospectionClientID, &ti.IntrospectionClientSecret) || d.NextArg() {
				return nil, d.Err("introspect needs a client id and a secret: introspect gate {env.GATE_INTROSPECT_SECRET}")
			}
		case "introspection_cache_ttl":
			err = cfargs.DurationArg(d, &ti.IntrospectionCacheTTL)
		case "leeway":
			err = cfargs.DurationArg(d, &ti.Leeway)
		default:
			err = d.Errf("unknown option %q in oauth_protect trust_issuer", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return ti, nil
}

// errIssuerUnavailable wraps a failure to reach a trusted issuer
// (discovery, keys, introspection): the token may well be good, so the
// client is told 503 with Retry-After, not invalid_token.
var errIssuerUnavailable = errors.New("trusted issuer unavailable")

type unavailableError struct {
	issuer string
	err    error
}

func (e *unavailableError) Error() string {
	return "trusted issuer " + e.issuer + " unavailable: " + e.err.Error()
}
func (e *unavailableError) Unwrap() []error { return []error{errIssuerUnavailable, e.err} }

// trusted are the external issuers of one gate.
type trusted struct {
	byIssuer map[string]*external
	// introspect is the one issuer with introspection (nil: none); every
	// opaque token goes to it (see validateTrustIssuers).
	introspect *external
}

// external is one trusted issuer at run time.
type external struct {
	cfg      *TrustIssuer
	clientID string // introspection client, placeholders replaced
	secret   string
	audience string
	algs     []string
	leeway   time.Duration
	keys     *keySource
	cache    *introspectCache
}

// provisionTrusted builds the run-time state of the trust_issuers.
func (p *Protect) provisionTrusted() error {
	if len(p.TrustIssuers) == 0 {
		p.trusted = nil
		return nil
	}
	t := &trusted{byIssuer: map[string]*external{}}
	for _, ti := range p.TrustIssuers {
		if _, dup := t.byIssuer[ti.Issuer]; dup {
			return fmt.Errorf("oauth_protect: trust_issuer %q is given twice", ti.Issuer)
		}
		e := &external{cfg: ti, audience: ti.Audience, algs: ti.Algorithms, leeway: time.Duration(ti.Leeway)}
		if e.audience == "" {
			e.audience = p.Audience
		}
		if len(e.algs) == 0 {
			e.algs = []string{"RS256"}
		}
		if ti.Leeway == 0 {
			e.leeway = defaultTrustLeeway
		}
		e.keys = newKeySource(ti.Issuer, ti.JWKSURI, p.trustClient)
		// {env.*} in the id and secret, as in Caddy's own secrets.
		repl := caddy.NewReplacer()
		e.clientID = repl.ReplaceKnown(ti.IntrospectionClientID, "")
		e.secret = repl.ReplaceKnown(ti.IntrospectionClientSecret, "")
		if ti.IntrospectionClientID != "" {
			ttl := time.Duration(ti.IntrospectionCacheTTL)
			if ttl == 0 {
				ttl = defaultIntrospectTTL
			}
			e.cache = newIntrospectCache(ttl)
			if t.introspect != nil {
				return fmt.Errorf("oauth_protect: trust_issuer %q and %q both have introspect; at most one trust_issuer may introspect", t.introspect.cfg.Issuer, ti.Issuer)
			}
			t.introspect = e
		}
		t.byIssuer[ti.Issuer] = e
	}
	p.trusted = t
	return nil
}

// route picks the trusted issuer a compact JWS names in its unverified
// iss; only the choice of verifier rests on it, the verifier then checks
// everything. jwt is false for a token that is not a compact JWS.
func (t *trusted) route(token string) (e *external, jwt bool, msg *jws.Message) {
	m, err := jws.Parse([]byte(token), jws.WithCompact())
	if err != nil || len(m.Signatures()) != 1 {
		return nil, false, nil
	}
	var body struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(m.Payload(), &body) != nil {
		return nil, true, m
	}
	return t.byIssuer[body.Iss], true, m
}

// externalClaims checks a token against the trusted issuers. handled is
// false when the token is not theirs to judge (a JWT of another issuer,
// or an opaque token with no introspection configured): the caller
// tries its own verifier, if it has one.
func (p *Protect) externalClaims(token string, now time.Time) (c *tokens.AccessClaims, handled bool, err error) {
	if p.trusted == nil || len(token) > tokens.MaxTokenBytes {
		return nil, false, nil
	}
	if p.issuer != nil && strings.HasPrefix(token, tokens.OpaquePrefix) {
		return nil, false, nil // the app's first; foreignOpaque if it does not know it
	}
	e, isJWT, msg := p.trusted.route(token)
	if isJWT {
		if e == nil {
			return nil, false, nil
		}
		c, err := e.verifyJWT(msg, token, now)
		return c, true, err
	}
	if strings.Count(token, ".") == 2 || p.trusted.introspect == nil {
		return nil, false, nil // a malformed JWS, or no one to ask
	}
	c, err = p.trusted.introspect.introspect(p.trustClient, token, now)
	return c, true, err
}

// localMiss reports whether err is the oauth app's verifier not knowing
// the opaque token: it may then be another caddy-oauthgate's, which
// carries the same prefix. A token the app knows (expired, wrong
// audience) or could not look up stays the app's to refuse.
func localMiss(token string, err error) bool {
	var te *tokens.TokenError
	return strings.HasPrefix(token, tokens.OpaquePrefix) && errors.As(err, &te) && te.Unknown
}

// foreignOpaque checks an opaque token the oauth app does not know at
// the introspecting trusted issuer, if there is one.
func (p *Protect) foreignOpaque(token string, now time.Time) (*tokens.AccessClaims, error) {
	if p.trusted == nil || p.trusted.introspect == nil || len(token) > tokens.MaxTokenBytes {
		return nil, &tokens.TokenError{Reason: "unknown opaque token"}
	}
	return p.trusted.introspect.introspect(p.trustClient, token, now)
}

// verifyJWT checks a JWT access token of this issuer: the key chosen by
// kid from the issuer's own JWKS (never from a URL or key in the token),
// an algorithm from the pinned list that the key allows, the RFC 9068
// typ, and the claims.
func (e *external) verifyJWT(msg *jws.Message, token string, now time.Time) (*tokens.AccessClaims, error) {
	if hasCrit(token) {
		// RFC 7515 §4.1.11: a recipient that does not understand every
		// extension crit lists must refuse the JWS; the gate understands
		// none.
		return nil, &tokens.TokenError{Reason: "crit header: no JWS extension is understood"}
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	alg, _ := h.Algorithm()
	if !slices.Contains(e.algs, alg.String()) {
		return nil, &tokens.TokenError{Reason: "alg " + alg.String() + " is not pinned for this issuer"}
	}
	typ, _ := h.Type()
	if !acceptedTyp(typ) {
		return nil, &tokens.TokenError{Reason: "typ " + typ + " is not an access token's"}
	}
	kid, _ := h.KeyID()
	key, err := e.keys.lookup(kid, now)
	if err != nil {
		return nil, err
	}
	if ka, ok := key.Algorithm(); ok && ka.String() != alg.String() {
		return nil, &tokens.TokenError{Reason: "alg does not match the key's"}
	}
	if use, ok := key.KeyUsage(); ok && use != "sig" {
		return nil, &tokens.TokenError{Reason: "key is not a signing key"}
	}
	sa, ok := jwa.LookupSignatureAlgorithm(alg.String())
	if !ok {
		return nil, &tokens.TokenError{Reason: "unknown alg"}
	}
	payload, err := jws.Verify([]byte(token), jws.WithKey(sa, key))
	if err != nil {
		return nil, &tokens.TokenError{Reason: "signature does not verify"}
	}
	if reason := notAnAccessToken(payload); reason != "" {
		return nil, &tokens.TokenError{Reason: reason}
	}
	c, err := externalAccessClaims(payload)
	if err != nil {
		return nil, err
	}
	if c.Issuer != e.cfg.Issuer {
		return nil, &tokens.TokenError{Reason: "iss mismatch"}
	}
	if !c.Audience.Contains(e.audience) {
		return nil, &tokens.TokenError{Reason: "audience mismatch"}
	}
	if c.ExpiresAt <= 0 {
		return nil, &tokens.TokenError{Reason: "exp missing"}
	}
	if strings.TrimSpace(c.Subject) == "" {
		// RFC 9068 §2.2 requires sub; an upstream keyed on the user
		// would get an empty identity.
		return nil, &tokens.TokenError{Reason: "sub missing"}
	}
	return c, e.checkTimes(c, now)
}

// hasCrit reports whether the protected header of the compact JWS token
// has a crit member, whatever its value (an empty list is malformed,
// RFC 7515 §4.1.11). A header that is not strict base64url JSON counts
// as having one: what the gate cannot read, it must not accept.
func hasCrit(token string) bool {
	seg, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return true
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(raw, &h) != nil {
		return true
	}
	_, ok := h["crit"]
	return ok
}

// checkTimes applies exp, nbf and iat with the issuer's leeway.
func (e *external) checkTimes(c *tokens.AccessClaims, now time.Time) error {
	sec, lee := now.Unix(), int64(e.leeway/time.Second)
	switch {
	case c.ExpiresAt > 0 && sec-lee >= c.ExpiresAt:
		return &tokens.TokenError{Reason: "expired"}
	case c.NotBefore != 0 && sec+lee < c.NotBefore:
		return &tokens.TokenError{Reason: "not yet valid"}
	case c.IssuedAt > sec+lee:
		return &tokens.TokenError{Reason: "issued in the future"}
	}
	return nil
}

// acceptedTyp: RFC 9068 access tokens say at+jwt; many issuers say JWT
// or nothing. Any other typ is a different kind of JWT (an ID token, a
// logout token, a DPoP proof, a security event) that must not pass as
// an access token.
func acceptedTyp(typ string) bool {
	switch strings.ToLower(typ) {
	case "", "jwt", "at+jwt", "application/at+jwt":
		return true
	}
	return false
}

// notAnAccessToken says why a verified JWT is another kind of token the
// issuer signs with the same keys, or "" for none. Many issuers label
// their ID tokens typ JWT like their access tokens, and an ID token's
// aud is a client id, which may be the audience configured here, so
// the claims must tell: at_hash and c_hash exist only in ID tokens
// (OIDC Core §3.1.3.6, §3.3.2.11); Keycloak marks its tokens with a
// payload typ of Bearer, ID or Refresh; and a nonce with no scope at
// all is an ID token (access tokens that carry a nonce, as Keycloak's
// do, carry a scope too).
func notAnAccessToken(payload []byte) string {
	var m struct {
		AtHash json.RawMessage `json:"at_hash"`
		CHash  json.RawMessage `json:"c_hash"`
		Typ    json.RawMessage `json:"typ"`
		Nonce  json.RawMessage `json:"nonce"`
		Scope  json.RawMessage `json:"scope"`
		Scp    json.RawMessage `json:"scp"`
	}
	if json.Unmarshal(payload, &m) != nil {
		return "" // externalAccessClaims says what is wrong
	}
	var typ string
	_ = json.Unmarshal(m.Typ, &typ)
	switch {
	case m.AtHash != nil || m.CHash != nil:
		return "an ID token (at_hash or c_hash), not an access token"
	case strings.EqualFold(typ, "ID") || strings.EqualFold(typ, "Refresh"):
		return "typ claim " + typ + " is not an access token's"
	case m.Nonce != nil && m.Scope == nil && m.Scp == nil:
		return "an ID token (nonce and no scope), not an access token"
	}
	return ""
}

// lookupKey picks the key for kid from set. A token without kid is
// accepted only when the set has a single key: a key is never guessed.
func lookupKey(set jwk.Set, kid string) (jwk.Key, bool) {
	if kid == "" {
		if set.Len() != 1 {
			return nil, false
		}
		return set.Key(0)
	}
	return set.LookupKeyID(kid)
}

// externalAccessClaims turns a verified external payload into the
// claims the gate's rules read. Issuers differ in shape, so:
//   - scope is the `scope` claim, a space-separated string or an array
//     of strings, or when there is none the `scp` claim (Entra ID, Okta)
//     in either form; an array is joined with spaces;
//   - client_id is the `client_id` claim, or `azp` (Keycloak, Auth0) or
//     `appid` (Entra ID v1) when there is none;
//   - exp, iat and nbf may be non-integer NumericDates and are truncated
//     to whole seconds.
//
// Every other claim stays as the issuer sent it for {oauth.claim.*} and
// forward_header.
func externalAccessClaims(payload []byte) (*tokens.AccessClaims, error) {
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(payload))
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, &tokens.TokenError{Reason: "claims are not a JSON object"}
	}
	changed := false
	if _, ok := m["scope"]; ok {
		s, ok := spaceList(m["scope"])
		if !ok {
			return nil, &tokens.TokenError{Reason: "scope is neither a string nor an array of scope tokens"}
		}
		m["scope"], changed = s, true
	} else if scp, ok := m["scp"]; ok {
		s, ok := spaceList(scp)
		if !ok {
			return nil, &tokens.TokenError{Reason: "scp is neither a string nor an array of scope tokens"}
		}
		m["scope"], changed = s, true
	}
	if _, ok := m["client_id"]; !ok {
		for _, alt := range []string{"azp", "appid"} {
			if v, ok := m[alt]; ok {
				m["client_id"], changed = v, true
				break
			}
		}
	}
	for _, name := range []string{"exp", "iat", "nbf"} {
		raw, ok := m[name]
		if !ok {
			continue
		}
		var f float64
		if json.Unmarshal(raw, &f) != nil || f < 0 || f > math.MaxInt64/2 {
			return nil, &tokens.TokenError{Reason: name + " is not a NumericDate"}
		}
		if f != math.Trunc(f) || bytes.ContainsAny(raw, ".eE") {
			m[name], changed = json.RawMessage(fmt.Sprint(int64(f))), true
		}
	}
	if changed {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, &tokens.TokenError{Reason: "claims are malformed"}
		}
		payload = b
	}
	c, err := tokens.ParseAccessClaims(payload)
	if err != nil {
		return nil, &tokens.TokenError{Reason: "claims are malformed"}
	}
	return c, nil
}

// spaceList renders a string or an array of strings as one JSON string,
// space-separated. An array entry must be one scope token (RFC 6749
// §3.3): an empty one, or one with whitespace, which joining would turn
// into other scopes (["x read"] into x and read), refuses the token.
func spaceList(raw json.RawMessage) (json.RawMessage, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var list []string
		if json.Unmarshal(raw, &list) != nil {
			return nil, false
		}
		for _, v := range list {
			if v == "" || strings.IndexFunc(v, unicode.IsSpace) >= 0 {
				return nil, false
			}
		}
		s = strings.Join(list, " ")
	}
	b, _ := json.Marshal(s)
	return b, true
}

// trustedServers are the trusted issuers' identifiers, for the protected
// resource metadata's authorization_servers.
func (p *Protect) trustedServers() []string {
	var out []string
	for _, ti := range p.TrustIssuers {
		out = append(out, ti.Issuer)
	}
	return out
}
