package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// gatedWriter holds the first Write of a backup until release is closed,
// so that the test can let writers commit while the copy is under way.
type gatedWriter struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	buf     bytes.Buffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.once.Do(func() {
		close(g.started)
		<-g.release
	})
	return g.buf.Write(p)
}

// TestBackupUnderWriters takes a backup while writers commit records
// (with Update and Batch) and checks that the copy is a valid bbolt file
// holding every record committed before the backup began, none whose
// transaction began after it ended, and that the writers went on while
// it was written.
func TestBackupUnderWriters(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	var (
		mu        sync.Mutex
		committed = map[string]string{} // key -> value, once Update/Batch returned nil
		after     atomic.Bool           // set once Backup returned
		late      []string              // keys whose transaction began after Backup returned
		seq       atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%08d", w, seq.Add(1))
				val := strings.Repeat(key, 20) // spread records over many pages
				isLate := after.Load()
				write := s.Update
				if w%2 == 1 {
					write = s.Batch
				}
				err := write(ctx, func(tx storage.Tx) error {
					return tx.Put(kindA, key, storage.Record{Value: []byte(val)})
				})
				if err != nil {
					t.Errorf("writing %s: %v", key, err)
					return
				}
				mu.Lock()
				committed[key] = val
				if isLate {
					late = append(late, key)
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(committed)
	}
	g := &gatedWriter{started: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(g.release) }) }
	waitFor := func(n int, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); count() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) || t.Failed() {
				release() // a writer stuck behind the backup gets going again
				close(stop)
				wg.Wait()
				t.Fatalf("%s: only %d records committed", what, count())
			}
		}
	}
	waitFor(300, "before the backup")

	mu.Lock()
	before := make(map[string]string, len(committed))
	for k, v := range committed {
		before[k] = v
	}
	mu.Unlock()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Backup(ctx, g)
		done <- result{n, err}
	}()
	<-g.started
	// The copy's transaction is open: writers must not be held up by it.
	atStart := count()
	waitFor(atStart+200, "while the backup was being written (writers blocked by the backup?)")
	release()
	res := <-done
	after.Store(true)
	waitFor(count()+200, "after the backup")
	close(stop)
	wg.Wait()
	if res.err != nil {
		t.Fatalf("Backup: %v", res.err)
	}
	if res.n != int64(g.buf.Len()) {
		t.Fatalf("Backup reported %d bytes, wrote %d", res.n, g.buf.Len())
	}

	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, g.buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(path); err != nil {
		t.Fatalf("CheckFile of the backup: %v", err)
	}
	b, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("opening the backup: %v", err)
	}
	defer b.Close()
	inBackup := map[string]string{}
	if err := b.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kindA, func(k string, rec storage.Record) error {
			inBackup[k] = string(rec.Value)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	for k, v := range before {
		if got, ok := inBackup[k]; !ok || got != v {
			t.Fatalf("record %s committed before the backup is missing from it (present %v)", k, ok)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, v := range inBackup {
		if committed[k] != v {
			t.Fatalf("record %s in the backup was never committed with that value", k)
		}
	}
	for _, k := range late {
		if _, ok := inBackup[k]; ok {
			t.Fatalf("record %s, written after the backup returned, is in it", k)
		}
	}
	if len(inBackup) == len(committed) {
		t.Fatalf("the backup holds all %d records, including those written after it", len(committed))
	}
	t.Logf("%d records before the backup, %d in it, %d in the end; %d bytes", len(before), len(inBackup), len(committed), res.n)
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full at the other end") }

// TestBackupErrors: a done context and a failing writer stop the backup
// with their own error, which is not the store being unavailable; the
// store works on.
func TestBackupErrors(t *testing.T) {
	s := openTemp(t)
	put(t, s, kindA, "k", storage.Record{Value: []byte("v")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := s.Backup(ctx, &buf); !errors.Is(err, context.Canceled) || errors.Is(err, storage.ErrUnavailable) || buf.Len() != 0 {
		t.Fatalf("Backup with a done context: %v, %d bytes written", err, buf.Len())
	}
	_, err := s.Backup(context.Background(), failWriter{})
	if err == nil || errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "disk full at the other end") {
		t.Fatalf("Backup to a failing writer: %v", err)
	}
	// Cancelled in the middle: the writer sees no more bytes.
	ctx, cancel = context.WithCancel(context.Background())
	cw := &cancelAfter{cancel: cancel}
	if _, err := s.Backup(ctx, cw); !errors.Is(err, context.Canceled) || cw.writes != 1 {
		t.Fatalf("Backup cancelled after the first write: %v after %d writes", err, cw.writes)
	}
	put(t, s, kindA, "k2", storage.Record{Value: []byte("v")})
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		t.Fatalf("Backup after failed ones: %v", err)
	}
}

type cancelAfter struct {
	cancel context.CancelFunc
	writes int
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.writes++
	c.cancel()
	return len(p), nil
}

// TestCheckFile: a backup cut short, a file that is not a store and an
// empty file are refused; a whole one passes.
func TestCheckFile(t *testing.T) {
	s := openTemp(t)
	for i := range 500 {
		put(t, s, kindA, fmt.Sprintf("k%04d", i), storage.Record{Value: bytes.Repeat([]byte("x"), 200)})
	}
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := CheckFile(write("whole.db", buf.Bytes())); err != nil {
		t.Fatalf("whole backup: %v", err)
	}
	for name, b := range map[string][]byte{
		"short.db": buf.Bytes()[:buf.Len()-4096],
		"junk.db":  bytes.Repeat([]byte("not a bolt file "), 1024),
		"empty.db": nil,
	} {
		if err := CheckFile(write(name, b)); err == nil {
			t.Errorf("CheckFile(%s) = nil, want an error", name)
		}
	}
}
