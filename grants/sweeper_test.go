package grants

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// TestSweeperPrunesRevocations: an expired revocation leaves storage and
// memory; a live one stays in both.
func TestSweeperPrunesRevocations(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	ctx := context.Background()
	now := time.Now()
	ids := map[string]int64{"old": now.Add(-time.Hour).Unix(), "live": now.Add(time.Hour).Unix()}
	if err := e.store.Update(ctx, func(tx storage.Tx) error { return tokens.PersistRevoked(tx, ids) }); err != nil {
		t.Fatal(err)
	}
	e.revocations.Add(ids)
	s := &Sweeper{store: e.store, rev: e.revocations}
	if n, err := s.Sweep(ctx, now); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if e.revocations.Revoked("old") || !e.revocations.Revoked("live") {
		t.Fatalf("in memory: old=%v live=%v", e.revocations.Revoked("old"), e.revocations.Revoked("live"))
	}
	err := e.store.View(ctx, func(tx storage.Tx) error {
		if _, err := tx.Get(storage.KindRevoked, "live"); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// swCountingStore reports each Sweep call.
type swCountingStore struct {
	storage.Store
	swept chan time.Time
}

func (s swCountingStore) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	select {
	case s.swept <- now:
	default:
	}
	return s.Store.Sweep(ctx, now, limit)
}

// TestSweeperBackground: the goroutine sweeps on its own, picks up a new
// interval at once, and Stop returns (twice, too).
func TestSweeperBackground(t *testing.T) {
	t.Parallel()
	st := swCountingStore{Store: openStore(t), swept: make(chan time.Time, 1)}
	s := StartSweeper(st, nil, time.Hour, zap.NewNop())
	select {
	case <-st.swept:
		t.Fatal("swept before the interval passed")
	case <-time.After(50 * time.Millisecond):
	}
	s.SetInterval(10 * time.Millisecond)
	for range 3 {
		select {
		case <-st.swept:
		case <-time.After(5 * time.Second):
			t.Fatal("the sweeper did not run after the interval changed")
		}
	}
	s.Stop()
	s.Stop()
}
