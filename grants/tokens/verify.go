package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// MaxTokenBytes bounds a bearer token before any parsing is done.
const MaxTokenBytes = 8 << 10

// ErrInvalidToken is the one error a caller sees for any token that does
// not verify; the reason is kept for debug logs only.
var ErrInvalidToken = errors.New("invalid token")

// TokenError says why a token was refused. Its text is for debug logs;
// clients are told only invalid_token.
type TokenError struct {
	Reason string
	// Unknown marks an opaque token this server has no record of (never
	// issued here, or expired and swept): it may be another server's.
	Unknown bool
}

func (e *TokenError) Error() string { return "invalid token: " + e.Reason }
func (e *TokenError) Unwrap() error { return ErrInvalidToken }

// ErrUnavailable is in the chain of a Verify error when the token could
// not be checked because storage failed (an opaque token's lookup): the
// token may be good, so the answer is 503 temporarily_unavailable, never
// invalid_token.
var ErrUnavailable = storage.ErrUnavailable

func reject(reason string) error { return &TokenError{Reason: reason} }

// OpaquePrefix starts every opaque access token, so the verifier knows
// to look it up instead of parsing a JWS.
const OpaquePrefix = "oat_"

// Verifier checks access tokens this server issued, in memory: the key is
// chosen by kid from our own key ring and the algorithm is the key's,
// never the token's.
type Verifier struct {
	issuer string
	// leeway tolerates clock skew on nbf and iat, which another node of
	// the fleet may have set with a clock slightly ahead. It never extends
	// exp: the server applies no leeway to its own tokens' expiry (RFC
	// 7662 §4), so a token is refused from the second of its exp.
	leeway      time.Duration
	keys        *Keys
	revocations *Revocations
	cache       *tokenCache
	minted      *mintedCache
	opaque      func(token string) (*AccessClaims, error)
}

// VerifierConfig is what a Verifier checks tokens against.
type VerifierConfig struct {
	// Issuer is the exact iss every token must carry.
	Issuer string
	// Leeway tolerates clock skew on nbf and iat (never on exp).
	Leeway time.Duration
	// Keys is the key ring tokens are signed with.
	Keys *Keys
	// Revocations is the revocation set checked on every call; nil for
	// none.
	Revocations *Revocations
	// Opaque finds the claims of an opaque access token (OpaquePrefix);
	// nil refuses opaque tokens.
	Opaque func(token string) (*AccessClaims, error)
	// NoCache makes every call check the signature again: what a token
	// never seen before costs.
	NoCache bool
}

// NewVerifier makes a verifier. Only one verifier with a cache may use a
// Keys: it is the one told when a reload removes a key.
func NewVerifier(cfg VerifierConfig) *Verifier {
	v := &Verifier{issuer: cfg.Issuer, leeway: cfg.Leeway, keys: cfg.Keys, revocations: cfg.Revocations, opaque: cfg.Opaque}
	if !cfg.NoCache {
		v.cache, v.minted = newTokenCache(), newMintedCache()
		if cfg.Keys != nil {
			cfg.Keys.dropped = func() { v.cache.clear(); v.minted.clear() }
		}
	}
	return v
}

// Issuer is the iss the verifier accepts.
func (v *Verifier) Issuer() string { return v.issuer }

// Leeway is the clock skew tolerated on nbf and iat.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// Revocations is the revocation set the verifier checks.
func (v *Verifier) Revocations() *Revocations { return v.revocations }

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
			return nil, &TokenError{Reason: "unknown opaque token", Unknown: true}
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
	if c := v.minted.take(token); c != nil {
		if err := v.checkClaims(c, now); err != nil {
			return nil, err
		}
		v.cache.put(token, c, now.Unix())
		return c, nil
	}
	c, err := v.verify(token, now)
	if err != nil {
		return nil, err
	}
	v.cache.put(token, c, now.Unix())
	return c, nil
}

// Remember tells the verifier of an access token this process just
// signed with one of its keys (Key.MintAccessToken), so that the first
// Verify of it need not check the signature. The claims must not change
// afterwards. A token minted by another process is verified in full.
func (v *Verifier) Remember(token string, c *AccessClaims) {
	if c.raw == nil || len(token) > MaxTokenBytes {
		return
	}
	v.minted.put(token, c)
}

// verify is the full check: signature, header and claims.
func (v *Verifier) verify(token string, now time.Time) (*AccessClaims, error) {
	kr := v.keys.Ring()
	if kr == nil {
		return nil, reject("no keys loaded")
	}
	payload, err := kr.VerifySignature(token, "at+jwt", "application/at+jwt")
	if err != nil {
		return nil, err
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

// VerifySignature checks a compact JWS signed with one of the ring's keys,
// chosen by kid and used with its own algorithm only, whose typ header is
// one of typs and which has no crit header, and returns its payload. The
// claims are the caller's to check.
func (kr *KeyRing) VerifySignature(token string, typs ...string) ([]byte, error) {
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
	if !slices.Contains(typs, h.Typ) {
		return nil, reject("typ is not " + typs[0])
	}
	if h.Crit != nil {
		return nil, reject("crit header present")
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
	return payload, nil
}

// checkClaims applies the claim rules every access token must pass.
func (v *Verifier) checkClaims(c *AccessClaims, now time.Time) error {
	if c.Issuer != v.issuer {
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
	lee := int64(v.leeway / time.Second)
	if sec >= c.ExpiresAt {
		return reject("expired")
	}
	if c.NotBefore != 0 && sec+lee < c.NotBefore {
		return reject("not yet valid")
	}
	if c.IssuedAt > sec+lee {
		return reject("issued in the future")
	}
	if v.revocations.RevokedClaims(c) {
		return reject("revoked")
	}
	return nil
}
