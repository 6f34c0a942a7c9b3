package bolt

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// wantDamaged wants the error that names the damaged file.
func wantDamaged(t *testing.T, err error, path, what string) {
	t.Helper()
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "storage file "+path+" is damaged: ") ||
		!strings.Contains(err.Error(), "backup") {
		t.Errorf("%s: %v; want ErrUnavailable saying storage file %s is damaged, and what to do", what, err, path)
	}
}

// TestPanicInCommit: a panic inside bbolt's commit, outside every
// caller's fn (here an OnCommit hook stands in for an assertion in
// bbolt's own code), answers every caller of the group with the damage
// error, and later writes at once with the same, instead of a panic
// taking the process down or a stuck group commit.
func TestPanicInCommit(t *testing.T) {
	s := openTemp(t)
	var wg sync.WaitGroup
	errs := make([]error, 9)
	panics := make([]any, len(errs))
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = s.Batch(ctx, func(t storage.Tx) error {
				if i == 0 {
					t.(*tx).btx.OnCommit(func() { panic("bbolt assertion") })
				}
				return t.Put(kindA, fmt.Sprint(i), storage.Record{Value: []byte("v")})
			})
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("callers still waiting after a commit panicked")
	}
	for i := range errs {
		if panics[i] != nil {
			t.Errorf("caller %d panicked: %v", i, panics[i])
		}
		if errs[i] != nil {
			wantDamaged(t, errs[i], s.Path(), fmt.Sprintf("caller %d", i))
		}
	}
	if errs[0] == nil {
		t.Error("the caller whose commit panicked got no error")
	}
	after := make(chan error, 1)
	go func() {
		after <- s.Update(ctx, func(tx storage.Tx) error {
			return tx.Put(kindA, "after", storage.Record{Value: []byte("v")})
		})
	}()
	select {
	case err := <-after:
		wantDamaged(t, err, s.Path(), "a write after the panic")
	case <-time.After(10 * time.Second):
		t.Fatal("a write after the panic never returns: the store is wedged")
	}
}

// TestCallerPanicInForEach: a panic in the caller's ForEach callback is
// the caller's, not damage: it goes on, and the store keeps writing.
func TestCallerPanicInForEach(t *testing.T) {
	s := openTemp(t)
	put(t, s, kindA, "k", storage.Record{Value: []byte("v")})
	func() {
		defer func() {
			if r := recover(); r != "caller bug" {
				t.Errorf("recovered %v, want the caller's panic", r)
			}
		}()
		_ = s.Update(ctx, func(tx storage.Tx) error {
			return tx.ForEach(kindA, func(string, storage.Record) error { panic("caller bug") })
		})
	}()
	put(t, s, kindA, "after", storage.Record{Value: []byte("v")})
}
