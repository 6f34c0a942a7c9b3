package grants

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Client authentication by JWT assertion (RFC 7523 §2.2, OIDC Core §9).
const (
	// AuthSecretJWT signs the assertion with HMAC keyed by the client
	// secret, which must therefore be kept in memory in the clear.
	AuthSecretJWT = "client_secret_jwt"
	// AuthPrivateKeyJWT signs the assertion with a private key whose
	// public half the client registered (jwks, jwks_file or jwks_uri).
	AuthPrivateKeyJWT = "private_key_jwt"
	// ClientAssertionType is the only client_assertion_type accepted.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Assertion time rules, for client assertions and assertion grants.
const (
	// MaxAssertionLifetime caps exp-now and exp-iat (RFC 7523 §3 item 4 asks only for a limit).
	MaxAssertionLifetime = 5 * time.Minute
	// assertionSkew tolerates clock differences on exp, nbf and iat.
	assertionSkew = 60 * time.Second
	maxJTIBytes   = 256
)

// assertionHeader is the part of a JWS protected header we look at.
type assertionHeader struct {
	Alg  string `json:"alg"`
	Kid  string `json:"kid"`
	Typ  string `json:"typ"`
	Crit any    `json:"crit"`
	B64  any    `json:"b64"`
}

// assertionClaims are the registered claims of an assertion. Dates must
// be JSON integers: a string, an object or 1e20 does not unmarshal into
// int64, so such an assertion never passes (numeric claim abuse).
type assertionClaims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	ExpiresAt *int64          `json:"exp"`
	NotBefore *int64          `json:"nbf"`
	IssuedAt  *int64          `json:"iat"`
	ID        string          `json:"jti"`
	// raw is the verified payload, for other claims.
	raw []byte
}

// splitAssertion checks that tok is exactly one compact JWS of bounded
// size with a strict-JSON header and payload, and returns both decoded.
// Nothing here is trusted until the signature is verified.
func splitAssertion(tok string) (assertionHeader, []byte, error) {
	var h assertionHeader
	if len(tok) > tokens.MaxTokenBytes {
		return h, nil, errors.New("assertion too large")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return h, nil, errors.New("not one compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, nil, errors.New("header is not base64url")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, nil, errors.New("payload is not base64url")
	}
	if err := checkJSONObject(hb); err != nil {
		return h, nil, fmt.Errorf("header: %w", err)
	}
	if err := checkJSONObject(pb); err != nil {
		return h, nil, fmt.Errorf("payload: %w", err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, nil, errors.New("header is malformed")
	}
	switch {
	case h.Crit != nil:
		return h, nil, errors.New("crit header present")
	case h.B64 != nil:
		return h, nil, errors.New("b64 header present")
	case h.Alg == "" || strings.EqualFold(h.Alg, "none"):
		return h, nil, errors.New("unsigned")
	case len(h.Kid) > maxKidBytes:
		return h, nil, errors.New("kid too long")
	}
	return h, pb, nil
}

// decodeAssertionClaims reads the claims of a verified payload.
func decodeAssertionClaims(payload []byte) (*assertionClaims, error) {
	c := &assertionClaims{raw: payload}
	if err := json.Unmarshal(payload, c); err != nil {
		return nil, errors.New("claims are malformed")
	}
	return c, nil
}

// check applies the RFC 7523 §3 rules: iss and sub present, aud exactly
// one of audiences (a string, or an array of that one string), exp
// present, not past and at most MaxAssertionLifetime ahead, nbf and iat
// sensible, jti present.
func (c *assertionClaims) check(audiences []string, now time.Time) error {
	if c.ID == "" || len(c.ID) > maxJTIBytes {
		return errors.New("jti is required")
	}
	return c.checkTimes(audiences, now, MaxAssertionLifetime)
}

// checkTimes is check without the jti rule and with a lifetime cap of
// life (none when zero), for tokens that are not single-use assertions.
func (c *assertionClaims) checkTimes(audiences []string, now time.Time, life time.Duration) error {
	if c.Issuer == "" || c.Subject == "" {
		return errors.New("iss and sub are required")
	}
	var aud string
	if err := json.Unmarshal(c.Audience, &aud); err != nil {
		var list []string
		if json.Unmarshal(c.Audience, &list) != nil || len(list) != 1 {
			return errors.New("aud must name this server alone")
		}
		aud = list[0]
	}
	if !slices.Contains(audiences, aud) {
		return errors.New("aud does not name this server")
	}
	if c.ExpiresAt == nil {
		return errors.New("exp is required")
	}
	// Compare now±skew against the claims, never claim±skew, so a huge
	// claim cannot overflow.
	sec, skew, maxLife := now.Unix(), int64(assertionSkew/time.Second), int64(life/time.Second)
	exp := *c.ExpiresAt
	if exp <= 0 || sec-skew > exp {
		return errors.New("expired")
	}
	if maxLife > 0 && exp-sec > maxLife+skew {
		return errors.New("lifetime too long")
	}
	if c.NotBefore != nil && (*c.NotBefore < 0 || *c.NotBefore > sec+skew) {
		return errors.New("not yet valid")
	}
	if iat := c.IssuedAt; iat != nil {
		if *iat <= 0 || *iat > sec+skew {
			return errors.New("issued in the future")
		}
		if maxLife > 0 && (exp-*iat > maxLife || sec-*iat > maxLife+skew) {
			return errors.New("issued too long ago")
		}
	}
	return nil
}

// verifyAssertionWith checks the signature with the candidate keys, each
// with its own pinned algorithm (never the token's), and returns the
// verified payload.
func verifyAssertionWith(tok string, keys []verifyKey) ([]byte, error) {
	for _, k := range keys {
		if payload, err := jws.VerifyCompactFast(k.key, []byte(tok), k.alg); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("signature does not verify")
}

// consumeAssertionID records a single-use assertion id (a jti, or a SAML
// assertion ID) until it expires, in one transaction. It reports false
// when the id was already used.
func (e *Engine) consumeAssertionID(ctx context.Context, namespace, issuer, id string, expires time.Time) (bool, error) {
	key := namespace + ":" + hashToken(issuer+"\x00"+id)
	var fresh bool
	err := e.store.Batch(ctx, func(tx storage.Tx) error {
		fresh = false
		_, err := tx.Get(storage.KindAssertions, key)
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		fresh = true
		return tx.Put(storage.KindAssertions, key, storage.Record{Value: []byte{1}, Expires: expires})
	})
	return fresh, err
}

// authenticateAssertion authenticates a client by client_assertion. Every
// failure is the same 401 invalid_client; the reason goes to the debug
// log only.
func (e *Engine) authenticateAssertion(ctx context.Context, form Form, failed *Error) (*Client, *Error) {
	fail := func(reason string) (*Client, *Error) {
		e.debug(ctx, "client assertion refused", zap.String("reason", reason))
		return nil, failed
	}
	if form.Get("client_assertion_type") != ClientAssertionType {
		return fail("client_assertion_type is not jwt-bearer")
	}
	tok := form.Get("client_assertion")
	if tok == "" {
		return fail("client_assertion is missing")
	}
	h, pb, err := splitAssertion(tok)
	if err != nil {
		return fail(err.Error())
	}
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") && !strings.EqualFold(h.Typ, "client-authentication+jwt") {
		return fail("typ is not JWT or client-authentication+jwt")
	}
	// The client is named by the (still unverified) iss; the signature
	// with that client's own key then proves it.
	var named struct {
		Issuer string `json:"iss"`
	}
	_ = json.Unmarshal(pb, &named)
	// Config clients and those registered at run time (RFC 7591 jwks).
	c, err := e.lookupClient(ctx, named.Issuer)
	if err != nil {
		return nil, errUnavailable.withCause(err)
	}
	if c == nil || (c.AuthMethod != AuthSecretJWT && c.AuthMethod != AuthPrivateKeyJWT) {
		return fail("iss is not a client registered for JWT authentication")
	}
	if cid := form.Get("client_id"); cid != "" && cid != c.ID {
		return fail("client_id differs from the assertion")
	}
	now := time.Now()
	var keys []verifyKey
	if c.AuthMethod == AuthSecretJWT {
		keys = c.secretKeys(h.Alg)
	} else if keys, err = c.Keys.candidates(ctx, h.Kid, h.Alg, now); err != nil {
		return fail(err.Error())
	}
	payload, err := verifyAssertionWith(tok, keys)
	if err != nil {
		return fail(err.Error())
	}
	claims, err := decodeAssertionClaims(payload)
	if err != nil {
		return fail(err.Error())
	}
	if claims.Issuer != c.ID || claims.Subject != c.ID {
		return fail("iss and sub must both be the client_id")
	}
	if err := claims.check([]string{e.issuer}, now); err != nil {
		return fail(err.Error())
	}
	fresh, err := e.consumeAssertionID(ctx, "client", c.ID, claims.ID, time.Unix(*claims.ExpiresAt, 0).Add(assertionSkew))
	if err != nil {
		return nil, storageError(err)
	}
	if !fresh {
		return fail("jti already used")
	}
	return c, nil
}

// secretKeys is the client secret as an HMAC key for alg, when alg is an
// allowed HMAC algorithm and the secret is at least as long as its hash
// (RFC 7518 §3.2).
func (c *Client) secretKeys(alg string) []verifyKey {
	sizes := map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}
	if n, ok := sizes[alg]; !ok || len(c.Secret) < n {
		return nil
	}
	a, _ := jwa.LookupSignatureAlgorithm(alg)
	return []verifyKey{{alg: a, key: bytes.Clone(c.Secret)}}
}

// joseNames are the registered header parameters and claims, and the
// JWK Set member, that this server reads by name: their spelling by their
// lower-case form.
var joseNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"alg", "kid", "typ", "cty", "crit", "b64", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256",
		"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "keys"} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// checkJSONObject refuses what a JOSE parser may refuse and we do: a
// value that is not an object, duplicate members at the top level
// (RFC 7519 §4; in any letter case), a registered name in another letter
// case, and nesting deeper than a real JWT needs (deeply nested JSON).
func checkJSONObject(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	const maxDepth = 16
	type frame struct {
		object bool
		keys   map[string]bool
		atKey  bool
	}
	var stack []*frame
	for {
		t, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return errors.New("not valid JSON")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		} else if t != json.Delim('{') {
			return errors.New("not a JSON object")
		}
		if top != nil && top.object && top.atKey {
			if _, isDelim := t.(json.Delim); !isDelim {
				k := t.(string)
				if len(stack) == 1 {
					// encoding/json matches member names to fields in
					// any letter case, and the last match wins: "SUB"
					// after "sub" would replace the subject, and a lone
					// "ISS" would be read as iss. Names are
					// case-sensitive (RFC 7515 §4, RFC 7519 §4), so
					// neither is accepted.
					folded := strings.ToLower(k)
					if top.keys[folded] {
						return fmt.Errorf("member %q is repeated (names that differ only in letter case count as the same)", k)
					}
					top.keys[folded] = true
					if name, ok := joseNames[folded]; ok && name != k {
						return fmt.Errorf("member %q must be spelled %q", k, name)
					}
				}
				top.atKey = false
				continue
			}
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDepth {
				return errors.New("nested too deeply")
			}
			if top != nil && top.object {
				top.atKey = true
			}
			stack = append(stack, &frame{object: t == json.Delim('{'), keys: map[string]bool{}, atKey: true})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) == 0 && d.More() {
				return errors.New("trailing data")
			}
			continue
		}
		if top != nil && top.object {
			top.atKey = true
		}
	}
	if len(stack) != 0 {
		return errors.New("not valid JSON")
	}
	return nil
}
