package tokens

import (
	"fmt"
	"testing"
	"time"
)

// The cache must never turn a dead token back into a live one: a hit is
// still checked against the clock and the revocation set.
func TestVerifierCacheHonoursExpiryAndRevocation(t *testing.T) {
	t.Parallel()
	rev := &Revocations{jti: map[string]int64{}}
	kr, err := LoadKeyRing(t.Context(), openStore(t), "ES256", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v := testVerifier(kr, 30*time.Second, rev)
	now := time.Now()
	claims := NewAccessClaims(testIssuer, "c-basic", "c-basic", []string{"https://app.test"}, []string{"read"}, now, time.Minute)
	tok, err := kr.Current.MintAccessToken(claims)
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(tok, now)
	if err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	if again, err := v.Verify(tok, now); err != nil || again != first {
		t.Fatalf("second Verify = %p, %v; want the cached claims %p", again, err, first)
	}
	if _, err := v.Verify(tok, now.Add(2*time.Minute)); err == nil {
		t.Fatal("a cached token verified after its exp")
	}
	if _, err := v.Verify(tok, now); err != nil {
		t.Fatalf("Verify after an expired lookup: %v", err)
	}
	rev.Add(map[string]int64{claims.ID: claims.ExpiresAt})
	if _, err := v.Verify(tok, now); err == nil {
		t.Fatal("a cached token verified after it was revoked")
	}
	// New keys: nothing verified with the old ring is taken on trust.
	v.keys.set(&KeyRing{byID: map[string]*Key{}})
	if _, err := v.Verify(tok, now); err == nil {
		t.Fatal("a cached token verified after its key was removed")
	}
}

// A flood of distinct tokens cannot grow the cache without bound.
func TestTokenCacheBounded(t *testing.T) {
	t.Parallel()
	c := newTokenCache()
	now := time.Now().Unix()
	for i := 0; i < cacheShards*cacheMaxShard*3; i++ {
		c.put(fmt.Sprintf("token-%d", i), &AccessClaims{ExpiresAt: now + 60}, now)
	}
	total := 0
	for i := range c.shards {
		total += len(c.shards[i].m)
	}
	if total > cacheShards*cacheMaxShard {
		t.Fatalf("cache holds %d entries, bound is %d", total, cacheShards*cacheMaxShard)
	}
}

// A token this process minted is known to the verifier without a
// signature check; its claims are still checked (expiry, revocation) on
// the first use and every use after, and a token from elsewhere is
// verified in full.
func TestVerifierRemembersMinted(t *testing.T) {
	now := time.Now()
	kr, err := LoadKeyRing(t.Context(), openStore(t), "ES256", now)
	if err != nil {
		t.Fatal(err)
	}
	rev := &Revocations{jti: map[string]int64{}}
	// A verifier whose ring lacks the signing key: only the minted path
	// can accept the token.
	v := testVerifier(&KeyRing{byID: map[string]*Key{}}, 30*time.Second, rev)
	mint := func(ttl time.Duration) (string, *AccessClaims) {
		c := NewAccessClaims(testIssuer, "c-basic", "c-basic", []string{testRS}, []string{"read"}, now, ttl)
		tok, err := kr.Current.MintAccessToken(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok, c
	}
	tok, c := mint(time.Minute)
	if _, err := v.Verify(tok, now); err == nil {
		t.Fatal("a token this verifier was not told of verified without its key")
	}
	v.Remember(tok, c)
	got, err := v.Verify(tok, now)
	if err != nil || got.ID != c.ID {
		t.Fatalf("remembered token: %v", err)
	}
	if sub, _ := got.Claim("scope"); sub != "read" {
		t.Fatalf("Claim(scope) = %v: the payload was not kept", sub)
	}
	rev.Add(map[string]int64{c.ID: c.ExpiresAt})
	if _, err := v.Verify(tok, now); err == nil {
		t.Fatal("a remembered token verified after it was revoked")
	}

	expired, ec := mint(time.Second)
	v.Remember(expired, ec)
	if _, err := v.Verify(expired, now.Add(2*time.Second)); err == nil {
		t.Fatal("a remembered token verified after its exp")
	}
	// Claims that were not minted (no payload) are not taken.
	other := NewAccessClaims(testIssuer, "x", "x", []string{testRS}, nil, now, time.Minute)
	v.Remember("forged", other)
	if _, err := v.Verify("forged", now); err == nil {
		t.Fatal("claims that were never signed were accepted")
	}
	// A key that leaves the ring takes the remembered tokens with it.
	late, lc := mint(time.Minute)
	v.Remember(late, lc)
	v.keys.set(&KeyRing{byID: map[string]*Key{kr.Current.ID: kr.Current}})
	v.keys.set(&KeyRing{byID: map[string]*Key{}})
	if _, err := v.Verify(late, now); err == nil {
		t.Fatal("a remembered token outlived a key removal")
	}
}

// The minted-token cache is bounded: a flood of tokens minted and never
// presented cannot grow memory.
func TestMintedCacheBounded(t *testing.T) {
	c := newMintedCache()
	for i := 0; i < cacheShards*mintedMaxShard*3; i++ {
		c.put(fmt.Sprintf("token-%d", i), &AccessClaims{})
	}
	n := 0
	for i := range c.shards {
		if l := len(c.shards[i].m); l > mintedMaxShard {
			t.Fatalf("shard %d holds %d", i, l)
		}
		n += len(c.shards[i].m)
	}
	if n == 0 || c.take(fmt.Sprintf("token-%d", cacheShards*mintedMaxShard*3-1)) == nil {
		t.Fatal("the newest token was dropped")
	}
	if c.take("token-0") != nil {
		t.Fatal("the oldest token was kept")
	}
}
