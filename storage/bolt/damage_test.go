package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// damagedFile writes a store whose kind a fills many leaf pages, then
// writes garbage over one of those pages, in use, as a bad disk block or
// a stray write would. It returns the path and the keys the store held.
func damagedFile(t *testing.T) (path string, held []string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "oauth.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("v", 100)
	if err := s.Update(ctx, func(tx storage.Tx) error {
		for i := range 2000 {
			key := fmt.Sprintf("k%05d", i)
			held = append(held, key)
			if err := tx.Put(kindA, key, storage.Record{Value: []byte(value)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A leaf of kind a: the other leaves (the root's, the empty expiry
	// index's) hold at most two entries.
	var victim, pageSize int
	if err := s.db.View(func(btx *bbolt.Tx) error {
		pageSize = s.db.Info().PageSize
		for id := 2; victim == 0; id++ {
			info, err := btx.Page(id)
			if err != nil {
				return err
			}
			if info == nil {
				return errors.New("no leaf page of kind a")
			}
			if info.Type == "leaf" && info.Count > 2 {
				victim = id
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, pageSize)
	for i := range garbage {
		garbage[i] = byte(i*131 + 7)
	}
	_, err = f.WriteAt(garbage, int64(victim*pageSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, held
}

// TestDamagedPage: bbolt panics when it reads a page that is not what its
// parent says (garbage over an in-use page). Every operation that reaches
// the page returns an error naming the file instead of panicking; from
// then on writes are refused (a damaged file must not be written to: its
// free list may hand out pages still in use), reads of intact records go
// on, and Close returns.
func TestDamagedPage(t *testing.T) {
	path, held := damagedFile(t)
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open: %v (the damage is in a page Open does not read)", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})

	// A read over every record reaches the damaged page.
	err = s.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kindA, func(string, storage.Record) error { return nil })
	})
	wantDamaged(t, err, path, "ForEach over the damaged page")
	// Some Get reaches it too, and returns the error, not ErrNotFound.
	damagedKeys := 0
	var intact string
	for _, k := range held {
		_, err := get(t, s, kindA, k)
		switch {
		case err == nil:
			intact = k
		case errors.Is(err, storage.ErrNotFound):
			t.Fatalf("Get(%s) on a damaged file: ErrNotFound, want the damage", k)
		default:
			wantDamaged(t, err, path, "Get "+k)
			damagedKeys++
		}
	}
	if damagedKeys == 0 || intact == "" {
		t.Fatalf("%d keys on the damaged page, intact %q: the test damaged the wrong page", damagedKeys, intact)
	}

	// Writes: a read-modify-write over the damaged page, then any write.
	err = s.Update(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kindA, func(string, storage.Record) error { return nil })
	})
	wantDamaged(t, err, path, "Update reading the damaged page")
	wantDamaged(t, s.Update(ctx, func(tx storage.Tx) error {
		return tx.Put(kindB, "elsewhere", storage.Record{Value: []byte("v")})
	}), path, "Update of an intact kind after the damage was found")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Batch(ctx, func(tx storage.Tx) error {
				return tx.Put(kindB, fmt.Sprint(i), storage.Record{Value: []byte("v")})
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		wantDamaged(t, err, path, "Batch after the damage was found")
	}
	_, err = s.Sweep(ctx, time.Now(), 100)
	wantDamaged(t, err, path, "Sweep after the damage was found")

	// Intact records still read.
	if _, err := get(t, s, kindA, intact); err != nil {
		t.Errorf("an intact record after the damage: %v", err)
	}
	closeErr := make(chan error, 1)
	go func() { closeErr <- s.Close() }()
	select {
	case <-closeErr:
		closed = true
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a damaged store hangs")
	}
}

// TestDamagedPageBatch: a Batch whose fn reaches the damaged page is
// answered with the damage error, and so is everyone committed with it;
// nobody panics and nobody is left waiting.
func TestDamagedPageBatch(t *testing.T) {
	path, held := damagedFile(t)
	s := openAt(t, path)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	panics := make([]any, len(errs))
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = s.Batch(ctx, func(tx storage.Tx) error {
				if i%4 == 0 {
					// Reads every record, so reaches the damaged page.
					return tx.ForEach(kindA, func(string, storage.Record) error { return nil })
				}
				return tx.Put(kindB, fmt.Sprint(i), storage.Record{Value: []byte(held[i])})
			})
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Batch callers still waiting after bbolt panicked")
	}
	for i, err := range errs {
		if panics[i] != nil {
			t.Errorf("caller %d panicked: %v", i, panics[i])
		}
		if i%4 == 0 {
			wantDamaged(t, err, path, fmt.Sprintf("caller %d, reading the damaged page", i))
		} else if err != nil {
			// Committed before the damage was found, or refused after.
			wantDamaged(t, err, path, fmt.Sprintf("caller %d", i))
		}
	}
}

// TestOpenEmptyFileRefused: a storage file of zero bytes (a failed copy,
// a restore that wrote nothing, a disk that lost it) is refused rather
// than taken for a new database: that would start without the signing
// keys and grants, invalidating every token issued.
func TestOpenEmptyFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, time.Second)
	if err == nil {
		s.Close()
		t.Fatal("Open of an empty file succeeded")
	}
	for _, want := range []string{path, "empty", "0 bytes", "backup", "delete it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to say %q", err, want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file was changed: %v, %v", fi, err)
	}
	// Once it is deleted, a new database starts there.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	openAt(t, path)
}
