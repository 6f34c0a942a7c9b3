package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// The sweeper walks an expiry index: it deletes what expired, keeps what
// was given a later expiry since, and leaves no stale index entries.
func TestSweepUsesExpiryIndex(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "x.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	err = st.Update(ctx, func(tx storage.Tx) error {
		for i := range 1000 {
			exp := now.Add(-time.Minute)
			if i%2 == 0 {
				exp = now.Add(time.Hour)
			}
			if err := tx.Put("k", fmt.Sprint(i), storage.Record{Value: []byte("v"), Expires: exp}); err != nil {
				return err
			}
		}
		// Renewed: expired first, then given a later expiry.
		if err := tx.Put("k", "1", storage.Record{Value: []byte("renewed"), Expires: now.Add(time.Hour)}); err != nil {
			return err
		}
		// Deleted by hand, and never expiring.
		if err := tx.Delete("k", "3"); err != nil {
			return err
		}
		return tx.Put("k", "forever", storage.Record{Value: []byte("v")})
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.Sweep(ctx, now, 10000)
	if err != nil || n != 498 {
		t.Fatalf("Sweep = %d, %v; want 498 (500 expired, minus the renewed and the deleted one)", n, err)
	}
	left := 0
	_ = st.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach("k", func(string, storage.Record) error { left++; return nil })
	})
	if left != 502 {
		t.Fatalf("%d records left, want 502", left)
	}
	if err := st.db.View(func(btx *bbolt.Tx) error {
		if got := btx.Bucket(expiryBucket).Stats().KeyN; got != 501 {
			return fmt.Errorf("index has %d entries, want 501 (the live expiring records)", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A file written before the index existed is indexed when it is opened.
func TestOpenBuildsMissingIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	past := encode(storage.Record{Value: []byte("v"), Expires: time.Now().Add(-time.Hour)})
	if err := db.Update(func(btx *bbolt.Tx) error {
		b, err := btx.CreateBucket([]byte("k"))
		if err != nil {
			return err
		}
		return b.Put([]byte("old"), past)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.Sweep(context.Background(), time.Now(), 100); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v; want the old expired record swept", n, err)
	}
}
