package tokens

import (
	"bytes"
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// DPoP proof verification (RFC 9449 §4.3), shared by the token endpoint
// and the gate: both pass the URL they are configured to serve, never one
// built from the request's Host or X-Forwarded-* headers.

// DPoPHeader is the request header that carries a proof, and
// DPoPNonceHeader the response header that hands out a server nonce.
const (
	DPoPHeader      = "DPoP"
	DPoPNonceHeader = "DPoP-Nonce"
)

// DefaultDPoPAlgs are the proof algorithms accepted unless configured
// otherwise: the registered asymmetric JWS algorithms. Never none or HS*.
var DefaultDPoPAlgs = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Defaults of a DPoPVerifier.
const (
	// DefaultDPoPWindow is how old a proof's iat may be.
	DefaultDPoPWindow = 60 * time.Second
	// DefaultDPoPLeeway is added to the window for clock skew, and is
	// how far iat may lie ahead of the server's clock.
	DefaultDPoPLeeway = 5 * time.Second
	// DefaultDPoPReplayEntries bounds the replay cache: at most this many
	// proofs are remembered at once (about 60 bytes each).
	DefaultDPoPReplayEntries = 1 << 20
	// DefaultDPoPNonceStep is how long a server nonce is current; the one
	// before it is still accepted.
	DefaultDPoPNonceStep = 5 * time.Minute
	// maxDPoPProof bounds the header value: a proof with an RSA-4096 jwk
	// is well under 3 KiB.
	maxDPoPProof = 8 << 10
	// maxDPoPJTI bounds a jti, which is remembered.
	maxDPoPJTI = 256
)

// The classes of DPoP refusal, matched with errors.Is on a *DPoPError.
var (
	// ErrInvalidDPoPProof: answer invalid_dpop_proof (RFC 9449 §5, §7.1).
	ErrInvalidDPoPProof = errors.New("invalid_dpop_proof")
	// ErrUseDPoPNonce: the proof is otherwise valid but lacks the current
	// server nonce; answer use_dpop_nonce with a DPoP-Nonce header (§8).
	ErrUseDPoPNonce = errors.New("use_dpop_nonce")
	// ErrDPoPBusy: the replay cache is full of live proofs, so a new one
	// cannot be checked for replay; answer 503 and let the client retry.
	ErrDPoPBusy = errors.New("dpop replay cache full")
)

// DPoPError is a refused proof: Code is one of the Err* classes above
// (its Error is the OAuth error code), Reason says what was wrong and is
// safe to show the client.
type DPoPError struct {
	Code   error
	Reason string
}

func (e *DPoPError) Error() string { return e.Code.Error() + ": " + e.Reason }

// Unwrap returns the class, for errors.Is.
func (e *DPoPError) Unwrap() error { return e.Code }

func badProof(format string, args ...any) error {
	return &DPoPError{Code: ErrInvalidDPoPProof, Reason: "DPoP proof: " + fmt.Sprintf(format, args...)}
}

// DPoPCheck is what a proof must match.
type DPoPCheck struct {
	// Method is the request's method (htm).
	Method string
	// URL is the endpoint's URL as configured (htu); query and fragment,
	// if any, are ignored.
	URL string
	// AccessToken, when set, must be the one the proof's ath hashes (the
	// resource server side, RFC 9449 §7.1); empty means no ath check.
	AccessToken string
}

// DPoPProof is a verified proof.
type DPoPProof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof key,
	// base64url: the cnf.jkt of a token bound to it.
	JKT      string
	JTI      string
	IssuedAt time.Time
}

// DPoPVerifier verifies proofs. Its zero value is not usable: make it
// with NewDPoPVerifier. Safe for concurrent use.
type DPoPVerifier struct {
	algs   map[string]jwa.SignatureAlgorithm
	window time.Duration
	leeway time.Duration
	nonces *DPoPNonces
	replay *dpopReplay
	keys   *dpopKeyCache // parsed proof headers, shared by the process
	now    func() time.Time
}

// DPoPOptions configure a verifier; zero fields take the defaults.
type DPoPOptions struct {
	// Algs is the allowlist of proof algorithms; DefaultDPoPAlgs when
	// empty. Symmetric algorithms and none are refused.
	Algs []string
	// Window is how old iat may be; default DefaultDPoPWindow.
	Window time.Duration
	// Leeway is added to Window for clock skew, and is how far iat may
	// lie ahead; default DefaultDPoPLeeway.
	Leeway time.Duration
	// Nonces, when set, makes every proof carry a current server nonce.
	Nonces *DPoPNonces
	// ReplayEntries, when set, gives the verifier a replay cache of its
	// own with this bound. Unset, it shares the process's cache
	// (DefaultDPoPReplayEntries), as every endpoint and gate of the
	// process must: a proof is spent once in this process, whichever of
	// them sees it, and across config reloads.
	ReplayEntries int
	// Now is the clock, for tests; time.Now when nil. A verifier with its
	// own clock gets a replay cache of its own.
	Now func() time.Time
}

// NewDPoPVerifier makes a verifier, refusing an allowlist with an
// algorithm that is not an asymmetric JWS signature algorithm.
func NewDPoPVerifier(o DPoPOptions) (*DPoPVerifier, error) {
	v := &DPoPVerifier{algs: map[string]jwa.SignatureAlgorithm{}, window: o.Window, leeway: o.Leeway, nonces: o.Nonces, keys: processDPoPKeys, now: o.Now}
	names := o.Algs
	if len(names) == 0 {
		names = DefaultDPoPAlgs
	}
	for _, n := range names {
		if !slices.Contains(DefaultDPoPAlgs, n) {
			return nil, fmt.Errorf("DPoP algorithm %q is not allowed: use asymmetric ones among %s", n, strings.Join(DefaultDPoPAlgs, ", "))
		}
		a, ok := jwa.LookupSignatureAlgorithm(n)
		if !ok {
			return nil, fmt.Errorf("DPoP algorithm %q is unknown", n)
		}
		v.algs[n] = a
	}
	if v.window <= 0 {
		v.window = DefaultDPoPWindow
	}
	if v.leeway <= 0 {
		v.leeway = DefaultDPoPLeeway
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case o.ReplayEntries > 0:
		v.replay = newDPoPReplay(o.ReplayEntries, v.now())
	case o.Now != nil:
		v.replay = newDPoPReplay(DefaultDPoPReplayEntries, v.now())
	default:
		v.replay = processReplay()
	}
	return v, nil
}

// Algs returns the allowlist, sorted, for metadata
// (dpop_signing_alg_values_supported) and challenges.
func (v *DPoPVerifier) Algs() []string {
	out := make([]string, 0, len(v.algs))
	for n := range v.algs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Nonces returns the nonce source, or nil when nonces are off.
func (v *DPoPVerifier) Nonces() *DPoPNonces { return v.nonces }

// HasDPoPProof reports whether the request carries any DPoP header.
// The key is spelt canonically: Values would canonicalise it on every
// request, an allocation on the token endpoint's hot path.
func HasDPoPProof(h http.Header) bool { return len(h[dpopCanonical]) > 0 }

// dpopCanonical is textproto.CanonicalMIMEHeaderKey(DPoPHeader), the
// key net/http stores the header under.
const dpopCanonical = "Dpop"

// dpopHeader is the proof's protected header, as sent.
type dpopHeader struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

// dpopClaims are the proof's claims.
type dpopClaims struct {
	JTI   *string         `json:"jti"`
	HTM   *string         `json:"htm"`
	HTU   *string         `json:"htu"`
	IAT   json.RawMessage `json:"iat"`
	ATH   *string         `json:"ath"`
	Nonce *string         `json:"nonce"`
}

// privateJWKMembers are the members that carry private or symmetric key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Verify checks the request's proof against c (RFC 9449 §4.3) and
// returns it; a refusal is a *DPoPError. A proof is remembered only once
// it passed every other check, so a refused one may be sent again fixed.
func (v *DPoPVerifier) Verify(h http.Header, c DPoPCheck) (*DPoPProof, error) {
	vals := h[dpopCanonical]
	switch {
	case len(vals) == 0:
		return nil, badProof("the DPoP header is missing")
	case len(vals) > 1:
		return nil, badProof("send exactly one DPoP header")
	}
	proof := vals[0]
	if len(proof) > maxDPoPProof {
		return nil, badProof("too large")
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, badProof("not a compact JWS (three base64url parts)")
	}
	hk, alg, cached, err := v.proofHeader(parts[0])
	if err != nil {
		return nil, err
	}
	jkt := hk.jkt
	// Every proof's signature is verified, cached header or not. jwx
	// checks that the key's type fits alg and refuses crit and b64.
	payload, err := jws.VerifyCompactFast(hk.pub, []byte(proof), alg)
	if err != nil {
		return nil, badProof("the signature does not verify with the header's jwk for alg %s", hk.alg)
	}
	if !cached {
		// Kept only once a proof with this header verified.
		v.keys.put(parts[0], hk)
	}
	var cl dpopClaims
	if err := strictJSON(payload, &cl); err != nil {
		return nil, badProof("the claims are not a JSON object")
	}
	// An array, not a map: a map literal here was an allocation per proof.
	for _, m := range [...]struct {
		name string
		p    *string
	}{{"jti", cl.JTI}, {"htm", cl.HTM}, {"htu", cl.HTU}} {
		if m.p == nil || *m.p == "" {
			return nil, badProof("the %s claim is required", m.name)
		}
	}
	if len(cl.IAT) == 0 || string(cl.IAT) == "null" {
		return nil, badProof("the iat claim is required")
	}
	if len(*cl.JTI) > maxDPoPJTI {
		return nil, badProof("jti is too long")
	}
	if *cl.HTM != c.Method {
		return nil, badProof("htm must be the request method %s", c.Method)
	}
	want, err := NormalizeHTU(c.URL)
	if err != nil {
		return nil, fmt.Errorf("the configured DPoP target %q: %w", c.URL, err)
	}
	// A htu spelt exactly as the configured URL normalises the same (the
	// usual case), so only another spelling is normalised again.
	if *cl.HTU != c.URL {
		if got, err := NormalizeHTU(*cl.HTU); err != nil || got != want {
			return nil, badProof("htu must be %s", want)
		}
	}
	// A JSON number, not a string holding one (which json.Number takes).
	f, err := strconv.ParseFloat(string(cl.IAT), 64)
	if err != nil || cl.IAT[0] == '"' || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, badProof("iat must be a number")
	}
	now := v.now()
	if f < 0 || f > 1e12 {
		return nil, badProof("iat is not within %s of the server's time", v.window)
	}
	sec := int64(f)
	iat := time.Unix(sec, int64((f-float64(sec))*1e9))
	if now.Sub(iat) > v.window+v.leeway || iat.Sub(now) > v.leeway {
		return nil, badProof("iat is not within %s of the server's time", v.window)
	}
	// The replay cache holds every proof spent since it was made (at
	// process start), so a proof older than that, which a process
	// before this one may have spent, is refused; the leeway keeps
	// clients whose clocks are slightly slow working across a restart.
	if iat.Before(v.replay.born.Add(-v.leeway)) {
		return nil, badProof("iat is older than this server's start: make a new proof")
	}
	if c.AccessToken != "" {
		if cl.ATH == nil {
			return nil, badProof("the ath claim is required with an access token")
		}
		sum := sha256.Sum256([]byte(c.AccessToken))
		var enc [43]byte // base64url of 32 bytes, on the stack
		base64.RawURLEncoding.Encode(enc[:], sum[:])
		if !hmac.Equal([]byte(*cl.ATH), enc[:]) {
			return nil, badProof("ath does not match the access token")
		}
	}
	if v.nonces != nil && (cl.Nonce == nil || !v.nonces.Valid(*cl.Nonce, now)) {
		return nil, &DPoPError{Code: ErrUseDPoPNonce, Reason: "DPoP proof: use the server's nonce from the DPoP-Nonce header"}
	}
	// Remembered until it could no longer pass the iat check.
	if err := v.replay.add(jkt, *cl.JTI, iat.Add(v.window+v.leeway), now); err != nil {
		return nil, err
	}
	return &DPoPProof{JKT: jkt, JTI: *cl.JTI, IssuedAt: iat}, nil
}

// proofHeader checks the protected header h (base64url, as sent): typ,
// alg in this verifier's allowlist, and its jwk, whose key and
// thumbprint it returns, and whether they came from the shared cache
// (dpopkeycache.go), which keeps a header by its exact bytes once a
// proof with it verified, so that the next proof of the same client
// skips the jwk parsing. Cached or not, the checks and their order are
// the same: the cache holds only headers that passed all but the alg
// allowlist, which is this verifier's and checked on every call.
func (v *DPoPVerifier) proofHeader(h string) (*dpopHeaderKey, jwa.SignatureAlgorithm, bool, error) {
	if hk := v.keys.get(h); hk != nil {
		alg, ok := v.algs[hk.alg]
		if !ok {
			return nil, alg, false, badProof("alg %q is not accepted; use one of %s", hk.alg, strings.Join(v.Algs(), " "))
		}
		return hk, alg, true, nil
	}
	var alg jwa.SignatureAlgorithm
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, alg, false, badProof("the header is not base64url")
	}
	var hdr dpopHeader
	if err := strictJSON(hb, &hdr); err != nil {
		return nil, alg, false, badProof("the header is not a JSON object")
	}
	if hdr.Typ != "dpop+jwt" {
		return nil, alg, false, badProof("typ must be dpop+jwt")
	}
	alg, ok := v.algs[hdr.Alg]
	if !ok {
		return nil, alg, false, badProof("alg %q is not accepted; use one of %s", hdr.Alg, strings.Join(v.Algs(), " "))
	}
	key, jkt, err := proofKey(hdr.JWK)
	if err != nil {
		return nil, alg, false, err
	}
	return &dpopHeaderKey{alg: hdr.Alg, pub: key, jkt: jkt}, alg, false, nil
}

// strictJSON decodes one JSON object into v and nothing after it. The
// common case, b being exactly one JSON value, takes json.Unmarshal
// (fewer allocations than a Decoder), which accepts nothing the Decoder
// refuses; anything Unmarshal refuses gets the Decoder's verdict, so
// what is accepted is unchanged. Unmarshal checks the syntax of all of b
// before it sets anything in v.
func strictJSON(b []byte, v any) error {
	if json.Unmarshal(b, v) == nil {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// proofKey parses the header's jwk: a public asymmetric key, returned
// as the raw key jwx verifies with, and its RFC 7638 thumbprint.
func proofKey(raw json.RawMessage) (any, string, error) {
	if len(raw) == 0 {
		return nil, "", badProof("the header needs the public key as jwk")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, "", badProof("jwk is not a JSON object")
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return nil, "", badProof("jwk must be a public key: it holds the private member %q", m)
		}
	}
	k, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, "", badProof("jwk is not a valid key")
	}
	switch k.KeyType() {
	case jwa.EC(), jwa.RSA(), jwa.OKP():
	default:
		return nil, "", badProof("jwk must be an EC, RSA or OKP public key")
	}
	var pub any
	if err := jwk.Export(k, &pub); err != nil {
		return nil, "", badProof("jwk is not a usable key")
	}
	if r, ok := pub.(*rsa.PublicKey); ok && r.N.BitLen() < 2048 {
		return nil, "", badProof("an RSA jwk must have at least 2048 bits")
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", badProof("jwk has no thumbprint")
	}
	return pub, base64.RawURLEncoding.EncodeToString(tp), nil
}

// JWKThumbprint returns the RFC 7638 SHA-256 thumbprint (base64url) of
// a public JWK, as a dpop_jkt or cnf.jkt spells it.
func JWKThumbprint(raw []byte) (string, error) {
	_, jkt, err := proofKey(raw)
	return jkt, err
}

// NormalizeHTU normalises an http(s) URL for htu comparison (RFC 9449
// §4.3 (9), RFC 3986 §6.2.2 and §6.2.3): scheme and host lower case,
// default port dropped, empty path as "/", percent-encoding of unreserved
// characters decoded and other escapes upper case, dot segments removed;
// query and fragment dropped.
func NormalizeHTU(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "https" && scheme != "http") || u.Host == "" || u.Opaque != "" {
		return "", errors.New("not an absolute http(s) URL")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	p, err := normalizeEscapes(u.EscapedPath())
	if err != nil {
		return "", err
	}
	p = removeDotSegments(p)
	if p == "" {
		p = "/"
	}
	userinfo := ""
	if u.User != nil {
		userinfo = u.User.String() + "@"
	}
	return scheme + "://" + userinfo + host + p, nil
}

// normalizeEscapes decodes percent-encoded unreserved characters and
// upper-cases the hex digits of the other escapes (RFC 3986 §6.2.2.1-2).
func normalizeEscapes(p string) (string, error) {
	if !strings.Contains(p, "%") {
		return p, nil
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("bad percent-encoding")
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// removeDotSegments is RFC 3986 §5.2.4.
func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	r := strings.Join(out, "/")
	if strings.HasPrefix(in, "/") && !strings.HasPrefix(r, "/") {
		r = "/" + r
	}
	return r
}

// DPoPNonces are stateless, rotating server nonces: the nonce of a time
// step is an HMAC of the step under a secret, and the current and the
// previous step's nonces are accepted. Nodes that share the secret accept
// each other's nonces.
type DPoPNonces struct {
	static []byte
	keys   *Keys
	cache  atomic.Pointer[nonceSecret]
	step   time.Duration
}

// nonceSecret is the secret derived from one key ring.
type nonceSecret struct {
	ring   *KeyRing
	secret []byte
}

// dpopNonceInfo is the HKDF info of the nonce secret, so that it is never
// the key of anything else derived from a signing key.
const dpopNonceInfo = "oauthgate dpop nonce v1"

// NewDPoPNonces makes a nonce source with a fixed secret; a step of zero
// is DefaultDPoPNonceStep. The secret must be at least 32 bytes.
func NewDPoPNonces(secret []byte, step time.Duration) (*DPoPNonces, error) {
	if len(secret) < 32 {
		return nil, errors.New("the DPoP nonce secret must be at least 32 bytes")
	}
	if step <= 0 {
		step = DefaultDPoPNonceStep
	}
	return &DPoPNonces{static: slices.Clone(secret), step: step}, nil
}

// DPoPNonces is a nonce source whose secret is derived (HKDF-SHA256) from
// the current signing key of the ring: every node that shares the key
// storage hands out and accepts the same nonces, with no state. When the
// current key changes, nonces of the old one stop verifying and clients
// get use_dpop_nonce once more, with a fresh nonce.
func (k *Keys) DPoPNonces(step time.Duration) *DPoPNonces {
	if step <= 0 {
		step = DefaultDPoPNonceStep
	}
	return &DPoPNonces{keys: k, step: step}
}

// secret is the HMAC key, or nil when no key is loaded yet.
func (n *DPoPNonces) secret() []byte {
	if n.static != nil {
		return n.static
	}
	kr := n.keys.Ring()
	if kr == nil || kr.Current == nil {
		return nil
	}
	if c := n.cache.Load(); c != nil && c.ring == kr {
		return c.secret
	}
	m, err := privateMaterial(kr.Current)
	if err != nil {
		return nil
	}
	s, err := hkdf.Key(sha256.New, m, nil, dpopNonceInfo, 32)
	if err != nil {
		return nil
	}
	n.cache.Store(&nonceSecret{ring: kr, secret: s})
	return s
}

func (n *DPoPNonces) at(secret []byte, step int64) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("dpop-nonce\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(step))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// Current is the nonce to hand out at now; "" before a key is loaded.
func (n *DPoPNonces) Current(now time.Time) string {
	s := n.secret()
	if s == nil {
		return ""
	}
	return n.at(s, now.UnixNano()/int64(n.step))
}

// Valid reports whether s is the current or the previous step's nonce,
// or the next one: a node whose clock is a little ahead hands that out
// at a step's end, and only the secret's holders can make it.
func (n *DPoPNonces) Valid(s string, now time.Time) bool {
	secret := n.secret()
	if secret == nil {
		return false
	}
	step := now.UnixNano() / int64(n.step)
	for _, st := range []int64{step, step - 1, step + 1} {
		if hmac.Equal([]byte(s), []byte(n.at(secret, st))) {
			return true
		}
	}
	return false
}

// dpopReplay remembers proofs (by key and jti, whatever their target:
// a client never reuses a jti) until their iat leaves the window. It is
// bounded: when full of live entries it refuses new proofs rather than
// forget live ones, which would let a captured proof be replayed.
type dpopReplay struct {
	shards [16]replayShard
	max    int       // per shard
	born   time.Time // proofs spent before this are unknown to it
}

// processReplay is the replay cache every default verifier of this
// process shares: the token endpoint, userinfo and every gate, before
// and after any number of config reloads (which make new verifiers).
var processReplay = sync.OnceValue(func() *dpopReplay {
	return newDPoPReplay(DefaultDPoPReplayEntries, processStart)
})

// processStart is when this process began, as near as a package knows.
var processStart = time.Now()

type replayShard struct {
	mu        sync.Mutex
	seen      map[[16]byte]int64 // key hash → expiry (unix nanos)
	lastSweep int64
}

func newDPoPReplay(entries int, born time.Time) *dpopReplay {
	r := &dpopReplay{max: max(1, entries/16), born: born}
	for i := range r.shards {
		r.shards[i].seen = map[[16]byte]int64{}
	}
	return r
}

func (r *dpopReplay) add(jkt, jti string, expires, now time.Time) error {
	// SHA-256 of len(jkt) jkt len(jti) jti (lengths 4 bytes big endian),
	// built on the stack: a jkt is 43 bytes and a jti at most maxDPoPJTI.
	var buf [8 + 64 + maxDPoPJTI]byte
	b := binary.BigEndian.AppendUint32(buf[:0], uint32(len(jkt)))
	b = append(b, jkt...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(jti)))
	b = append(b, jti...)
	sum := sha256.Sum256(b)
	var k [16]byte
	copy(k[:], sum[:])
	sh := &r.shards[k[0]&15]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := now.UnixNano()
	if exp, ok := sh.seen[k]; ok && exp > t {
		return badProof("this proof was used already (jti replay)")
	}
	if len(sh.seen) >= r.max || t-sh.lastSweep > int64(time.Minute) {
		sh.lastSweep = t
		for key, exp := range sh.seen {
			if exp <= t {
				delete(sh.seen, key)
			}
		}
		if len(sh.seen) >= r.max {
			return &DPoPError{Code: ErrDPoPBusy, Reason: "too many DPoP proofs in flight; retry shortly"}
		}
	}
	sh.seen[k] = expires.UnixNano()
	return nil
}
