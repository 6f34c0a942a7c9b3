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
