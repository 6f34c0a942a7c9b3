package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// TestChurnSteadySize writes and expires many records over many rounds,
// sweeping after each, as a busy server does, and checks that the file
// stops growing: freed pages are reused, so after the first rounds the
// size stays within a bound (no storage exhaustion).
func TestChurnSteadySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "churn.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const (
		rounds   = 40
		perRound = 2000
	)
	value := make([]byte, 200)
	kinds := []storage.Kind{storage.KindCodes, storage.KindFamilies, storage.KindRevoked}
	clock := time.Now()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var reference int64
	start := time.Now()
	for round := range rounds {
		err := s.Update(ctx, func(tx storage.Tx) error {
			for i := range perRound {
				kind := kinds[i%len(kinds)]
				key := fmt.Sprintf("r%03d-%05d-%032d", round, i, i)
				if err := tx.Put(kind, key, storage.Record{Value: value, Expires: clock.Add(time.Minute)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// A minute passes: this round's records expire and are swept.
		clock = clock.Add(2 * time.Minute)
		n, err := s.Sweep(ctx, clock, 1<<30)
		if err != nil || n != perRound {
			t.Fatalf("round %d: Sweep = %d, %v; want %d", round, n, err, perRound)
		}
		if round == 4 {
			reference = size()
		}
	}
	final := size()
	t.Logf("%d rounds of %d records in %v: size after round 5 %d bytes, after round %d %d bytes",
		rounds, perRound, time.Since(start).Round(time.Millisecond), reference, rounds, final)
	// Without sweeping the file would hold rounds*perRound*~300 bytes
	// (about 24 MB); with it, it must stay near the size of one round.
	if limit := reference + reference/2; final > limit {
		t.Fatalf("file grew from %d to %d bytes under steady churn (limit %d)", reference, final, limit)
	}
	if final > 8<<20 {
		t.Fatalf("file is %d bytes, want under 8 MiB", final)
	}
}
