package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

const dpopTarget = "https://as.test/oauth/token"

// dpopKey is a client's proof key.
type dpopKey struct {
	priv   any
	pubJWK map[string]any
	jkt    string
}

func newDPoPKey(t testing.TB, priv any) *dpopKey {
	t.Helper()
	k, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(pub)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	jkt, err := JWKThumbprint(b)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{priv: priv, pubJWK: m, jkt: jkt}
}

func ecKey(t testing.TB, c elliptic.Curve) *dpopKey {
	p, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newDPoPKey(t, p)
}

// privJWK is the key's JWK with its private members.
func (k *dpopKey) privJWK(t testing.TB) map[string]any {
	j, err := jwk.Import(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// signProof makes a proof: header and claims as given, signed with
// jwx's signer for alg under signKey.
func signProof(t testing.TB, alg string, signKey any, hdr, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	input := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		t.Fatalf("alg %s", alg)
	}
	s, err := jws.SignerFor(a)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(signKey, []byte(input))
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// proof makes a valid ES256 proof for POST dpopTarget at now, changed by
// the mutators.
func (k *dpopKey) proof(t testing.TB, alg string, now time.Time, mutH func(map[string]any), mutC func(map[string]any)) string {
	h := map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": k.pubJWK}
	c := map[string]any{"jti": RandomID(12), "htm": "POST", "htu": dpopTarget, "iat": now.Unix()}
	if mutH != nil {
		mutH(h)
	}
	if mutC != nil {
		mutC(c)
	}
	return signProof(t, alg, k.priv, h, c)
}

func hdr(vals ...string) http.Header {
	h := http.Header{}
	for _, v := range vals {
		h.Add("DPoP", v)
	}
	return h
}

func athOf(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

func TestDPoPVerifyRefusals(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	a := ecKey(t, elliptic.P256())
	b := ecKey(t, elliptic.P256())
	secret := make([]byte, 32)
	nonces, err := NewDPoPNonces(secret, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	smallProof := func() string {
		// jwx will not make a 1024-bit key's JWK or signature, so crypto/rsa does.
		k, _ := rsa.GenerateKey(rand.Reader, 1024)
		enc := base64.RawURLEncoding
		j := map[string]any{"kty": "RSA", "n": enc.EncodeToString(k.N.Bytes()), "e": "AQAB"}
		hb, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": j})
		cb, _ := json.Marshal(map[string]any{"jti": "x", "htm": "POST", "htu": dpopTarget, "iat": now.Unix()})
		in := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
		d := sha256.Sum256([]byte(in))
		sig, _ := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
		return in + "." + enc.EncodeToString(sig)
	}
	valid := func() string { return a.proof(t, "ES256", now, nil, nil) }
	setC := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	delC := func(k string) func(map[string]any) { return func(m map[string]any) { delete(m, k) } }
	hsProof := func() string {
		h := map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": a.pubJWK}
		return signProof(t, "HS256", []byte("0123456789abcdef0123456789abcdef"), h, map[string]any{"jti": "x", "htm": "POST", "htu": dpopTarget, "iat": now.Unix()})
	}
	noneProof := func() string {
		enc := base64.RawURLEncoding
		hb, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": a.pubJWK})
		cb, _ := json.Marshal(map[string]any{"jti": "x", "htm": "POST", "htu": dpopTarget, "iat": now.Unix()})
		return enc.EncodeToString(hb) + "." + enc.EncodeToString(cb) + "."
	}
	cases := []struct {
		name   string
		header http.Header
		check  DPoPCheck
		nonces bool
		want   error
	}{
		{"DPOP-01 missing", hdr(), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-01 two headers", hdr(valid(), valid()), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-02 two parts", hdr("a.b"), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-02 JWE (five parts)", hdr("a.b.c.d.e"), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-02 not base64", hdr("!!.b.c"), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-02 too large", hdr(strings.Repeat("a", 9000) + ".b.c"), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-03 no jti", hdr(a.proof(t, "ES256", now, nil, delC("jti"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-03 no htm", hdr(a.proof(t, "ES256", now, nil, delC("htm"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-03 no htu", hdr(a.proof(t, "ES256", now, nil, delC("htu"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-03 no iat", hdr(a.proof(t, "ES256", now, nil, delC("iat"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-03 iat a string", hdr(a.proof(t, "ES256", now, nil, setC("iat", "1800000000"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-03 no ath with a token", hdr(valid()), DPoPCheck{AccessToken: "tok"}, false, ErrInvalidDPoPProof},
		{"DPOP-13 ath of another token", hdr(a.proof(t, "ES256", now, nil, setC("ath", athOf("other")))), DPoPCheck{AccessToken: "tok"}, false, ErrInvalidDPoPProof},
		{"DPOP-03 no nonce when required", hdr(valid()), DPoPCheck{}, true, ErrUseDPoPNonce},
		{"DPOP-10 stale nonce", hdr(a.proof(t, "ES256", now, nil, setC("nonce", nonces.Current(now.Add(-3*time.Minute))))), DPoPCheck{}, true, ErrUseDPoPNonce},
		{"DPOP-10 forged nonce", hdr(a.proof(t, "ES256", now, nil, setC("nonce", "abc"))), DPoPCheck{}, true, ErrUseDPoPNonce},
		{"DPOP-04 typ JWT", hdr(a.proof(t, "ES256", now, setC("typ", "JWT"), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-04 no typ", hdr(a.proof(t, "ES256", now, delC("typ"), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-05 HS256", hdr(hsProof()), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-05 none", hdr(noneProof()), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-05 alg not matching the key (RS256 header, EC key)", hdr(a.proof(t, "ES256", now, setC("alg", "RS256"), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-06 signed by B, jwk A", hdr(signProof(t, "ES256", b.priv, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": a.pubJWK}, map[string]any{"jti": "x", "htm": "POST", "htu": dpopTarget, "iat": now.Unix()})), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-06 no jwk", hdr(a.proof(t, "ES256", now, delC("jwk"), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-06 symmetric jwk", hdr(a.proof(t, "ES256", now, setC("jwk", map[string]any{"kty": "oct", "k": "AAAA"}), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-06 RSA under 2048 bits", hdr(smallProof()), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-06 crit header", hdr(a.proof(t, "ES256", now, setC("crit", []string{"exp"}), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-07 private jwk", hdr(a.proof(t, "ES256", now, setC("jwk", a.privJWK(t)), nil)), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-08 htm GET on POST", hdr(a.proof(t, "ES256", now, nil, setC("htm", "GET"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-08 htm lower case", hdr(a.proof(t, "ES256", now, nil, setC("htm", "post"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 other host", hdr(a.proof(t, "ES256", now, nil, setC("htu", "https://other.test/oauth/token"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 other path", hdr(a.proof(t, "ES256", now, nil, setC("htu", "https://as.test/oauth/revoke"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 http for https", hdr(a.proof(t, "ES256", now, nil, setC("htu", "http://as.test/oauth/token"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 other port", hdr(a.proof(t, "ES256", now, nil, setC("htu", "https://as.test:8443/oauth/token"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 path case", hdr(a.proof(t, "ES256", now, nil, setC("htu", "https://as.test/OAuth/token"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 escaped slash", hdr(a.proof(t, "ES256", now, nil, setC("htu", "https://as.test/oauth%2Ftoken"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 relative", hdr(a.proof(t, "ES256", now, nil, setC("htu", "/oauth/token"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-09 userinfo", hdr(a.proof(t, "ES256", now, nil, setC("htu", "https://u@as.test/oauth/token"))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-11 iat 600 s old", hdr(a.proof(t, "ES256", now, nil, setC("iat", now.Unix()-600))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-11 iat 600 s ahead", hdr(a.proof(t, "ES256", now, nil, setC("iat", now.Unix()+600))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-11 iat 10 s ahead (leeway 5 s)", hdr(a.proof(t, "ES256", now, nil, setC("iat", now.Unix()+10))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-11 iat 70 s old (window 60 s + 5 s)", hdr(a.proof(t, "ES256", now, nil, setC("iat", now.Unix()-70))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-11 iat huge", hdr(a.proof(t, "ES256", now, nil, setC("iat", 1e300))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"DPOP-11 iat negative", hdr(a.proof(t, "ES256", now, nil, setC("iat", -1))), DPoPCheck{}, false, ErrInvalidDPoPProof},
		{"jti too long", hdr(a.proof(t, "ES256", now, nil, setC("jti", strings.Repeat("j", 300)))), DPoPCheck{}, false, ErrInvalidDPoPProof},
	}
	for _, tc := range cases {
		// Cold: an empty proof header cache. Warm: key A's header, and
		// the case's own if a proof with it verified, already cached;
		// the refusal must be the same.
		for _, warm := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/warm=%v", tc.name, warm), func(t *testing.T) {
				o := DPoPOptions{Now: clock}
				if tc.nonces {
					o.Nonces = nonces
				}
				v, err := NewDPoPVerifier(o)
				if err != nil {
					t.Fatal(err)
				}
				v.keys = newDPoPKeyCache(8)
				c := tc.check
				c.Method, c.URL = "POST", dpopTarget
				if warm {
					_, _ = v.Verify(hdr(valid()), c)
					_, _ = v.Verify(tc.header, c)
					if v.keys.len() == 0 {
						t.Fatal("the warm-up cached no header")
					}
				}
				p, err := v.Verify(tc.header, c)
				if !errors.Is(err, tc.want) {
					t.Fatalf("Verify = %v, %v; want %v", p, err, tc.want)
				}
				var de *DPoPError
				if !errors.As(err, &de) || de.Reason == "" {
					t.Fatalf("error %v is not a *DPoPError with a reason", err)
				}
			})
		}
	}
}

func TestDPoPVerifyAccepts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	// Made an hour before now, so a proof of the last minute is newer
	// than the verifier's replay cache.
	cur := now.Add(-time.Hour)
	clock := func() time.Time { return cur }
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	keys := map[string]*dpopKey{
		"ES256": ecKey(t, elliptic.P256()),
		"ES384": ecKey(t, elliptic.P384()),
		"EdDSA": newDPoPKey(t, edPriv),
		"RS256": newDPoPKey(t, rsaKey),
		"PS256": newDPoPKey(t, rsaKey),
	}
	a := keys["ES256"]
	setC := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	v, err := NewDPoPVerifier(DPoPOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	cur = now
	check := DPoPCheck{Method: "POST", URL: dpopTarget}
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"} {
		p, err := v.Verify(hdr(keys[alg].proof(t, alg, now, nil, nil)), check)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if p.JKT != keys[alg].jkt {
			t.Fatalf("%s: jkt %s, want %s", alg, p.JKT, keys[alg].jkt)
		}
	}
	// DPOP-09: the accepted normalisations.
	for _, htu := range []string{
		dpopTarget + "?x=1",
		dpopTarget + "#frag",
		"https://AS.TEST:443/oauth/token",
		"HTTPS://as.test/oauth/token",
		"https://as.test/oauth/./token",
		"https://as.test/oauth/x/../token",
		"https://as.test/%6Fauth/token",
		"https://as.test:443/oauth/tok%65n?y#z",
	} {
		if _, err := v.Verify(hdr(a.proof(t, "ES256", now, nil, setC("htu", htu))), check); err != nil {
			t.Errorf("htu %q: %v", htu, err)
		}
	}
	// The configured URL is normalised too.
	if _, err := v.Verify(hdr(a.proof(t, "ES256", now, nil, nil)), DPoPCheck{Method: "POST", URL: "https://AS.test:443/oauth/token"}); err != nil {
		t.Errorf("configured URL with upper case and port: %v", err)
	}
	// iat inside the window and leeway, or up to the leeway ahead;
	// fractional iat.
	for _, iat := range []any{now.Unix() - 64, now.Unix() + 4, float64(now.Unix()) + 0.5} {
		if _, err := v.Verify(hdr(a.proof(t, "ES256", now, nil, setC("iat", iat))), check); err != nil {
			t.Errorf("iat %v: %v", iat, err)
		}
	}
	// ath with the access token.
	if _, err := v.Verify(hdr(a.proof(t, "ES256", now, nil, setC("ath", athOf("tok")))), DPoPCheck{Method: "POST", URL: dpopTarget, AccessToken: "tok"}); err != nil {
		t.Errorf("ath: %v", err)
	}
	// Other claims and header members are ignored.
	if _, err := v.Verify(hdr(a.proof(t, "ES256", now, setC("kid", "k1"), setC("extra", true))), check); err != nil {
		t.Errorf("extra members: %v", err)
	}
}

// DPOP-12: a proof is single use per target, within its window; a refused
// proof is not remembered.
func TestDPoPReplay(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v, _ := NewDPoPVerifier(DPoPOptions{Now: func() time.Time { return now }})
	a := ecKey(t, elliptic.P256())
	check := DPoPCheck{Method: "POST", URL: dpopTarget}
	p := a.proof(t, "ES256", now, nil, nil)
	if _, err := v.Verify(hdr(p), DPoPCheck{Method: "GET", URL: dpopTarget}); err == nil {
		t.Fatal("GET accepted")
	}
	if _, err := v.Verify(hdr(p), check); err != nil {
		t.Fatalf("first use after a refusal: %v", err)
	}
	if _, err := v.Verify(hdr(p), check); !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("replay: %v", err)
	}
	// The same jti under another key is another proof.
	b := ecKey(t, elliptic.P256())
	var jti string
	parts := strings.Split(p, ".")
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(cb, &c)
	jti = c["jti"].(string)
	if _, err := v.Verify(hdr(b.proof(t, "ES256", now, nil, func(m map[string]any) { m["jti"] = jti })), check); err != nil {
		t.Fatalf("same jti, other key: %v", err)
	}
	// A full cache refuses rather than forgets.
	small, _ := NewDPoPVerifier(DPoPOptions{Now: func() time.Time { return now }, ReplayEntries: 16})
	var busy bool
	for range 200 {
		_, err := small.Verify(hdr(a.proof(t, "ES256", now, nil, nil)), check)
		if errors.Is(err, ErrDPoPBusy) {
			busy = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !busy {
		t.Fatal("a replay cache of 16 took 200 live proofs")
	}
	// Once the proofs are out of the window they are forgotten.
	now = now.Add(2 * time.Minute)
	if _, err := small.Verify(hdr(a.proof(t, "ES256", now, nil, nil)), check); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestDPoPNonces(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n, err := NewDPoPNonces(make([]byte, 32), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewDPoPNonces(make([]byte, 16), 0); err == nil {
		t.Fatal("short secret accepted")
	}
	cur := n.Current(now)
	if !n.Valid(cur, now) || !n.Valid(cur, now.Add(time.Minute)) || n.Valid(cur, now.Add(2*time.Minute+time.Second)) {
		t.Fatal("nonce steps")
	}
	// The next step's nonce, from a node whose clock is ahead, passes;
	// the one after it does not.
	if !n.Valid(n.Current(now.Add(time.Minute)), now) || n.Valid(n.Current(now.Add(2*time.Minute)), now) {
		t.Fatal("a nonce of the next step refused, or of the one after accepted")
	}
	other, _ := NewDPoPNonces(append(make([]byte, 31), 1), time.Minute)
	if other.Valid(cur, now) {
		t.Fatal("a nonce of another secret accepted")
	}
	v, _ := NewDPoPVerifier(DPoPOptions{Now: func() time.Time { return now }, Nonces: n})
	a := ecKey(t, elliptic.P256())
	if _, err := v.Verify(hdr(a.proof(t, "ES256", now, nil, func(m map[string]any) { m["nonce"] = cur })), DPoPCheck{Method: "POST", URL: dpopTarget}); err != nil {
		t.Fatalf("current nonce: %v", err)
	}
}

func TestDPoPVerifierOptions(t *testing.T) {
	for _, bad := range [][]string{{"HS256"}, {"none"}, {"ES256", "RSA-OAEP"}} {
		if _, err := NewDPoPVerifier(DPoPOptions{Algs: bad}); err == nil {
			t.Errorf("algs %v accepted", bad)
		}
	}
	v, err := NewDPoPVerifier(DPoPOptions{Algs: []string{"ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Algs(); len(got) != 1 || got[0] != "ES256" {
		t.Fatalf("Algs = %v", got)
	}
	// An algorithm off the allowlist is refused.
	now := time.Now()
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := v.Verify(hdr(newDPoPKey(t, edPriv).proof(t, "EdDSA", now, nil, nil)), DPoPCheck{Method: "POST", URL: dpopTarget}); !errors.Is(err, ErrInvalidDPoPProof) {
		t.Fatalf("EdDSA off the list: %v", err)
	}
}

func TestNormalizeHTU(t *testing.T) {
	for in, want := range map[string]string{
		"https://AS.test:443":            "https://as.test/",
		"http://as.test:80/a/b/../c/./d": "http://as.test/a/c/d",
		"https://as.test:8443/a%2fb":     "https://as.test:8443/a%2Fb",
		"https://[::1]:443/x/":           "https://[::1]/x/",
		"https://as.test/a/..":           "https://as.test/",
	} {
		got, err := NormalizeHTU(in)
		if err != nil || got != want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://as.test/", "as.test/x", "https:///x", "https://as.test/%zz", "mailto:x@y"} {
		if _, err := NormalizeHTU(bad); err == nil {
			t.Errorf("NormalizeHTU(%q) accepted", bad)
		}
	}
}

func TestDPoPCanonicalKey(t *testing.T) {
	if dpopCanonical != http.CanonicalHeaderKey(DPoPHeader) {
		t.Fatalf("dpopCanonical %q is not the canonical key %q", dpopCanonical, http.CanonicalHeaderKey(DPoPHeader))
	}
}

// Nonces derived from the key ring: two nodes on one storage accept each
// other's; a node with other keys does not; none before a key is loaded.
func TestDPoPNoncesFromKeys(t *testing.T) {
	ctx := t.Context()
	now := time.Now()
	load := func() *Keys {
		ks, err := NewKeys(KeyOptions{Algs: []string{"ES256"}})
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	st := openStore(t)
	a, b, other := load(), load(), load()
	if n := a.DPoPNonces(0); n.Current(now) != "" || n.Valid("x", now) {
		t.Fatal("a nonce before any key is loaded")
	}
	for _, ks := range []*Keys{a, b} {
		if err := ks.Load(ctx, st, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Load(ctx, openStore(t), now); err != nil {
		t.Fatal(err)
	}
	na, nb, no := a.DPoPNonces(time.Minute), b.DPoPNonces(time.Minute), other.DPoPNonces(time.Minute)
	cur := na.Current(now)
	if cur == "" || !nb.Valid(cur, now) {
		t.Fatal("a node does not accept the nonce of another on the same storage")
	}
	if no.Valid(cur, now) {
		t.Fatal("a node with other keys accepts the nonce")
	}
}

// The same proof sent many times at once is accepted exactly once.
func TestDPoPReplayConcurrent(t *testing.T) {
	now := time.Now()
	v, _ := NewDPoPVerifier(DPoPOptions{Now: func() time.Time { return now }})
	p := ecKey(t, elliptic.P256()).proof(t, "ES256", now, nil, nil)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(hdr(p), DPoPCheck{Method: "POST", URL: dpopTarget}); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("accepted %d times, want once", ok.Load())
	}
}

// DPOP-12 across a process: every default verifier (the token endpoint,
// userinfo, each gate, and the new ones a config reload makes) shares one
// replay cache, so a proof passes once in the process whatever the URL
// routing; and a proof older than the cache (a process before this one
// may have spent it) is refused.
func TestDPoPReplayProcessWide(t *testing.T) {
	a := ecKey(t, elliptic.P256())
	check := DPoPCheck{Method: "POST", URL: dpopTarget}
	v1, _ := NewDPoPVerifier(DPoPOptions{})
	v2, _ := NewDPoPVerifier(DPoPOptions{Algs: []string{"ES256"}}) // as after a reload
	now := time.Now()
	p := a.proof(t, "ES256", now, nil, nil)
	if _, err := v1.Verify(hdr(p), check); err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(hdr(p), check); !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("a proof spent at one verifier, at another of the process: %v", err)
	}
	if _, err := v1.Verify(hdr(p), check); err == nil {
		t.Fatal("replay at the same verifier accepted")
	}
	// A verifier whose cache was made now (a process that just started)
	// refuses a proof from before its start, beyond the leeway, even
	// inside the window.
	born := time.Unix(1_800_000_000, 0)
	cur := born
	fresh, _ := NewDPoPVerifier(DPoPOptions{Now: func() time.Time { return cur }})
	cur = born.Add(20 * time.Second)
	old := a.proof(t, "ES256", born.Add(-10*time.Second), nil, nil)
	if _, err := fresh.Verify(hdr(old), check); !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), "start") {
		t.Fatalf("a proof from before the start: %v", err)
	}
	if _, err := fresh.Verify(hdr(a.proof(t, "ES256", born.Add(-3*time.Second), nil, nil)), check); err != nil {
		t.Fatalf("a proof within the leeway of the start: %v", err)
	}
	if _, err := fresh.Verify(hdr(a.proof(t, "ES256", cur, nil, nil)), check); err != nil {
		t.Fatalf("a proof made after the start: %v", err)
	}
}
