package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// TestTwoNodesSingleUse: two stores on one database (two Caddy nodes)
// race 100 callers, split between them, to take one single-use record
// (a code redemption, a refresh rotation): exactly one wins, every
// round, through Update and Batch alike.
func TestTwoNodesSingleUse(t *testing.T) {
	dsn := newDatabase(t)
	var nodes [2]*Store
	for i := range nodes {
		s, err := OpenDSN(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		nodes[i] = s
	}
	ctx := context.Background()
	const callers = 100
	for round := range 6 {
		key := fmt.Sprintf("code-%d", round)
		if err := nodes[round%2].Update(ctx, func(tx storage.Tx) error {
			return tx.Put(storage.KindCodes, key, storage.Record{Value: []byte("grant"), Expires: time.Now().Add(time.Minute)})
		}); err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			winners atomic.Int32
			start   = make(chan struct{})
			errs    = make(chan error, callers)
		)
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := nodes[i%2]
				do := s.Update
				if round%2 == 1 {
					do = s.Batch
				}
				<-start
				took := false
				err := do(ctx, func(tx storage.Tx) error {
					took = false
					if _, err := tx.Get(storage.KindCodes, key); errors.Is(err, storage.ErrNotFound) {
						return nil
					} else if err != nil {
						return err
					}
					took = true
					return tx.Delete(storage.KindCodes, key)
				})
				if err != nil {
					errs <- err
				} else if took {
					winners.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if n := winners.Load(); n != 1 {
			t.Fatalf("round %d: %d callers over two nodes took the record, want exactly 1", round, n)
		}
	}
}
