package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// openNodes opens n stores on one new database (n Caddy nodes) and
// returns them with the database's name.
func openNodes(t *testing.T, n int) ([]*Store, string) {
	t.Helper()
	dsn := newDatabase(t)
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*Store, n)
	for i := range nodes {
		s, err := OpenDSN(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		nodes[i] = s
	}
	return nodes, pc.ConnConfig.Database
}

// TestTryLock: a named lock is held by one node at a time, other names
// are independent, release frees it for the next node at once, and a
// second release does nothing.
func TestTryLock(t *testing.T) {
	nodes, _ := openNodes(t, 2)
	ctx := context.Background()
	a, b := nodes[0], nodes[1]
	rel, ok, err := a.TryLock(ctx, "sweep")
	if err != nil || !ok {
		t.Fatalf("first TryLock: ok %v, %v", ok, err)
	}
	if _, ok, err := b.TryLock(ctx, "sweep"); err != nil || ok {
		t.Fatalf("second node took a held lock: ok %v, %v", ok, err)
	}
	if _, ok, err := a.TryLock(ctx, "sweep"); err != nil || ok {
		t.Fatalf("the same node took its own held lock again: ok %v, %v", ok, err)
	}
	relKeys, ok, err := b.TryLock(ctx, "keys")
	if err != nil || !ok {
		t.Fatalf("another name: ok %v, %v", ok, err)
	}
	relKeys()
	rel()
	rel() // a second release does nothing
	rel2, ok, err := b.TryLock(ctx, "sweep")
	if err != nil || !ok {
		t.Fatalf("after release: ok %v, %v", ok, err)
	}
	rel2()

	_ = a.Close()
	if _, _, err := a.TryLock(ctx, "sweep"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("TryLock on a closed store: %v", err)
	}
}

// TestTryLockFreedWhenHolderDies: a node whose connection to the
// database is lost (it was killed) does not keep the lock.
func TestTryLockFreedWhenHolderDies(t *testing.T) {
	nodes, db := openNodes(t, 2)
	ctx := context.Background()
	if _, ok, err := nodes[0].TryLock(ctx, "sweep"); err != nil || !ok {
		t.Fatalf("TryLock: ok %v, %v", ok, err)
	}
	// The holder's backend, as a crash or a broken network ends it.
	var killed bool
	if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
		WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1`, db).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the lock holder: %v %v", killed, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rel, ok, err := nodes[1].TryLock(ctx, "sweep")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock of a dead holder was never freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTryLockKeepsNoConnections: many nodes contending for a lock, many
// times, leave no connection behind, take none from the pools, and one
// of them holds it at a time.
func TestTryLockKeepsNoConnections(t *testing.T) {
	nodes, db := openNodes(t, 5)
	ctx := context.Background()
	var held, most atomic.Int32
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				rel, ok, err := s.TryLock(ctx, "sweep")
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					continue
				}
				n := held.Add(1)
				if n > most.Load() {
					most.Store(n)
				}
				time.Sleep(time.Millisecond)
				held.Add(-1)
				rel()
			}
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d nodes held the lock at once", most.Load())
	}
	pooled := 0
	for _, s := range nodes {
		if n := s.pool.Stat().AcquiredConns() + s.readPool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("%d pool connections still acquired", n)
		}
		pooled += int(s.pool.Stat().TotalConns() + s.readPool.Stat().TotalConns())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var conns int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, db).Scan(&conns); err != nil {
			t.Fatal(err)
		}
		if conns <= pooled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the database, the pools hold %d: lock connections were left open", conns, pooled)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
