package tokens

import (
	"crypto/elliptic"
	"testing"
	"time"
)

// BenchmarkDPoPVerify is the gate's per-request proof check: a
// DPoP-bound token with a fresh ES256 proof (ath, htu, a new jti) on
// every request, through CheckResource. The proofs are signed before the
// timer starts; each is verified once, as the replay cache demands.
func BenchmarkDPoPVerify(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	cur := now.Add(-time.Hour)
	v, err := NewDPoPVerifier(DPoPOptions{Now: func() time.Time { return cur }})
	if err != nil {
		b.Fatal(err)
	}
	cur = now
	k := ecKey(b, elliptic.P256())
	const tok = "eyJhbGciOiJFUzI1NiJ9.access-token.signature"
	const url = "https://api.example.com/v1/items/42"
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = k.proof(b, "ES256", now, nil, func(c map[string]any) {
			c["htm"], c["htu"], c["ath"] = "GET", url, athOf(tok)
		})
	}
	h := hdr("")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h[dpopCanonical][0] = proofs[i]
		if err := v.CheckResource(h, DPoPCheck{Method: "GET", URL: url, AccessToken: tok}, k.jkt, true); err != nil {
			b.Fatal(err)
		}
	}
}
