package tokens

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The proof header cache: a header is kept by its exact bytes once a
// proof with it verified, a hit yields the same key and thumbprint, and
// no check is skipped (the signature, each verifier's alg allowlist).
func TestDPoPKeyCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	a := ecKey(t, elliptic.P256())
	b := ecKey(t, elliptic.P256())
	v, err := NewDPoPVerifier(DPoPOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	v.keys = newDPoPKeyCache(8)
	check := DPoPCheck{Method: "POST", URL: dpopTarget}
	for i := range 3 {
		p, err := v.Verify(hdr(a.proof(t, "ES256", now, nil, nil)), check)
		if err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		if p.JKT != a.jkt {
			t.Fatalf("proof %d: jkt %s, want %s", i, p.JKT, a.jkt)
		}
		if n := v.keys.len(); n != 1 {
			t.Fatalf("proof %d: %d headers cached, want 1", i, n)
		}
	}
	// The next proof's header is a hit: its key is not parsed again.
	h := strings.SplitN(a.proof(t, "ES256", now, nil, nil), ".", 2)[0]
	if hk, _, cached, err := v.proofHeader(h); err != nil || !cached || hk.jkt != a.jkt {
		t.Fatalf("a verified client's header: cached %v, %v", cached, err)
	}
	// A's cached header, signed by B: the signature is still checked.
	forged := signProof(t, "ES256", b.priv, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": a.pubJWK},
		map[string]any{"jti": "forged", "htm": "POST", "htu": dpopTarget, "iat": now.Unix()})
	if _, err := v.Verify(hdr(forged), check); !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("A's header signed by B: %v, want a signature refusal", err)
	}
	// A header differing in one member is another entry.
	if _, err := v.Verify(hdr(a.proof(t, "ES256", now, func(h map[string]any) { h["kid"] = "k1" }, nil)), check); err != nil {
		t.Fatal(err)
	}
	if n := v.keys.len(); n != 2 {
		t.Fatalf("%d headers cached, want 2", n)
	}
	// A header that failed a check is not kept, and fails again.
	priv := a.proof(t, "ES256", now, func(h map[string]any) { h["jwk"] = a.privJWK(t) }, nil)
	for range 2 {
		if _, err := v.Verify(hdr(priv), check); !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), "private") {
			t.Fatalf("private jwk: %v", err)
		}
	}
	// A header whose proof did not verify is not kept either.
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	e := newDPoPKey(t, edPriv)
	badSig := signProof(t, "ES256", a.priv, map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": e.pubJWK},
		map[string]any{"jti": "x", "htm": "POST", "htu": dpopTarget, "iat": now.Unix()})
	if _, err := v.Verify(hdr(badSig), check); !errors.Is(err, ErrInvalidDPoPProof) {
		t.Fatalf("bad signature: %v", err)
	}
	if n := v.keys.len(); n != 2 {
		t.Fatalf("%d headers cached after refusals, want 2", n)
	}
	// Another verifier sharing the cache checks its own allowlist.
	ed, err := NewDPoPVerifier(DPoPOptions{Now: clock, Algs: []string{"EdDSA"}})
	if err != nil {
		t.Fatal(err)
	}
	ed.keys = v.keys
	if _, err := ed.Verify(hdr(a.proof(t, "ES256", now, nil, nil)), check); !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), `alg "ES256" is not accepted`) {
		t.Fatalf("cached ES256 header at an EdDSA-only verifier: %v", err)
	}
	if _, err := ed.Verify(hdr(e.proof(t, "EdDSA", now, nil, nil)), check); err != nil {
		t.Fatalf("EdDSA: %v", err)
	}
}

// The cache is bounded, keeps headers in use, and skips long ones.
func TestDPoPKeyCacheBound(t *testing.T) {
	c := newDPoPKeyCache(4)
	hot := &dpopHeaderKey{jkt: "hot"}
	c.put("hot", hot)
	for i := range 40 {
		c.put(fmt.Sprint("h", i), &dpopHeaderKey{})
		if c.get("hot") != hot {
			t.Fatalf("after %d puts the header in use was dropped", i+1)
		}
		if n := c.len(); n > 8 {
			t.Fatalf("%d entries, bound 2×4", n)
		}
	}
	if c.get("h0") != nil {
		t.Fatal("an old header is still kept")
	}
	long := strings.Repeat("a", maxCachedDPoPHeader+1)
	c.put(long, &dpopHeaderKey{})
	if c.get(long) != nil {
		t.Fatal("a header over maxCachedDPoPHeader was kept")
	}
}
