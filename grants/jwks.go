package grants

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Limits on fetching a jwks_uri. The URI comes from the operator's
// configuration, never from a request; still, a slow or hostile server
// must not hold a token request or fill memory.
const (
	jwksFetchTimeout = 5 * time.Second
	// MaxJWKSBytes caps a JWKS document, fetched or configured.
	MaxJWKSBytes = 64 << 10
	// jwksMaxAge is how long a fetched set is used before it is fetched
	// again.
	jwksMaxAge = time.Hour
	// jwksMinRefresh is the least time between two fetches, so that
	// assertions with made-up kids cannot make us hammer the key server.
	jwksMinRefresh = 30 * time.Second
	// maxKidBytes bounds a kid before any lookup (a hostile kid, RFC 8725 §3.10).
	maxKidBytes = 256
)

// AssertionAlgs are the asymmetric JWS algorithms accepted for
// private_key_jwt and for assertions of trusted issuers; each key is pinned
// to one of them.
var AssertionAlgs = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// SecretJWTAlgs are the HMAC algorithms accepted for client_secret_jwt.
var SecretJWTAlgs = []string{"HS256", "HS384", "HS512"}

// verifyKey is a public key pinned to the one algorithm it verifies.
type verifyKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	key any
}

// JWKS is a set of public keys that verify assertions: fixed (configured
// inline or in a file) or fetched from an https jwks_uri and cached.
type JWKS struct {
	uri    string
	client *http.Client

	mu      sync.Mutex
	keys    []verifyKey
	fetched time.Time // when keys were last fetched successfully
	tried   time.Time // when a fetch was last attempted
}

// ParseJWKS reads a fixed key set: a JWKS document of public keys. Each
// key verifies with its `alg` when it has one, otherwise with the
// algorithm its type implies (EC P-256 ES256, P-384 ES384, P-521 ES512,
// Ed25519 EdDSA, RSA RS256).
func ParseJWKS(data []byte) (*JWKS, error) {
	keys, err := parseVerifyKeys(data)
	if err != nil {
		return nil, err
	}
	return &JWKS{keys: keys}, nil
}

// RemoteJWKS returns a key set fetched from an https URL on first use,
// cached for an hour and fetched again early (at most every 30s) when an
// assertion names a kid the cached set lacks.
func RemoteJWKS(uri string) (*JWKS, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("jwks_uri %q must be an absolute https URL", uri)
	}
	return &JWKS{uri: uri, client: &http.Client{
		Timeout: jwksFetchTimeout,
		// A redirect could lead anywhere, including plain http.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// candidates returns the keys that may have signed an assertion with this
// kid and alg.
func (s *JWKS) candidates(ctx context.Context, kid, alg string, now time.Time) ([]verifyKey, error) {
	if len(kid) > maxKidBytes {
		return nil, errors.New("kid too long")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uri != "" && now.Sub(s.fetched) > jwksMaxAge && now.Sub(s.tried) > jwksMinRefresh {
		s.refresh(ctx, now)
	}
	out := matchKeys(s.keys, kid, alg)
	if len(out) == 0 && s.uri != "" && now.Sub(s.tried) > jwksMinRefresh {
		s.refresh(ctx, now)
		out = matchKeys(s.keys, kid, alg)
	}
	if len(out) == 0 {
		return nil, errors.New("no key for this kid and alg")
	}
	return out, nil
}

// algs lists the algorithms the set can verify: those its keys are pinned
// to, or, for a jwks_uri, every assertion algorithm, since the set it
// publishes may change at any time. Empty for a nil set.
func (s *JWKS) algs() []string {
	if s == nil {
		return nil
	}
	if s.uri != "" {
		return AssertionAlgs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.keys {
		if a := k.alg.String(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// matchKeys picks keys pinned to alg whose kid matches; keys without a
// kid match any.
func matchKeys(keys []verifyKey, kid, alg string) []verifyKey {
	var out []verifyKey
	for _, k := range keys {
		if k.alg.String() == alg && (kid == "" || k.kid == "" || k.kid == kid) {
			out = append(out, k)
		}
	}
	return out
}

// refresh fetches the set; on failure the previous keys stay in use.
// Called with s.mu held.
func (s *JWKS) refresh(ctx context.Context, now time.Time) {
	s.tried = now
	keys, err := s.fetch(ctx)
	if err != nil {
		return
	}
	s.keys, s.fetched = keys, now
}

func (s *JWKS) fetch(ctx context.Context) ([]verifyKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_uri answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxJWKSBytes {
		return nil, errors.New("jwks_uri document too large")
	}
	return parseVerifyKeys(body)
}

// parseVerifyKeys turns a JWKS document into pinned public keys. Private
// and symmetric keys are refused: a JWKS of a client or issuer publishes
// only public keys.
func parseVerifyKeys(data []byte) ([]verifyKey, error) {
	if len(data) > MaxJWKSBytes {
		return nil, errors.New("JWKS document too large")
	}
	if err := checkJSONObject(data); err != nil {
		return nil, fmt.Errorf("JWKS document: %w", err)
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("JWKS document: %w", err)
	}
	if set.Len() == 0 {
		return nil, errors.New("JWKS document has no keys")
	}
	out := make([]verifyKey, 0, set.Len())
	for i := range set.Len() {
		k, _ := set.Key(i)
		vk, err := pinKey(k)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		out = append(out, vk)
	}
	return out, nil
}

// pinKey fixes the one algorithm a public key verifies with.
func pinKey(k jwk.Key) (verifyKey, error) {
	if priv, err := jwk.IsPrivateKey(k); err != nil || priv {
		return verifyKey{}, errors.New("only public keys belong in a JWKS (this one is private or symmetric)")
	}
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return verifyKey{}, fmt.Errorf("key use %q is not sig", use)
	}
	kid, _ := k.KeyID()
	if len(kid) > maxKidBytes {
		return verifyKey{}, errors.New("kid too long")
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return verifyKey{}, err
	}
	var crv string
	if c, ok := k.(interface {
		Crv() (jwa.EllipticCurveAlgorithm, bool)
	}); ok {
		a, _ := c.Crv()
		crv = a.String()
	}
	// fits lists the algorithms the key type can verify; the first is
	// the one used when the key names none.
	var fits []string
	switch kt := k.KeyType().String(); kt {
	case "EC":
		fits = map[string][]string{"P-256": {"ES256"}, "P-384": {"ES384"}, "P-521": {"ES512"}}[crv]
	case "OKP":
		if crv == "Ed25519" {
			fits = []string{"EdDSA"}
		}
	case "RSA":
		fits = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	default:
		return verifyKey{}, fmt.Errorf("key type %q cannot verify assertions", kt)
	}
	if len(fits) == 0 {
		return verifyKey{}, fmt.Errorf("curve %q is not supported", crv)
	}
	alg := fits[0]
	if a, ok := k.Algorithm(); ok {
		alg = a.String()
	}
	if !slices.Contains(fits, alg) || !slices.Contains(AssertionAlgs, alg) {
		return verifyKey{}, fmt.Errorf("algorithm %q does not fit this key (use one of %v)", alg, fits)
	}
	sa, _ := jwa.LookupSignatureAlgorithm(alg)
	return verifyKey{kid: kid, alg: sa, key: raw}, nil
}
