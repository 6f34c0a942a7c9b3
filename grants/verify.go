package grants

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// MaxTokenBytes bounds a bearer token before any parsing is done.
const MaxTokenBytes = 8 << 10

// ErrInvalidToken is the one error a caller sees for any token that does
// not verify; the reason is kept for debug logs only.
var ErrInvalidToken = errors.New("invalid token")

// TokenError says why a token was refused. Its text is for debug logs;
// clients are told only invalid_token.
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return "invalid token: " + e.Reason }
func (e *TokenError) Unwrap() error { return ErrInvalidToken }

func reject(reason string) error { return &TokenError{Reason: reason} }

// Verifier checks access tokens this server issued, in memory: the key is
// chosen by kid from our own key ring and the algorithm is the key's,
// never the token's.
type Verifier struct {
	Issuer string
	// Leeway tolerates clock skew on nbf and iat, which another node of
	// the fleet may have set with a clock slightly ahead. It never extends
	// exp: the server applies no leeway to its own tokens' expiry (RFC
	// 7662 §4), so a token is refused from the second of its exp.
	Leeway      time.Duration
	keys        atomic.Pointer[KeyRing]
	revocations *Revocations
	cache       *tokenCache
	// opaque finds the claims of an opaque access token in storage; nil
	// until the engine starts.
	opaque func(token string) (*AccessClaims, error)
}

// NewVerifier makes a verifier for tokens of issuer.
func NewVerifier(issuer string, leeway time.Duration) *Verifier {
	return &Verifier{Issuer: issuer, Leeway: leeway, cache: newTokenCache()}
}

// Uncached returns a verifier with v's issuer, leeway, keys and
// revocations that remembers nothing, so every call checks a signature:
// what a token never seen before costs (bench/micro measures it).
func (v *Verifier) Uncached() *Verifier {
	u := &Verifier{Issuer: v.Issuer, Leeway: v.Leeway, revocations: v.revocations, opaque: v.opaque}
	u.keys.Store(v.keys.Load())
	return u
}

// SetKeys replaces the key ring used for verification. When a key that
// verified before is gone, cached tokens are verified again; a periodic
// reload that changes nothing (or only adds a key) keeps the cache.
func (v *Verifier) SetKeys(kr *KeyRing) {
	old := v.keys.Swap(kr)
	if old == nil {
		return
	}
	for kid := range old.byID {
		if _, ok := kr.Lookup(kid); !ok {
			v.cache.clear()
			return
		}
	}
}

// header is the part of a JWS protected header the verifier looks at.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks the token and returns its claims, which the caller must
// not modify. Audience and scope are policy, checked by the caller. A
// token that verified before is taken from the cache, but its expiry and
// revocation are checked on every call.
func (v *Verifier) Verify(token string, now time.Time) (*AccessClaims, error) {
	if len(token) > MaxTokenBytes {
		return nil, reject("token too large")
	}
	if strings.HasPrefix(token, OpaquePrefix) {
		if v.opaque == nil {
			return nil, reject("unknown opaque token")
		}
		c, err := v.opaque(token)
		if err != nil {
			return nil, err
		}
		return c, v.checkClaims(c, now)
	}
	if c := v.cache.get(token); c != nil {
		if err := v.checkLive(c, now); err != nil {
			v.cache.remove(token)
			return nil, err
		}
		return c, nil
	}
	c, err := v.verify(token, now)
	if err != nil {
		return nil, err
	}
	v.cache.put(token, c, now.Unix())
	return c, nil
}

// verify is the full check: signature, header and claims.
func (v *Verifier) verify(token string, now time.Time) (*AccessClaims, error) {
	dot := strings.IndexByte(token, '.')
	if dot <= 0 {
		return nil, reject("not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(token[:dot])
	if err != nil {
		return nil, reject("header is not base64url")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, reject("header is not JSON")
	}
	if h.Typ != "at+jwt" && h.Typ != "application/at+jwt" {
		return nil, reject("typ is not at+jwt")
	}
	if h.Crit != nil {
		return nil, reject("crit header present")
	}
	kr := v.keys.Load()
	if kr == nil {
		return nil, reject("no keys loaded")
	}
	key, ok := kr.Lookup(h.Kid)
	if !ok {
		return nil, reject("unknown kid")
	}
	if h.Alg != key.Alg.String() {
		return nil, reject("alg does not match the key")
	}
	payload, err := jws.VerifyCompactFast(key.public, []byte(token), key.Alg)
	if err != nil {
		return nil, reject("signature does not verify")
	}
	c := AccessClaims{raw: payload}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, reject("claims are malformed")
	}
	if err := v.checkClaims(&c, now); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkClaims applies the claim rules every access token must pass.
func (v *Verifier) checkClaims(c *AccessClaims, now time.Time) error {
	if c.Issuer != v.Issuer {
		return reject("iss mismatch")
	}
	if c.ExpiresAt <= 0 || c.IssuedAt <= 0 || c.Subject == "" || c.ID == "" || c.ClientID == "" ||
		len(c.Audience) == 0 || slices.Contains(c.Audience, "") {
		return reject("required claim missing")
	}
	return v.checkLive(c, now)
}

// checkLive checks the time claims and revocation, which change with the
// clock and the revocation set even for a token that verified before.
// It compares now±leeway against the claims, never claim+leeway, so that
// a huge claim cannot overflow into the past.
func (v *Verifier) checkLive(c *AccessClaims, now time.Time) error {
	sec := now.Unix()
	lee := int64(v.Leeway / time.Second)
	if sec >= c.ExpiresAt {
		return reject("expired")
	}
	if c.NotBefore != 0 && sec+lee < c.NotBefore {
		return reject("not yet valid")
	}
	if c.IssuedAt > sec+lee {
		return reject("issued in the future")
	}
	if v.revocations.revokedClaims(c) {
		return reject("revoked")
	}
	return nil
}
