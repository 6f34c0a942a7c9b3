package tokens

import (
	"fmt"
	"testing"
	"time"
)

// Revocations.add runs under the write lock the gate's readers wait on,
// so it must not walk the map: it only inserts, and the sweeper forgets
// expired revocations. With many expired entries present, an add leaves
// them all in place (it did not scan), and a prune removes them.
func TestRevocationsAddDoesNotPrune(t *testing.T) {
	t.Parallel()
	r := &Revocations{jti: map[string]int64{}, before: map[string]Before{}}
	old := time.Now().Add(-time.Hour).Unix()
	for i := range 1000 {
		r.jti[fmt.Sprintf("old%d", i)] = old
	}
	r.before[BeforeKey("sub", "gone")] = Before{At: old, Exp: old}
	r.Add(map[string]int64{"new": time.Now().Add(time.Hour).Unix()})
	if n := r.Len(); n != 1002 {
		t.Fatalf("after add: %d revocations held, want 1002 (add must not prune)", n)
	}
	r.Prune(time.Now())
	if n := r.Len(); n != 1 || !r.Revoked("new") {
		t.Fatalf("after prune: %d revocations held (new revoked: %v), want only the live one", r.Len(), r.Revoked("new"))
	}
}

// BenchmarkRevocationsAdd adds one revocation to a set of 200k live ones;
// ns/op stays flat as the set grows (O(1)), where pruning on every add
// cost about 2 ms.
func BenchmarkRevocationsAdd(b *testing.B) {
	r := &Revocations{jti: map[string]int64{}, before: map[string]Before{}}
	live := time.Now().Add(time.Hour).Unix()
	for i := range 200_000 {
		r.jti[fmt.Sprintf("live%d", i)] = live
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r.Add(map[string]int64{fmt.Sprintf("b%d", i): live})
		i++
	}
}
