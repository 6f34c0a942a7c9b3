package tokens

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Audience is the JWT aud claim: a single string when there is one value
// (what most resource servers expect) and an array otherwise.
type Audience []string

// MarshalJSON implements json.Marshaler.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string or an array of strings and nothing else.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = Audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// Groups is the groups claim: an array of strings, or a single string
// (some providers send one group so), which is one group.
type Groups []string

// UnmarshalJSON accepts a string or an array of strings and nothing else.
func (g *Groups) UnmarshalJSON(b []byte) error { return (*Audience)(g).UnmarshalJSON(b) }

// Contains reports whether v is one of the audience values.
func (a Audience) Contains(v string) bool {
	return slices.Contains(a, v)
}

// AccessClaims are the claims of an RFC 9068 JWT access token. Numeric
// dates are whole seconds; a token whose dates are not JSON integers does
// not unmarshal and so never verifies.
type AccessClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  Audience `json:"aud"`
	ExpiresAt int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf,omitempty"`
	ID        string   `json:"jti"`
	ClientID  string   `json:"client_id"`
	Scope     string   `json:"scope,omitempty"`
	// Grant is the id of the grant (refresh-token family) the token was
	// issued from, so that revoking the grant revokes the token.
	Grant string `json:"gid,omitempty"`
	// Act names the actor of a delegated token (RFC 8693 §4.1), with
	// earlier actors nested inside.
	Act map[string]any `json:"act,omitempty"`
	// ExtIss and ExtSub are the issuer and subject an external identity
	// provider asserted, for a token whose sub is the namespaced external
	// subject (or a local user the provider is mapped to).
	ExtIss string `json:"ext_iss,omitempty"`
	ExtSub string `json:"ext_sub,omitempty"`
	// FromClients are the clients of the tokens an exchanged token was
	// derived from (subject and actor tokens, and theirs in turn), so
	// that revoking any of them revokes it too, as it revokes its parent.
	FromClients []string `json:"src_client_ids,omitempty"`
	// FromTokens are the ids (jti) of the access tokens an exchanged
	// token was derived from, so that revoking one (RFC 7009) revokes it.
	FromTokens []string `json:"src_jtis,omitempty"`
	// Groups are the user's groups when the token was granted the groups
	// scope (RFC 9068 §2.2.3.1), for a gate's allow_groups. Never in a
	// client's own (client_credentials) token.
	Groups Groups `json:"groups,omitempty"`
	// Cnf binds the token to its holder's key or certificate (RFC 7800
	// §3.1): with JKT a DPoP key (RFC 9449 §6.1), with X5tS256 a client
	// certificate (RFC 8705 §3.1). Nil for a bearer token.
	Cnf *Cnf `json:"cnf,omitempty"`

	raw    []byte         // the verified payload, for Claim
	once   sync.Once      // decodes raw into claims on first use
	claims map[string]any // raw decoded; read-only once made
}

// DecodedString returns one of the string claims every token has (sub,
// client_id, iss, jti), which are decoded already: no payload parse and
// no boxing into an interface, for callers on a hot path.
func (c *AccessClaims) DecodedString(name string) (string, bool) {
	var v string
	switch name {
	case "sub":
		v = c.Subject
	case "client_id":
		v = c.ClientID
	case "iss":
		v = c.Issuer
	case "jti":
		v = c.ID
	}
	return v, v != ""
}

// Claim returns any claim of a verified token by name, decoding the
// payload once; JSON numbers come back as json.Number. Safe for
// concurrent use: verified claims are shared through the token cache.
func (c *AccessClaims) Claim(name string) (any, bool) {
	// The string claims every token has are already decoded: forwarding
	// the subject, the usual case, costs no second parse per token.
	if known, ok := c.DecodedString(name); ok {
		return known, true
	}
	c.once.Do(func() {
		m := map[string]any{}
		d := json.NewDecoder(bytes.NewReader(c.raw))
		d.UseNumber()
		_ = d.Decode(&m)
		c.claims = m
	})
	v, ok := c.claims[name]
	return v, ok
}

// ParseAccessClaims decodes the claims of a token whose payload was
// checked elsewhere (an opaque token's stored claims); the verifier's
// rules still apply to them.
func ParseAccessClaims(payload []byte) (*AccessClaims, error) {
	c := &AccessClaims{raw: payload}
	if err := json.Unmarshal(payload, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Raw is the verified payload the claims were decoded from.
func (c *AccessClaims) Raw() []byte { return c.raw }

// Scopes returns the scope claim split into tokens.
func (c *AccessClaims) Scopes() []string {
	if c.Scope == "" {
		return nil
	}
	return strings.Split(c.Scope, " ")
}

// RandomID returns n random bytes, base64url encoded.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// MintAccessToken signs claims as an at+jwt with the key. The claims
// keep the payload they were signed as, so that the verifier may be told
// of the token (Verifier.Remember) and never check its signature.
func (k *Key) MintAccessToken(c *AccessClaims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	tok, err := k.sign(k.atHeader, payload)
	if err == nil {
		c.raw = payload
	}
	return tok, err
}

// MintIDToken signs an OpenID Connect ID token's claims with the key.
func (k *Key) MintIDToken(c any) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return k.sign(k.idHeader, payload)
}

// sign makes a compact JWS. It is assembled from the key's precomputed
// protected header; the signature itself is made by jwx's signer for the
// key's pinned algorithm.
func (k *Key) sign(header string, payload []byte) (string, error) {
	var err error
	enc := base64.RawURLEncoding
	n := len(header) + 1 + enc.EncodedLen(len(payload))
	// One buffer holds the signing input and, after it, the signature, so
	// that a token costs one allocation here rather than three (the
	// token endpoint's garbage is part of its tail latency at saturation).
	buf := make([]byte, n, n+1+enc.EncodedLen(k.signatureSize()))
	copy(buf, header)
	buf[len(header)] = '.'
	enc.Encode(buf[len(header)+1:], payload)
	var sig []byte
	var es256 [64]byte
	if p, ok := k.private.(*ecdsa.PrivateKey); ok && k.Alg.String() == "ES256" {
		err = signES256(p, buf, &es256)
		sig = es256[:]
	} else {
		sig, err = k.signer.Sign(k.private, buf)
	}
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	// buf is not written again and nothing else holds it.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
}

// signES256 is the ES256 JWS signature (RFC 7518 §3.4: R and S, 32
// bytes each) of input, made as jwx's signer makes it (crypto/ecdsa with
// crypto/rand, hedged) but without its big.Int round trip: a third fewer
// allocations for the token endpoint's most common token.
func signES256(p *ecdsa.PrivateKey, input []byte, sig *[64]byte) error {
	digest := sha256.Sum256(input)
	der, err := ecdsa.SignASN1(rand.Reader, p, digest[:])
	if err != nil {
		return err
	}
	var seq, r, s cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&r, asn1.INTEGER) || !seq.ReadASN1(&s, asn1.INTEGER) || !seq.Empty() ||
		!putScalar(sig[:32], r) || !putScalar(sig[32:], s) {
		return errors.New("crypto/ecdsa returned a malformed signature")
	}
	return nil
}

// putScalar writes the positive DER integer v right-aligned into dst.
func putScalar(dst []byte, v []byte) bool {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > len(dst) {
		return false
	}
	clear(dst[:len(dst)-len(v)])
	copy(dst[len(dst)-len(v):], v)
	return true
}

// signatureSize is the length of the key's signatures (a guess is
// enough: append grows the buffer when it is short).
func (k *Key) signatureSize() int {
	switch p := k.private.(type) {
	case *ecdsa.PrivateKey:
		return 2 * ((p.Curve.Params().BitSize + 7) / 8)
	case *rsa.PrivateKey:
		return p.Size()
	}
	return ed25519.SignatureSize
}

// NewAccessClaims fills the claims every access token carries, with a
// fresh jti.
func NewAccessClaims(issuer, subject, clientID string, aud []string, scope []string, now time.Time, ttl time.Duration) *AccessClaims {
	return &AccessClaims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  aud,
		IssuedAt:  now.Unix(),
		ExpiresAt: now.Add(ttl).Unix(),
		ID:        RandomID(16),
		ClientID:  clientID,
		Scope:     strings.Join(scope, " "),
	}
}
