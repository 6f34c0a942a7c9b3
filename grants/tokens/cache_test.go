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
