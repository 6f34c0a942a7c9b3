package tokens

import (
	"fmt"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/mem"
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

// TestRevocationsApply: a stored revocation, as another node commits it
// and a shared store reports it, revokes what PersistRevoked and
// PersistBefore meant (a jti, a grant, everything of a subject up to a
// time); applying it again, or an older one after it, changes nothing;
// a malformed one is an error that leaves the set as it was.
func TestRevocationsApply(t *testing.T) {
	t.Parallel()
	mem := mem.New()
	t.Cleanup(func() { _ = mem.Close() })
	now := time.Now().Unix()
	exp := now + 3600
	if err := mem.Update(t.Context(), func(tx storage.Tx) error {
		if err := PersistRevoked(tx, map[string]int64{"jti-1": exp, GrantRevocationKey("fam"): exp}); err != nil {
			return err
		}
		return PersistBefore(tx, BeforeKey("sub", "alice"), Before{At: now, Exp: exp})
	}); err != nil {
		t.Fatal(err)
	}
	r := NewRevocations()
	var recs []storage.Change
	if err := mem.View(t.Context(), func(tx storage.Tx) error {
		return tx.ForEach(storage.KindRevoked, func(k string, rec storage.Record) error {
			recs = append(recs, storage.Change{Kind: storage.KindRevoked, Key: k, Record: rec})
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, c := range recs {
			if err := r.Apply(c.Key, c.Record); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		c    *AccessClaims
		want bool
	}{
		{&AccessClaims{ID: "jti-1", Subject: "bob", IssuedAt: now}, true},
		{&AccessClaims{ID: "jti-2", Subject: "bob", Grant: "fam", IssuedAt: now}, true},
		{&AccessClaims{ID: "jti-3", Subject: "alice", IssuedAt: now}, true},
		{&AccessClaims{ID: "jti-4", Subject: "alice", IssuedAt: now + 1}, false},
		{&AccessClaims{ID: "jti-5", Subject: "bob", Grant: "other", IssuedAt: now}, false},
	} {
		if got := r.RevokedClaims(tc.c); got != tc.want {
			t.Errorf("%s (sub %s, gid %q, iat %d): revoked %v, want %v", tc.c.ID, tc.c.Subject, tc.c.Grant, tc.c.IssuedAt, got, tc.want)
		}
	}
	// An older entry for alice arriving late does not shorten hers.
	if err := r.Apply(BeforeKey("sub", "alice"), storage.Record{Value: []byte(fmt.Sprint(now - 100)), Expires: time.Unix(exp, 0)}); err != nil {
		t.Fatal(err)
	}
	if !r.RevokedClaims(&AccessClaims{ID: "jti-6", Subject: "alice", IssuedAt: now}) {
		t.Error("an older revocation of alice replaced a newer one")
	}
	n := r.Len()
	if err := r.Apply(BeforeKey("sub", "carol"), storage.Record{Value: []byte("soon")}); err == nil || r.Len() != n {
		t.Errorf("malformed revocation: %v, %d entries (was %d)", err, r.Len(), n)
	}
}
