package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

const (
	kindA storage.Kind = "a"
	kindB storage.Kind = "b"
)

var ctx = context.Background()

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func put(t *testing.T, s *Store, kind storage.Kind, key string, rec storage.Record) {
	t.Helper()
	if err := s.Update(ctx, func(tx storage.Tx) error { return tx.Put(kind, key, rec) }); err != nil {
		t.Fatalf("Put %s/%s: %v", kind, key, err)
	}
}

func get(t *testing.T, s *Store, kind storage.Kind, key string) (storage.Record, error) {
	t.Helper()
	var rec storage.Record
	err := s.View(ctx, func(tx storage.Tx) error {
		var err error
		rec, err = tx.Get(kind, key)
		return err
	})
	return rec, err
}

func keys(t *testing.T, s *Store, kind storage.Kind) []string {
	t.Helper()
	var out []string
	if err := s.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kind, func(k string, _ storage.Record) error { out = append(out, k); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawCount counts every stored entry of kind, expired or not, straight
// from bbolt.
func rawCount(t *testing.T, s *Store, kind storage.Kind) int {
	t.Helper()
	n := 0
	_ = s.db.View(func(btx *bbolt.Tx) error {
		if b := btx.Bucket([]byte(kind)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

func TestPutGetDelete(t *testing.T) {
	s := openTemp(t)
	future := time.Now().Add(time.Hour).Truncate(0)
	tests := []struct {
		name string
		key  string
		rec  storage.Record
	}{
		{"never expires", "k1", storage.Record{Value: []byte("v1")}},
		{"expires later", "k2", storage.Record{Value: []byte("v2"), Expires: future}},
		{"empty value", "k3", storage.Record{}},
		{"binary value", "k4", storage.Record{Value: []byte{0, 1, 2, 0xff}}},
		{"binary key", "\x00\xff/..", storage.Record{Value: []byte("x")}},
		{"large value", "k5", storage.Record{Value: bytes.Repeat([]byte("z"), 1<<20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put(t, s, kindA, tt.key, tt.rec)
			got, err := get(t, s, kindA, tt.key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !bytes.Equal(got.Value, tt.rec.Value) {
				t.Errorf("Value = %q, want %q", trunc(got.Value), trunc(tt.rec.Value))
			}
			if !got.Expires.Equal(tt.rec.Expires) || got.Expires.IsZero() != tt.rec.Expires.IsZero() {
				t.Errorf("Expires = %v, want %v", got.Expires, tt.rec.Expires)
			}
			if err := s.Update(ctx, func(tx storage.Tx) error { return tx.Delete(kindA, tt.key) }); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := get(t, s, kindA, tt.key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Get after Delete: %v, want ErrNotFound", err)
			}
		})
	}

	t.Run("overwrite", func(t *testing.T) {
		put(t, s, kindA, "o", storage.Record{Value: []byte("old"), Expires: future})
		put(t, s, kindA, "o", storage.Record{Value: []byte("new")})
		got, err := get(t, s, kindA, "o")
		if err != nil || string(got.Value) != "new" || !got.Expires.IsZero() {
			t.Errorf("got %q %v %v", got.Value, got.Expires, err)
		}
	})
	t.Run("kinds are separate", func(t *testing.T) {
		put(t, s, kindA, "same", storage.Record{Value: []byte("a")})
		put(t, s, kindB, "same", storage.Record{Value: []byte("b")})
		a, _ := get(t, s, kindA, "same")
		b, _ := get(t, s, kindB, "same")
		if string(a.Value) != "a" || string(b.Value) != "b" {
			t.Errorf("a=%q b=%q", a.Value, b.Value)
		}
	})
	t.Run("absent", func(t *testing.T) {
		if _, err := get(t, s, kindA, "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("absent key: %v", err)
		}
		if _, err := get(t, s, "no-such-kind", "k"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("absent kind: %v", err)
		}
		if err := s.Update(ctx, func(tx storage.Tx) error {
			if err := tx.Delete(kindA, "nope"); err != nil {
				return err
			}
			return tx.Delete("no-such-kind", "k")
		}); err != nil {
			t.Errorf("deleting absent records: %v", err)
		}
	})
	t.Run("empty key refused", func(t *testing.T) {
		err := s.Update(ctx, func(tx storage.Tx) error { return tx.Put(kindA, "", storage.Record{Value: []byte("x")}) })
		if err == nil {
			t.Error("Put with an empty key succeeded")
		}
	})
	t.Run("values are copies", func(t *testing.T) {
		in := []byte("original")
		put(t, s, kindA, "c", storage.Record{Value: in})
		copy(in, "XXXXXXXX")
		got, _ := get(t, s, kindA, "c")
		if string(got.Value) != "original" {
			t.Fatalf("stored value changed with the caller's slice: %q", got.Value)
		}
		copy(got.Value, "YYYYYYYY")
		again, _ := get(t, s, kindA, "c")
		if string(again.Value) != "original" {
			t.Errorf("stored value changed through a returned slice: %q", again.Value)
		}
	})
	t.Run("reads see own writes", func(t *testing.T) {
		err := s.Update(ctx, func(tx storage.Tx) error {
			if err := tx.Put(kindB, "rw", storage.Record{Value: []byte("1")}); err != nil {
				return err
			}
			rec, err := tx.Get(kindB, "rw")
			if err != nil || string(rec.Value) != "1" {
				return fmt.Errorf("own write not visible: %q %v", rec.Value, err)
			}
			if err := tx.Delete(kindB, "rw"); err != nil {
				return err
			}
			if _, err := tx.Get(kindB, "rw"); !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("own delete not visible: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	if s.Path() == "" || !strings.HasSuffix(s.Path(), "oauth.db") {
		t.Errorf("Path() = %q", s.Path())
	}
}

func trunc(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func TestExpiredInvisible(t *testing.T) {
	s := openTemp(t)
	now := time.Now()
	put(t, s, kindA, "past", storage.Record{Value: []byte("p"), Expires: now.Add(-time.Second)})
	put(t, s, kindA, "long-past", storage.Record{Value: []byte("p"), Expires: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)})
	put(t, s, kindA, "before-epoch", storage.Record{Value: []byte("p"), Expires: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)})
	put(t, s, kindA, "live", storage.Record{Value: []byte("l"), Expires: now.Add(time.Hour)})
	put(t, s, kindA, "forever", storage.Record{Value: []byte("f")})

	for _, k := range []string{"past", "long-past", "before-epoch"} {
		if _, err := get(t, s, kindA, k); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", k, err)
		}
	}
	for _, k := range []string{"live", "forever"} {
		if _, err := get(t, s, kindA, k); err != nil {
			t.Errorf("Get(%s) = %v", k, err)
		}
	}
	if got := keys(t, s, kindA); strings.Join(got, ",") != "forever,live" {
		t.Errorf("ForEach = %v, want [forever live]", got)
	}
	// Expired records are hidden, not deleted: Sweep's job.
	if n := rawCount(t, s, kindA); n != 5 {
		t.Errorf("%d raw entries, want 5", n)
	}
}

// TestExpiryEncoding: expiry instants outside UnixNano's range, and the
// epoch itself, keep their meaning (0 is the "never" marker on disk).
func TestExpiryEncoding(t *testing.T) {
	s := openTemp(t)
	tests := []struct {
		name    string
		expires time.Time
		visible bool
	}{
		{"zero never expires", time.Time{}, true},
		{"year 2300", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), true},
		{"max duration from now", time.Now().Add(math.MaxInt64), true},
		{"epoch", time.Unix(0, 0), false},
		{"year 1500", time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put(t, s, kindA, tt.name, storage.Record{Value: []byte("v"), Expires: tt.expires})
			_, err := get(t, s, kindA, tt.name)
			if tt.visible && err != nil {
				t.Errorf("Get = %v, want visible", err)
			}
			if !tt.visible && !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Get = %v, want ErrNotFound (expired)", err)
			}
			rec, ok := decode(encode(storage.Record{Value: []byte("v"), Expires: tt.expires}))
			if !ok {
				t.Fatal("decode failed")
			}
			if rec.Expires.IsZero() != tt.expires.IsZero() {
				t.Errorf("decoded Expires = %v, from %v", rec.Expires, tt.expires)
			}
		})
	}
	// A normal expiry round-trips to the nanosecond.
	exp := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)
	rec, _ := decode(encode(storage.Record{Expires: exp}))
	if !rec.Expires.Equal(exp) {
		t.Errorf("round trip %v -> %v", exp, rec.Expires)
	}
	if _, ok := decode([]byte{1, 2, 3}); ok {
		t.Error("decode accepted a value shorter than its header")
	}
}

func TestForEach(t *testing.T) {
	s := openTemp(t)
	for _, k := range []string{"c", "a", "b", "d"} {
		put(t, s, kindA, k, storage.Record{Value: []byte("v" + k)})
	}
	if got := keys(t, s, kindA); strings.Join(got, ",") != "a,b,c,d" {
		t.Errorf("ForEach order = %v", got)
	}
	stop := errors.New("stop")
	var seen []string
	err := s.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kindA, func(k string, rec storage.Record) error {
			if string(rec.Value) != "v"+k {
				return fmt.Errorf("value of %s = %q", k, rec.Value)
			}
			seen = append(seen, k)
			if k == "b" {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) {
		t.Errorf("err = %v, want the callback's error", err)
	}
	if strings.Join(seen, ",") != "a,b" {
		t.Errorf("visited %v after stopping", seen)
	}
	called := false
	if err := s.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach("no-such-kind", func(string, storage.Record) error { called = true; return nil })
	}); err != nil || called {
		t.Errorf("absent kind: err=%v called=%v", err, called)
	}
}

func TestUpdateErrorWritesNothing(t *testing.T) {
	s := openTemp(t)
	put(t, s, kindA, "keep", storage.Record{Value: []byte("before")})
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Put(kindA, "new", storage.Record{Value: []byte("x")}); err != nil {
			return err
		}
		if err := tx.Put(kindB, "new", storage.Record{Value: []byte("x")}); err != nil {
			return err
		}
		if err := tx.Put(kindA, "keep", storage.Record{Value: []byte("after")}); err != nil {
			return err
		}
		if err := tx.Delete(kindA, "keep"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("a callback error is reported as unavailable")
	}
	if _, err := get(t, s, kindA, "new"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("record written by a failed Update: %v", err)
	}
	if rawCount(t, s, kindB) != 0 {
		t.Error("bucket content written by a failed Update")
	}
	if rec, err := get(t, s, kindA, "keep"); err != nil || string(rec.Value) != "before" {
		t.Errorf("keep = %q, %v; want the value from before", rec.Value, err)
	}
}

func TestViewIsReadOnly(t *testing.T) {
	s := openTemp(t)
	put(t, s, kindA, "k", storage.Record{Value: []byte("v")})
	err := s.View(ctx, func(tx storage.Tx) error { return tx.Put(kindA, "w", storage.Record{Value: []byte("v")}) })
	if err == nil {
		t.Error("Put inside View succeeded")
	}
	err = s.View(ctx, func(tx storage.Tx) error { return tx.Delete(kindA, "k") })
	if err == nil {
		t.Error("Delete inside View succeeded")
	}
	if _, err := get(t, s, kindA, "w"); !errors.Is(err, storage.ErrNotFound) {
		t.Error("View wrote a record")
	}
	if _, err := get(t, s, kindA, "k"); err != nil {
		t.Error("View deleted a record")
	}
}

func TestBatchConcurrent(t *testing.T) {
	s := openTemp(t)
	const n = 50
	failing := func(i int) bool { return i%10 == 3 }
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Batch(ctx, func(tx storage.Tx) error {
				if err := tx.Put(kindA, fmt.Sprintf("k%02d", i), storage.Record{Value: []byte{byte(i)}}); err != nil {
					return err
				}
				if failing(i) {
					return fmt.Errorf("caller %d fails", i)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i := range n {
		key := fmt.Sprintf("k%02d", i)
		rec, err := get(t, s, kindA, key)
		if failing(i) {
			if errs[i] == nil || !strings.Contains(errs[i].Error(), fmt.Sprintf("caller %d", i)) {
				t.Errorf("caller %d: err = %v, want its own error", i, errs[i])
			}
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("caller %d failed but its write is stored", i)
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("caller %d: %v (another caller's failure leaked)", i, errs[i])
		}
		if err != nil || len(rec.Value) != 1 || rec.Value[0] != byte(i) {
			t.Errorf("caller %d: stored %v, %v", i, rec.Value, err)
		}
	}
	if got, want := rawCount(t, s, kindA), n-5; got != want {
		t.Errorf("%d records, want %d", got, want)
	}
}

func TestSweep(t *testing.T) {
	s := openTemp(t)
	now := time.Now()
	// Records that expire in an hour are live for Get (which uses the real
	// clock) but expired for a Sweep told it is two hours later, so the
	// test can tell "hidden" from "deleted".
	soon := now.Add(time.Hour)
	later := now.Add(2 * time.Hour)
	if err := s.Update(ctx, func(tx storage.Tx) error {
		for i := range 10 {
			for _, kind := range []storage.Kind{kindA, kindB} {
				if err := tx.Put(kind, fmt.Sprintf("exp%d", i), storage.Record{Value: []byte("e"), Expires: soon}); err != nil {
					return err
				}
				if err := tx.Put(kind, fmt.Sprintf("live%d", i), storage.Record{Value: []byte("l"), Expires: now.Add(3 * time.Hour)}); err != nil {
					return err
				}
			}
			if err := tx.Put(kindA, fmt.Sprintf("forever%d", i), storage.Record{Value: []byte("f")}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Not yet expired at now: nothing to do.
	if n, err := s.Sweep(ctx, now, 1000); err != nil || n != 0 {
		t.Fatalf("Sweep(now) = %d, %v; want 0", n, err)
	}
	if n, err := s.Sweep(ctx, later, 0); err != nil || n != 0 {
		t.Fatalf("Sweep(limit 0) = %d, %v", n, err)
	}
	n, err := s.Sweep(ctx, later, 15)
	if err != nil || n != 15 {
		t.Fatalf("Sweep(limit 15) = %d, %v; want 15", n, err)
	}
	if got := rawCount(t, s, kindA) + rawCount(t, s, kindB); got != 50-15 {
		t.Errorf("%d raw records after sweeping 15 of 50, want 35", got)
	}
	n, err = s.Sweep(ctx, later, 1000)
	if err != nil || n != 5 {
		t.Fatalf("second Sweep = %d, %v; want the 5 left", n, err)
	}
	for _, kind := range []storage.Kind{kindA, kindB} {
		for i := range 10 {
			if _, err := get(t, s, kind, fmt.Sprintf("exp%d", i)); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s/exp%d survived the sweep", kind, i)
			}
			if _, err := get(t, s, kind, fmt.Sprintf("live%d", i)); err != nil {
				t.Errorf("%s/live%d: %v", kind, i, err)
			}
		}
	}
	if got := len(keys(t, s, kindA)); got != 20 {
		t.Errorf("%d records of kind a, want 20 (live + forever)", got)
	}
	if n, _ := s.Sweep(ctx, later, 1000); n != 0 {
		t.Errorf("third Sweep deleted %d", n)
	}
}

// TestSweepMany crosses the per-transaction batch size and checks that
// undecodable entries are left alone.
func TestSweepMany(t *testing.T) {
	s := openTemp(t)
	past := time.Now().Add(-time.Minute)
	const total = 700
	if err := s.Update(ctx, func(tx storage.Tx) error {
		for i := range total {
			kind := []storage.Kind{kindA, kindB, "c"}[i%3]
			if err := tx.Put(kind, fmt.Sprintf("%04d", i), storage.Record{Expires: past}); err != nil {
				return err
			}
		}
		return tx.Put(kindA, "keep", storage.Record{Value: []byte("k")})
	}); err != nil {
		t.Fatal(err)
	}
	// An entry too short to be a record (written by something else).
	if err := s.db.Update(func(btx *bbolt.Tx) error { return btx.Bucket([]byte(kindA)).Put([]byte("short"), []byte{1}) }); err != nil {
		t.Fatal(err)
	}

	n, err := s.Sweep(ctx, time.Now(), 300)
	if err != nil || n != 300 {
		t.Fatalf("Sweep(limit 300) = %d, %v", n, err)
	}
	n, err = s.Sweep(ctx, time.Now(), 10_000)
	if err != nil || n != total-300 {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, total-300)
	}
	if got := rawCount(t, s, kindA) + rawCount(t, s, kindB) + rawCount(t, s, "c"); got != 2 {
		t.Errorf("%d entries left, want 2 (keep and short)", got)
	}
	if _, err := get(t, s, kindA, "short"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("an undecodable entry is visible: %v", err)
	}

	// A cancelled context stops after the first transaction.
	if err := s.Update(ctx, func(tx storage.Tx) error {
		for i := range total {
			if err := tx.Put(kindB, fmt.Sprintf("x%04d", i), storage.Record{Expires: past}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	n, err = s.Sweep(cctx, time.Now(), 10_000)
	if err != nil || n == 0 || n >= total {
		t.Errorf("Sweep with a cancelled context = %d, %v; want one transaction's worth", n, err)
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	noop := func(storage.Tx) error { return nil }
	for name, err := range map[string]error{
		"View":   s.View(ctx, noop),
		"Update": s.Update(ctx, noop),
		"Batch":  s.Batch(ctx, noop),
	} {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s on a closed store: %v, want ErrUnavailable", name, err)
		}
	}
	if _, err := s.Sweep(ctx, time.Now(), 10); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Sweep on a closed store: %v, want ErrUnavailable", err)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "oauth.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, kindA, "k", storage.Record{Value: []byte("v")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	s, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rec, err := get(t, s, kindA, "k"); err != nil || string(rec.Value) != "v" {
		t.Errorf("after reopen: %q, %v", rec.Value, err)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	first, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 100 * time.Millisecond
	start := time.Now()
	second, err := Open(path, timeout)
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("a second handle opened a locked file")
	}
	if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), "storage_path") {
		t.Errorf("err = %q, want it to say the file is locked and what to do", err)
	}
	// bbolt retries every 50ms and gives up one retry before the timeout.
	if elapsed > timeout+2*time.Second {
		t.Errorf("gave up after %v, want about %v", elapsed, timeout)
	}
	// Once the first handle is closed the file opens again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err = Open(path, timeout)
	if err != nil {
		t.Fatalf("Open after the lock was released: %v", err)
	}
	second.Close()
}

// corruptFiles are damaged database files: each must give an error that
// tells the operator what to do, never a panic or a crash.
func corruptFiles(t *testing.T) map[string][]byte {
	t.Helper()
	// A real database with some content, to truncate.
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := Open(good, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx storage.Tx) error {
		for i := range 500 {
			if err := tx.Put(kindA, fmt.Sprintf("k%04d", i), storage.Record{Value: bytes.Repeat([]byte("v"), 200)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	full, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.db")
	s, err = Open(fresh, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	empty, _ := os.ReadFile(fresh)

	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i*131 + i>>8)
	}
	zeros := make([]byte, 32<<10)
	return map[string][]byte{
		"text":                        []byte("this is not a bolt database\n"),
		"one byte":                    {0},
		"garbage":                     garbage,
		"zeros":                       zeros,
		"truncated to 100 bytes":      full[:100],
		"truncated to one page":       full[:4096],
		"truncated to meta pages":     full[:8192],
		"truncated to three pages":    full[:12288],
		"truncated fresh db":          empty[:8192],
		"truncated fresh db +1 page":  empty[:12288],
		"meta pages of good, garbage": append(append([]byte{}, full[:8192]...), garbage...),
	}
}

func TestOpenCorrupt(t *testing.T) {
	for name, content := range corruptFiles(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "oauth.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, time.Second)
			if err == nil {
				s.Close()
				t.Fatalf("Open of a damaged file (%d bytes) succeeded", len(content))
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, "backup") || !strings.Contains(msg, "move it away") {
				t.Errorf("err = %q, want the path and what to do", msg)
			}
			// The failed Open released the file: once it is moved away, a
			// fresh database opens at the same path without waiting for a
			// lock.
			if err := os.Rename(path, path+".bad"); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path, 100*time.Millisecond)
			if err != nil {
				t.Fatalf("Open after moving the damaged file away: %v", err)
			}
			s.Close()
		})
	}
}

// TestOpenCorruptReleasesLock: a file repaired in place (same inode) after
// a failed Open must not look locked by the failed attempt.
func TestOpenCorruptReleasesLock(t *testing.T) {
	files := corruptFiles(t)
	dir := t.TempDir()
	goodPath := filepath.Join(dir, "good.db")
	s, err := Open(goodPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, kindA, "k", storage.Record{Value: []byte("v")})
	s.Close()
	good, _ := os.ReadFile(goodPath)

	for _, name := range []string{"truncated to meta pages", "truncated fresh db", "garbage"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "oauth.db")
			if err := os.WriteFile(path, files[name], 0o600); err != nil {
				t.Fatal(err)
			}
			if s, err := Open(path, time.Second); err == nil {
				s.Close()
				t.Fatal("Open of a damaged file succeeded")
			}
			// Restore in place: same file, new content.
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Write(good)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, 200*time.Millisecond)
			if err != nil {
				t.Fatalf("Open after an in-place restore: %v", err)
			}
			defer s.Close()
			if rec, err := get(t, s, kindA, "k"); err != nil || string(rec.Value) != "v" {
				t.Errorf("restored content: %q, %v", rec.Value, err)
			}
		})
	}
}

func TestOpenEmptyFileInitializes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("an empty file should become a new database: %v", err)
	}
	defer s.Close()
	put(t, s, kindA, "k", storage.Record{Value: []byte("v")})
}

func TestOpenUnwritableLocation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A read-only directory. Root ignores permission bits, so as root use
	// a directory no one can create files in.
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		readOnly = "/proc/self"
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"read-only directory", filepath.Join(readOnly, "oauth.db"), "oauth storage"},
		{"read-only directory, nested", filepath.Join(readOnly, "sub", "oauth.db"), "creating directory"},
		{"parent is a file", filepath.Join(file, "oauth.db"), "creating directory"},
		{"path is a directory", dir, "oauth storage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, 100*time.Millisecond)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tt.path)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("err = %q, want it to mention %q and the path", err, tt.want)
			}
		})
	}
}

func TestWrap(t *testing.T) {
	plain := errors.New("plain")
	if got := wrap(nil); got != nil {
		t.Errorf("wrap(nil) = %v", got)
	}
	if got := wrap(plain); got != plain {
		t.Errorf("wrap(plain) = %v, want it unchanged", got)
	}
	for _, err := range []error{os.ErrPermission, &os.PathError{Op: "write", Path: "/x", Err: errors.New("no space left on device")}} {
		if got := wrap(err); !errors.Is(got, storage.ErrUnavailable) {
			t.Errorf("wrap(%v) = %v, want ErrUnavailable", err, got)
		}
	}
}

func TestRecordExpired(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		exp  time.Time
		want bool
	}{
		{time.Time{}, false},
		{now.Add(time.Nanosecond), false},
		{now, true},
		{now.Add(-time.Nanosecond), true},
	}
	for _, tt := range tests {
		if got := (storage.Record{Expires: tt.exp}).Expired(now); got != tt.want {
			t.Errorf("Expired(%v) at %v = %v, want %v", tt.exp, now, got, tt.want)
		}
	}
}

// A panic inside bbolt's commit (outside the callers' functions, which
// are guarded) reaches the caller that led the commit, answers the rest
// of its group with an error, and leaves the store writable: the next
// caller leads.
func TestBatchCommitPanic(t *testing.T) {
	s := openTemp(t)
	var (
		wg       sync.WaitGroup
		panicked atomic.Int32
		errs     = make(chan error, 9)
	)
	call := func(fn func(*bbolt.Tx) error) {
		defer wg.Done()
		defer func() {
			if recover() != nil {
				panicked.Add(1)
			}
		}()
		errs <- s.commit.do(fn)
	}
	wg.Add(1)
	go call(func(btx *bbolt.Tx) error {
		btx.OnCommit(func() { panic("bbolt assertion") })
		return nil
	})
	for i := range 8 {
		wg.Add(1)
		go call(func(btx *bbolt.Tx) error {
			return tx{btx}.Put(kindA, fmt.Sprint(i), storage.Record{Value: []byte("v")})
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("callers still waiting after a commit panicked")
	}
	if panicked.Load() != 1 {
		t.Errorf("%d callers saw the panic, want the one that led", panicked.Load())
	}
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, errCommitPanicked) {
			t.Errorf("a caller got %v", err)
		}
	}
	after := make(chan error, 1)
	go func() {
		after <- s.Batch(ctx, func(tx storage.Tx) error {
			return tx.Put(kindA, "after", storage.Record{Value: []byte("v")})
		})
	}()
	select {
	case err := <-after:
		if err != nil {
			t.Fatalf("a write after the panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write after the panic never returns: the store is wedged")
	}
}
