package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// vnow is the fixed clock of the verifier tests.
var vnow = time.Unix(1_700_000_000, 0)

// verifierFixture is a key ring on a fresh store and a verifier using it.
type verifierFixture struct {
	kr *KeyRing
	k  *Key
	v  *Verifier
}

func newVerifierFixture(t testing.TB, alg string) verifierFixture {
	t.Helper()
	kr, err := LoadKeyRing(context.Background(), openStore(t), alg, vnow)
	if err != nil {
		t.Fatalf("LoadKeyRing(%s): %v", alg, err)
	}
	v := testVerifier(kr, 30*time.Second, nil)
	return verifierFixture{kr: kr, k: kr.Current, v: v}
}

// claimsMap is a valid claim set at vnow; mod edits it (delete a key to
// drop a claim).
func claimsMap(mod func(map[string]any)) map[string]any {
	m := map[string]any{
		"iss": testIssuer, "sub": "c-basic", "aud": testRS,
		"exp": vnow.Add(5 * time.Minute).Unix(), "iat": vnow.Unix(),
		"jti": "jti-1", "client_id": "c-basic", "scope": "read",
	}
	if mod != nil {
		mod(m)
	}
	return m
}

// hdrMap is the header our keys put on access tokens; mod edits it.
func hdrMap(k *Key, mod func(map[string]any)) map[string]any {
	m := map[string]any{"alg": k.Alg.String(), "kid": k.ID, "typ": "at+jwt"}
	if mod != nil {
		mod(m)
	}
	return m
}

// wantReject asserts that Verify refuses tok with an ErrInvalidToken.
func wantReject(t *testing.T, v *Verifier, tok string) {
	t.Helper()
	c, err := v.Verify(tok, vnow)
	if err == nil {
		t.Fatalf("Verify accepted %.120q: %+v", tok, c)
	}
	if c != nil {
		t.Errorf("claims returned with an error")
	}
	t.Logf("refused: %v", err)
	if !errors.Is(err, ErrInvalidToken) {
		t.Errorf("err = %v, does not wrap ErrInvalidToken", err)
	}
	var te *TokenError
	if !errors.As(err, &te) || te.Reason == "" {
		t.Errorf("err = %#v, want a *TokenError with a reason", err)
	}
}

func wantAccept(t *testing.T, v *Verifier, tok string) *AccessClaims {
	t.Helper()
	c, err := v.Verify(tok, vnow)
	if err != nil {
		t.Fatalf("Verify refused a valid token: %v", err)
	}
	return c
}

func TestVerifyMinted(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	tok, err := f.k.MintAccessToken(NewAccessClaims(testIssuer, "c-basic", "c-basic",
		[]string{testRS, "https://other.test"}, []string{"read", "write"}, vnow, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c := wantAccept(t, f.v, tok)
	if c.Issuer != testIssuer || c.Subject != "c-basic" || c.ClientID != "c-basic" || c.ID == "" {
		t.Errorf("claims = %+v", c)
	}
	if !c.Audience.Contains(testRS) || !c.Audience.Contains("https://other.test") || c.Audience.Contains("x") {
		t.Errorf("aud = %v", c.Audience)
	}
	if got := c.Scopes(); len(got) != 2 || got[0] != "read" || got[1] != "write" {
		t.Errorf("Scopes() = %v", got)
	}
	if v, ok := c.Claim("client_id"); !ok || v != "c-basic" {
		t.Errorf("Claim(client_id) = %v, %v", v, ok)
	}
	if v, ok := c.Claim("exp"); !ok || v.(json.Number).String() != "1700000060" {
		t.Errorf("Claim(exp) = %#v", v)
	}
	if _, ok := c.Claim("nope"); ok {
		t.Error("Claim(nope) found")
	}
	// A token with no scope has no Scopes.
	tok2, _ := f.k.MintAccessToken(NewAccessClaims(testIssuer, "s", "c", []string{testRS}, nil, vnow, time.Minute))
	if c := wantAccept(t, f.v, tok2); c.Scopes() != nil {
		t.Errorf("Scopes() = %v, want nil", c.Scopes())
	}
	// application/at+jwt is the same type.
	wantAccept(t, f.v, signRaw(t, f.k, mustJSON(t, hdrMap(f.k, func(m map[string]any) { m["typ"] = "application/at+jwt" })),
		mustJSON(t, claimsMap(nil))))
}

func TestVerifyNoKeys(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	tok := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(nil)))
	wantReject(t, testVerifier(nil, 0, nil), tok)
}

// TestVerifyHostileHeaders covers RFC 8725 §3 (alg none, algorithm
// confusion, a hostile kid, jku and x5u, embedded jwk and x5c keys, crit,
// token confusion) and RFC 9068 §4.
func TestVerifyHostileHeaders(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	enc := base64.RawURLEncoding
	payload := mustJSON(t, claimsMap(nil))
	ourPub := f.k.public.(*ecdsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(ourPub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pubJWK, err := f.k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	jwkJSON, _ := json.Marshal(pubJWK)
	rawPoint, err := ourPub.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	// An attacker key, wrapped as a Key so signRaw can use it.
	atkPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	atk, err := newKey("ES256", atkPriv, vnow)
	if err != nil {
		t.Fatal(err)
	}
	atkJWK, _ := atk.PublicJWK()

	// jwxHS256 signs with jwx using HS256 and the given secret, with our kid.
	jwxHS256 := func(secret []byte) string {
		h := jws.NewHeaders()
		_ = h.Set(jws.KeyIDKey, f.k.ID)
		_ = h.Set(jws.TypeKey, "at+jwt")
		b, err := jws.Sign([]byte(payload), jws.WithKey(jwa.HS256(), secret, jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatalf("jws.Sign HS256: %v", err)
		}
		return string(b)
	}
	// hmacAs makes an HMAC-SHA256 signature under a header that claims alg.
	hmacAs := func(alg string, secret []byte) string {
		in := enc.EncodeToString([]byte(mustJSON(t, hdrMap(f.k, func(m map[string]any) { m["alg"] = alg })))) + "." +
			enc.EncodeToString([]byte(payload))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(in))
		return in + "." + enc.EncodeToString(mac.Sum(nil))
	}
	withHdr := func(mod func(map[string]any)) string {
		return signRaw(t, f.k, mustJSON(t, hdrMap(f.k, mod)), payload)
	}
	noneTok := func(mod func(map[string]any), sig string) string {
		h := hdrMap(f.k, func(m map[string]any) {
			m["alg"] = "none"
			if mod != nil {
				mod(m)
			}
		})
		return enc.EncodeToString([]byte(mustJSON(t, h))) + "." + enc.EncodeToString([]byte(payload)) + "." + sig
	}

	tests := []struct {
		name string
		tok  string
	}{
		{"A-01 alg none, empty signature", noneTok(nil, "")},
		{"A-01 alg none, no signature segment", strings.TrimSuffix(noneTok(nil, ""), ".")},
		{"A-01 alg None", noneTok(func(m map[string]any) { m["alg"] = "None" }, "")},
		{"A-01 alg none, real signature", noneTok(nil, strings.Split(withHdr(nil), ".")[2])},
		{"A-01 alg missing", withHdr(func(m map[string]any) { delete(m, "alg") })},
		{"A-02 HS256 keyed with DER", jwxHS256(der)},
		{"A-02 HS256 keyed with PEM", jwxHS256(pemBytes)},
		{"A-02 HS256 keyed with JWK", jwxHS256(jwkJSON)},
		{"A-02 HS256 keyed with raw point", jwxHS256(rawPoint)},
		{"A-02 HMAC under ES256 header", hmacAs("ES256", der)},
		{"A-02 HMAC under HS512 header", hmacAs("HS512", pemBytes)},
		{"alg case variant", withHdr(func(m map[string]any) { m["alg"] = "es256" })},
		{"alg of another EC curve", withHdr(func(m map[string]any) { m["alg"] = "ES384" })},
		{"alg as a number", withHdr(func(m map[string]any) { m["alg"] = 7 })},
		{"A-21 foreign key with our kid", signRaw(t, atk, mustJSON(t, hdrMap(f.k, nil)), payload)},
		{"A-05 embedded jwk of the signer", signRaw(t, atk, mustJSON(t, hdrMap(f.k, func(m map[string]any) { m["jwk"] = atkJWK })), payload)},
		{"A-04 jku to attacker", signRaw(t, atk, mustJSON(t, hdrMap(f.k, func(m map[string]any) { m["jku"] = "https://evil.test/jwks" })), payload)},
		{"A-04 x5u to attacker", signRaw(t, atk, mustJSON(t, hdrMap(atk, func(m map[string]any) { m["x5u"] = "https://evil.test/cert" })), payload)},
		{"unknown kid", signRaw(t, atk, mustJSON(t, hdrMap(atk, nil)), payload)},
		{"A-03 kid path traversal", withHdr(func(m map[string]any) { m["kid"] = "../../../../dev/null" })},
		{"A-03 kid SQL", withHdr(func(m map[string]any) { m["kid"] = "' OR '1'='1" })},
		{"A-03 kid NUL", withHdr(func(m map[string]any) { m["kid"] = "\u0000" })},
		{"A-03 kid long", withHdr(func(m map[string]any) { m["kid"] = strings.Repeat("k", 5000) })},
		{"A-03 kid prefix of ours", withHdr(func(m map[string]any) { m["kid"] = f.k.ID[:10] })},
		{"kid missing", withHdr(func(m map[string]any) { delete(m, "kid") })},
		{"kid empty", withHdr(func(m map[string]any) { m["kid"] = "" })},
		{"kid as a number", withHdr(func(m map[string]any) { m["kid"] = 1 })},
		{"AT-05 typ JWT", withHdr(func(m map[string]any) { m["typ"] = "JWT" })},
		{"AT-05 typ missing", withHdr(func(m map[string]any) { delete(m, "typ") })},
		{"AT-05 typ empty", withHdr(func(m map[string]any) { m["typ"] = "" })},
		{"AT-05 typ dpop+jwt", withHdr(func(m map[string]any) { m["typ"] = "dpop+jwt" })},
		{"AT-05 typ client-authentication+jwt", withHdr(func(m map[string]any) { m["typ"] = "client-authentication+jwt" })},
		{"AT-05 typ with trailing space", withHdr(func(m map[string]any) { m["typ"] = "at+jwt " })},
		{"AT-05 typ as array", withHdr(func(m map[string]any) { m["typ"] = []string{"at+jwt"} })},
		{"A-06 crit exp", withHdr(func(m map[string]any) { m["crit"] = []string{"exp"} })},
		{"A-06 crit unknown", withHdr(func(m map[string]any) { m["crit"] = []string{"x-ext"}; m["x-ext"] = 1 })},
		{"A-06 crit empty", withHdr(func(m map[string]any) { m["crit"] = []string{} })},
		{"A-06 crit null", withHdr(func(m map[string]any) { m["crit"] = nil })},
		{"b64 false", withHdr(func(m map[string]any) { m["b64"] = false })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantReject(t, f.v, tt.tok) })
	}

	// An ID-token-like JWT signed by our own key: typ JWT, OIDC claims.
	t.Run("AT-05 ID token", func(t *testing.T) {
		idt := signRaw(t, f.k, mustJSON(t, map[string]any{"alg": "ES256", "kid": f.k.ID, "typ": "JWT"}),
			mustJSON(t, map[string]any{"iss": testIssuer, "sub": "alice", "aud": "c-web", "exp": vnow.Unix() + 60,
				"iat": vnow.Unix(), "nonce": "n", "jti": "j", "client_id": "c-web"}))
		wantReject(t, f.v, idt)
	})
	// The control: the same construction with our header passes, so the
	// cases above fail for the reason they name.
	t.Run("control", func(t *testing.T) { wantAccept(t, f.v, withHdr(nil)) })
}

// TestVerifyAlgPinnedToKey signs with our own RSA key under the other RSA
// algorithm: the key's registered algorithm wins.
func TestVerifyAlgPinnedToKey(t *testing.T) {
	t.Parallel()
	for _, pair := range [][2]string{{"RS256", "PS256"}, {"PS256", "RS256"}} {
		t.Run(pair[0]+" key, "+pair[1]+" token", func(t *testing.T) {
			f := newVerifierFixture(t, pair[0])
			other, err := newKey(pair[1], f.k.private, vnow)
			if err != nil {
				t.Fatal(err)
			}
			if other.ID != f.k.ID {
				t.Fatal("same key material should give the same kid")
			}
			wantReject(t, f.v, signRaw(t, other, mustJSON(t, hdrMap(other, nil)), mustJSON(t, claimsMap(nil))))
			wantAccept(t, f.v, signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(nil))))
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	now := vnow.Unix()
	tests := []struct {
		name   string
		mod    func(map[string]any)
		accept bool
	}{
		{"valid", nil, true},
		{"wrong iss", func(m map[string]any) { m["iss"] = "https://evil.test" }, false},
		{"iss with trailing slash", func(m map[string]any) { m["iss"] = testIssuer + "/" }, false},
		{"iss upper case", func(m map[string]any) { m["iss"] = "HTTPS://as.test" }, false},
		{"iss empty", func(m map[string]any) { m["iss"] = "" }, false},
		{"iss missing", func(m map[string]any) { delete(m, "iss") }, false},
		{"iss as array", func(m map[string]any) { m["iss"] = []string{testIssuer} }, false},
		{"sub missing", func(m map[string]any) { delete(m, "sub") }, false},
		{"jti missing", func(m map[string]any) { delete(m, "jti") }, false},
		{"client_id missing", func(m map[string]any) { delete(m, "client_id") }, false},
		{"aud missing", func(m map[string]any) { delete(m, "aud") }, false},
		{"aud empty array", func(m map[string]any) { m["aud"] = []string{} }, false},
		{"aud as number", func(m map[string]any) { m["aud"] = 1 }, false},
		{"aud array", func(m map[string]any) { m["aud"] = []string{testRS, "https://b"} }, true},
		{"scope as array", func(m map[string]any) { m["scope"] = []string{"read"} }, false},
		{"exp missing", func(m map[string]any) { delete(m, "exp") }, false},
		{"exp zero", func(m map[string]any) { m["exp"] = 0 }, false},
		{"exp null", func(m map[string]any) { m["exp"] = nil }, false},
		{"expired just now (own tokens get no leeway)", func(m map[string]any) { m["exp"] = now }, false},
		{"expired within leeway", func(m map[string]any) { m["exp"] = now - 30 }, false},
		{"expires next second", func(m map[string]any) { m["exp"] = now + 1 }, true},
		{"expired beyond leeway", func(m map[string]any) { m["exp"] = now - 31 }, false},
		{"AT-06 expired 2 min ago", func(m map[string]any) { m["exp"] = now - 120 }, false},
		{"A-11 exp as string", func(m map[string]any) { m["exp"] = "9999999999" }, false},
		{"A-11 exp 1e20", func(m map[string]any) { m["exp"] = json.Number("1e20") }, false},
		{"A-11 exp 1e999", func(m map[string]any) { m["exp"] = json.Number("1e999") }, false},
		{"A-11 exp negative", func(m map[string]any) { m["exp"] = -1 }, false},
		{"A-11 exp fractional", func(m map[string]any) { m["exp"] = 1.5e9 + 0.5 }, false},
		{"A-11 exp above int64", func(m map[string]any) { m["exp"] = json.Number("9223372036854775808") }, false},
		{"A-11 exp bool", func(m map[string]any) { m["exp"] = true }, false},
		{"nbf now", func(m map[string]any) { m["nbf"] = now }, true},
		{"nbf within leeway", func(m map[string]any) { m["nbf"] = now + 30 }, true},
		{"nbf in future", func(m map[string]any) { m["nbf"] = now + 31 }, false},
		{"A-11 nbf object", func(m map[string]any) { m["nbf"] = map[string]any{"a": 1} }, false},
		{"A-11 nbf string", func(m map[string]any) { m["nbf"] = "0" }, false},
		{"iat within leeway", func(m map[string]any) { m["iat"] = now + 30 }, true},
		{"A-11 iat in future", func(m map[string]any) { m["iat"] = now + 31 }, false},
		{"A-11 iat far future", func(m map[string]any) { m["iat"] = now + 86400*365 }, false},
		{"A-11 iat string", func(m map[string]any) { m["iat"] = "1700000000" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(tt.mod)))
			if tt.accept {
				wantAccept(t, f.v, tok)
			} else {
				wantReject(t, f.v, tok)
			}
		})
	}
	// Payloads that are not a JSON object at all, under a real signature.
	for _, p := range []string{"", "null", "[]", `"x"`, "{", `{"iss":` + strings.Repeat("[", 10000)} {
		wantReject(t, f.v, signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), p))
	}
}

// TestVerifyLeewayIsConfigurable checks the nbf boundary moves with
// Leeway, and that no leeway ever extends exp (issue 10 §4: our own
// tokens' expiry is exact).
func TestVerifyLeewayIsConfigurable(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	tok := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(func(m map[string]any) { m["nbf"] = vnow.Unix() + 5 })))
	strict := testVerifier(f.kr, 0, nil)
	wantReject(t, strict, tok)
	wantAccept(t, f.v, tok)
	expired := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(func(m map[string]any) { m["exp"] = vnow.Unix() - 5 })))
	wantReject(t, f.v, expired)
}

func TestVerifyMalformed(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	good := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(nil)))
	parts := strings.Split(good, ".")
	other := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)), mustJSON(t, claimsMap(func(m map[string]any) { m["sub"] = "admin" })))
	otherParts := strings.Split(other, ".")
	ecPriv := f.k.private.(*ecdsa.PrivateKey)

	jsonSer := func(extra bool) string {
		h := jws.NewHeaders()
		_ = h.Set(jws.KeyIDKey, f.k.ID)
		_ = h.Set(jws.TypeKey, "at+jwt")
		opts := []jws.SignOption{jws.WithJSON(), jws.WithKey(jwa.ES256(), ecPriv, jws.WithProtectedHeaders(h))}
		if extra {
			atk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			opts = append(opts, jws.WithKey(jwa.ES256(), atk, jws.WithProtectedHeaders(h)))
		}
		b, err := jws.Sign([]byte(mustJSON(t, claimsMap(nil))), opts...)
		if err != nil {
			t.Fatalf("jws.Sign JSON: %v", err)
		}
		return string(b)
	}

	tests := []struct{ name, tok string }{
		{"empty", ""},
		{"dot", "."},
		{"two dots", ".."},
		{"three dots", "..."},
		{"abc", "a.b.c"},
		{"Bearer prefix", "Bearer " + good},
		{"leading space", " " + good},
		{"only header", parts[0]},
		{"header and payload", parts[0] + "." + parts[1]},
		{"four segments", good + ".x"},
		{"five segments (JWE shape)", good + ".x.y"},
		{"empty payload segment", parts[0] + ".." + parts[2]},
		{"payload swapped", parts[0] + "." + otherParts[1] + "." + parts[2]},
		{"signature from another token", parts[0] + "." + parts[1] + "." + otherParts[2]},
		{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:40]},
		{"signature empty", parts[0] + "." + parts[1] + "."},
		{"signature doubled", good + parts[2]},
		{"header padded base64", base64.URLEncoding.EncodeToString([]byte(mustJSON(t, hdrMap(f.k, nil)))) + "." + parts[1] + "." + parts[2]},
		{"header not base64", "!!!." + parts[1] + "." + parts[2]},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("not json")) + "." + parts[1] + "." + parts[2]},
		{"header JSON array", base64.RawURLEncoding.EncodeToString([]byte("[]")) + "." + parts[1] + "." + parts[2]},
		{"header null", base64.RawURLEncoding.EncodeToString([]byte("null")) + "." + parts[1] + "." + parts[2]},
		{"payload not base64", parts[0] + ".!!!." + parts[2]},
		{"A-08 JWS JSON serialization", jsonSer(false)},
		{"A-08 JWS JSON, two signatures", jsonSer(true)},
		{"JWE-like", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"},
		{"NUL", "\x00"},
		{"binary", "\xff\xfe\xfd.\x00\x01.\x02"},
		{"unicode", "ü.ö.ä"},
		{"huge", strings.Repeat("a", 1<<20)},
		{"huge with dots", strings.Repeat("a.", 1<<16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantReject(t, f.v, tt.tok) })
	}
}

// TestVerifySizeCap: a token above MaxTokenBytes is refused before any
// parsing, even with a valid signature; one at the cap is accepted.
func TestVerifySizeCap(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t, "ES256")
	var under, over string
	for pad := 5000; over == ""; pad++ {
		tok := signRaw(t, f.k, mustJSON(t, hdrMap(f.k, nil)),
			mustJSON(t, claimsMap(func(m map[string]any) { m["pad"] = strings.Repeat("p", pad) })))
		if len(tok) <= MaxTokenBytes {
			under = tok
		} else {
			over = tok
		}
	}
	if under == "" || len(under) < MaxTokenBytes-3 {
		t.Fatalf("could not build a token just under the cap (len %d)", len(under))
	}
	wantAccept(t, f.v, under)
	wantReject(t, f.v, over)
	if _, err := f.v.Verify(over, vnow); !strings.Contains(err.Error(), "too large") {
		t.Errorf("err = %v, want the size reason", err)
	}
}

// TestSigningAlgsRoundTrip mints and verifies with every supported
// algorithm and checks that jwx agrees using the published JWK.
func TestSigningAlgsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range SigningAlgs {
		t.Run(alg, func(t *testing.T) {
			f := newVerifierFixture(t, alg)
			if f.k.Alg.String() != alg {
				t.Fatalf("Current.Alg = %s", f.k.Alg)
			}
			if f.k.Created != vnow {
				t.Errorf("Created = %v, want %v", f.k.Created, vnow)
			}
			switch alg {
			case "ES256":
				if k, ok := f.k.private.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
					t.Errorf("key is %T", f.k.private)
				}
			case "EdDSA":
				if _, ok := f.k.private.(ed25519.PrivateKey); !ok {
					t.Errorf("key is %T", f.k.private)
				}
			default:
				if k, ok := f.k.private.(*rsa.PrivateKey); !ok || k.N.BitLen() < 2048 {
					t.Errorf("key is %T", f.k.private)
				}
			}
			tok, err := f.k.MintAccessToken(NewAccessClaims(testIssuer, "c", "c", []string{testRS}, []string{"read"}, vnow, time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			var hdr map[string]any
			hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			if err := json.Unmarshal(hb, &hdr); err != nil {
				t.Fatal(err)
			}
			if hdr["alg"] != alg || hdr["kid"] != f.k.ID || hdr["typ"] != "at+jwt" {
				t.Errorf("header = %v", hdr)
			}
			c := wantAccept(t, f.v, tok)
			if c.Subject != "c" {
				t.Errorf("sub = %q", c.Subject)
			}
			pub, err := f.k.PublicJWK()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jws.Verify([]byte(tok), jws.WithKey(f.k.Alg, pub)); err != nil {
				t.Errorf("jwx does not verify: %v", err)
			}
			// Tampering with one payload byte breaks it.
			p := strings.Split(tok, ".")
			b := []byte(p[1])
			b[5] ^= 1
			wantReject(t, f.v, p[0]+"."+string(b)+"."+p[2])
		})
	}
}

func TestLoadKeyRingErrors(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"", "none", "HS256", "ES384", "ES512", "RS512", "es256", "Ed25519"} {
		if _, err := LoadKeyRing(context.Background(), openStore(t), alg, vnow); err == nil {
			t.Errorf("LoadKeyRing(%q) succeeded", alg)
		} else if !strings.Contains(err.Error(), "signing_alg") {
			t.Errorf("LoadKeyRing(%q): %v does not name signing_alg", alg, err)
		}
	}
	put := func(t *testing.T, st storage.Store, id string, v []byte) {
		t.Helper()
		if err := st.Update(context.Background(), func(tx storage.Tx) error {
			return tx.Put(storage.KindKeys, id, storage.Record{Value: v})
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("unreadable key", func(t *testing.T) {
		st := openStore(t)
		put(t, st, "bad", []byte("{not json"))
		_, err := LoadKeyRing(context.Background(), st, "ES256", vnow)
		if err == nil || !strings.Contains(err.Error(), "unreadable") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("thumbprint mismatch", func(t *testing.T) {
		st := openStore(t)
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k, _ := newKey("ES256", priv, vnow)
		b, _ := k.marshal()
		var sk storedKey
		_ = json.Unmarshal(b, &sk)
		sk.ID = "forged"
		b, _ = json.Marshal(sk)
		put(t, st, "forged", b)
		_, err := LoadKeyRing(context.Background(), st, "ES256", vnow)
		if err == nil || !strings.Contains(err.Error(), "thumbprint") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("public key only", func(t *testing.T) {
		st := openStore(t)
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, _ := jwk.Import(priv.Public())
		raw, _ := json.Marshal(pub)
		b, _ := json.Marshal(storedKey{ID: "pub", Alg: "ES256", Created: vnow, JWK: raw})
		put(t, st, "pub", b)
		_, err := LoadKeyRing(context.Background(), st, "ES256", vnow)
		if err == nil || !strings.Contains(err.Error(), "not a private signing key") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestKeyRingPersistence: the key survives a restart (the store is closed
// and reopened), tokens minted before verify after, and a change of
// signing_alg adds a key while the old one keeps verifying.
func TestKeyRingPersistence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "oauth.db")
	open := func() *bolt.Store {
		st, err := bolt.Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	st := open()
	kr1, err := LoadKeyRing(ctx, st, "ES256", vnow)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := kr1.Current.MintAccessToken(NewAccessClaims(testIssuer, "c", "c", []string{testRS}, nil, vnow, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open()
	defer st.Close()
	kr2, err := LoadKeyRing(ctx, st, "ES256", vnow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if kr2.Current.ID != kr1.Current.ID {
		t.Errorf("kid changed across restart: %s -> %s", kr1.Current.ID, kr2.Current.ID)
	}
	if !kr2.Current.Created.Equal(vnow) {
		t.Errorf("Created = %v, want the original %v", kr2.Current.Created, vnow)
	}
	v := testVerifier(kr2, 30*time.Second, nil)
	wantAccept(t, v, tok)

	// Switching to EdDSA creates a second key and keeps the first.
	kr3, err := LoadKeyRing(ctx, st, "EdDSA", vnow.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if kr3.Current.Alg.String() != "EdDSA" || kr3.Current.ID == kr1.Current.ID {
		t.Errorf("Current = %s %s", kr3.Current.Alg, kr3.Current.ID)
	}
	all := kr3.All()
	if len(all) != 2 || all[0] != kr3.Current || all[1].ID != kr1.Current.ID {
		t.Errorf("All() = %v, want [EdDSA key, ES256 key]", all)
	}
	v.keys.set(kr3)
	wantAccept(t, v, tok)
	if _, ok := kr3.Lookup("nope"); ok {
		t.Error("Lookup of an unknown kid succeeded")
	}

	// Going back to ES256 reuses the stored ES256 key.
	kr4, err := LoadKeyRing(ctx, st, "ES256", vnow.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if kr4.Current.ID != kr1.Current.ID || len(kr4.All()) != 2 {
		t.Errorf("ES256 key not reused: %s, %d keys", kr4.Current.ID, len(kr4.All()))
	}
}

// TestLoadKeyRingConcurrent: two configs starting at once on an empty
// store agree on one key.
func TestLoadKeyRingConcurrent(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kr, err := LoadKeyRing(context.Background(), st, "ES256", vnow)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = kr.Current.ID
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("kids differ: %v", ids)
		}
	}
	count := 0
	_ = st.View(context.Background(), func(tx storage.Tx) error {
		return tx.ForEach(storage.KindKeys, func(string, storage.Record) error { count++; return nil })
	})
	if count != 1 {
		t.Errorf("%d keys stored, want 1", count)
	}
}

func TestAudienceJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Audience
		wantErr bool
	}{
		{`"a"`, Audience{"a"}, false},
		{`["a","b"]`, Audience{"a", "b"}, false},
		{`[]`, Audience{}, false},
		{`1`, nil, true},
		{`{"a":1}`, nil, true},
		{`[1]`, nil, true},
		{`["a",1]`, nil, true},
	}
	for _, tt := range tests {
		var a Audience
		err := json.Unmarshal([]byte(tt.in), &a)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.in, err)
			continue
		}
		if !tt.wantErr && (len(a) != len(tt.want) || (len(a) > 0 && a[0] != tt.want[0])) {
			t.Errorf("%s: got %v, want %v", tt.in, a, tt.want)
		}
	}
	for _, tt := range []struct {
		a    Audience
		want string
	}{{Audience{"a"}, `"a"`}, {Audience{"a", "b"}, `["a","b"]`}} {
		b, err := json.Marshal(tt.a)
		if err != nil || string(b) != tt.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tt.a, b, err, tt.want)
		}
	}
}
