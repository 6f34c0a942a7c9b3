package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// wantUnavailable fails unless err is a backend failure that keeps its
// cause: the engine answers temporarily_unavailable for it and logs the
// text, which must say more than "unavailable".
func wantUnavailable(t *testing.T, err error, what string) {
	t.Helper()
	switch {
	case !errors.Is(err, storage.ErrUnavailable):
		t.Errorf("%s: %v, want an error wrapping storage.ErrUnavailable", what, err)
	case err.Error() == storage.ErrUnavailable.Error():
		t.Errorf("%s: %q, want the cause in the text", what, err)
	}
}

// putMany writes n records of 1 KiB under prefix in one transaction.
func putMany(do func(func(storage.Tx) error) error, prefix string, n int) error {
	value := bytes.Repeat([]byte("f"), 1024)
	return do(func(tx storage.Tx) error {
		for i := range n {
			if err := tx.Put(kindA, fmt.Sprintf("%s/%03d", prefix, i), storage.Record{Value: value, Expires: time.Now().Add(time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
}

// testFullDisk: once the medium is full, reads go on; a write that needs
// room fails with ErrUnavailable and leaves nothing; once there is room
// again the same write works and everything acknowledged is there.
func testFullDisk(t *testing.T, st storage.Store, fill func(*testing.T) func()) {
	update := func(fn func(storage.Tx) error) error { return st.Update(ctx, fn) }
	batch := func(fn func(storage.Tx) error) error { return st.Batch(ctx, fn) }
	put(t, st, kindB, "acknowledged", storage.Record{Value: []byte("before")})
	free := fill(t)
	wantValue(t, st, kindB, "acknowledged", "before")

	// Space the backend already holds may take some writes; keep writing
	// new records until one needs more.
	var failed string
	written := 0
	for failed == "" {
		if written == 10_000 {
			free()
			t.Fatalf("%d writes of 32 KiB each succeeded on a full medium: does fill fill it?", written)
		}
		prefix := fmt.Sprintf("w%05d", written)
		err := putMany(update, prefix, 32)
		if err == nil {
			written++
			continue
		}
		wantUnavailable(t, err, "a write on a full medium")
		failed = prefix
	}
	t.Logf("the first write that needed room failed after %d", written)
	wantAbsent(t, st, kindA, failed+"/000", "the failed write")
	wantAbsent(t, st, kindA, failed+"/031", "the failed write")
	// Nothing was freed since, so the same write fails the same way
	// through Batch.
	wantUnavailable(t, putMany(batch, failed, 32), "the same write by Batch")
	wantAbsent(t, st, kindA, failed+"/000", "the failed Batch")
	// Reads go on, and the writes that succeeded are there.
	wantValue(t, st, kindB, "acknowledged", "before")
	if written > 0 {
		if _, err := get(t, st, kindA, fmt.Sprintf("w%05d/031", written-1)); err != nil {
			t.Errorf("the last write acknowledged on the full medium: %v", err)
		}
	}

	free()
	if err := putMany(batch, failed, 32); err != nil {
		t.Fatalf("the failed write with room again: %v", err)
	}
	if err := putMany(update, "after", 32); err != nil {
		t.Fatalf("a new write with room again: %v", err)
	}
	wantValue(t, st, kindB, "acknowledged", "before")
	if got := len(keys(t, st, kindA)); got != 32*(written+2) {
		t.Errorf("%d records, want %d", got, 32*(written+2))
	}
}

// testReadOnly: once the medium refuses writes, reads go on and every
// write, Sweep included, fails with ErrUnavailable and changes nothing.
func testReadOnly(t *testing.T, st storage.Store, setReadOnly func(*testing.T)) {
	put(t, st, kindB, "acknowledged", storage.Record{Value: []byte("before")})
	put(t, st, kindB, "expiring", storage.Record{Value: []byte("e"), Expires: time.Now().Add(time.Hour)})
	setReadOnly(t)
	wantValue(t, st, kindB, "acknowledged", "before")

	wantUnavailable(t, st.Update(ctx, func(tx storage.Tx) error {
		return tx.Put(kindA, "new", storage.Record{Value: []byte("x")})
	}), "Update on a read-only medium")
	wantUnavailable(t, st.Batch(ctx, func(tx storage.Tx) error {
		return tx.Put(kindA, "new", storage.Record{Value: []byte("x")})
	}), "Batch on a read-only medium")
	wantUnavailable(t, st.Update(ctx, func(tx storage.Tx) error {
		return tx.Delete(kindB, "acknowledged")
	}), "a delete on a read-only medium")
	n, err := st.Sweep(ctx, time.Now().Add(2*time.Hour), 100)
	wantUnavailable(t, err, "Sweep on a read-only medium")
	if n != 0 {
		t.Errorf("Sweep on a read-only medium reports %d deleted", n)
	}

	wantAbsent(t, st, kindA, "new", "written on a read-only medium")
	wantValue(t, st, kindB, "acknowledged", "before")
	wantValue(t, st, kindB, "expiring", "e")
}
