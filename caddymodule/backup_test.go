package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
	"github.com/oauthgate/caddy-oauthgate/storage/mem"
)

func openBolt(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put(storage.KindUsers, "alice", storage.Record{Value: []byte("x")})
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestServeBackup: GET answers the file as a download that opens as a
// store; other methods answer 405 with Allow; a backend that cannot back
// up answers 501.
func TestServeBackup(t *testing.T) {
	st := openBolt(t)
	rec := httptest.NewRecorder()
	if err := serveBackup(rec, httptest.NewRequest(http.MethodGet, "/oauth/backup", nil), st, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	h := rec.Header()
	if rec.Code != http.StatusOK || h.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(h.Get("Content-Disposition"), `attachment; filename="oauth-backup-`) || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET: %d %v", rec.Code, h)
	}
	path := filepath.Join(t.TempDir(), "b.db")
	if err := os.WriteFile(path, rec.Body.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := bolt.CheckFile(path); err != nil {
		t.Fatalf("the answer is not a valid store: %v", err)
	}

	rec = httptest.NewRecorder()
	err := serveBackup(rec, httptest.NewRequest(http.MethodPost, "/oauth/backup", nil), st, zap.NewNop())
	var ae caddy.APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET" {
		t.Fatalf("POST: %v, Allow %q", err, rec.Header().Get("Allow"))
	}
	rec = httptest.NewRecorder()
	err = serveBackup(rec, httptest.NewRequest(http.MethodGet, "/oauth/backup", nil), mem.New(), zap.NewNop())
	if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusNotImplemented || rec.Header().Get("Content-Disposition") != "" {
		t.Fatalf("GET on a backend without backups: %v %v", err, rec.Header())
	}
}

// failAfterFirst is a response whose connection breaks after the first
// write.
type failAfterFirst struct {
	*httptest.ResponseRecorder
	writes int
}

func (f *failAfterFirst) Write(p []byte) (int, error) {
	f.writes++
	if f.writes > 1 {
		return 0, errors.New("connection reset")
	}
	return f.ResponseRecorder.Write(p)
}

// TestServeBackupCutShort: a failure after bytes went out cuts the
// connection (http.ErrAbortHandler) instead of ending the answer as if
// it were whole.
func TestServeBackupCutShort(t *testing.T) {
	st := openBolt(t)
	w := &failAfterFirst{ResponseRecorder: httptest.NewRecorder()}
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", r)
		}
	}()
	_ = serveBackup(w, httptest.NewRequest(http.MethodGet, "/oauth/backup", nil), st, zap.NewNop())
	t.Fatal("serveBackup returned after a failure mid-stream")
}

// TestPlaceBackup: without force an existing file is kept (and the
// temporary file stays for the caller to remove); with force it is
// replaced.
func TestPlaceBackup(t *testing.T) {
	dir := t.TempDir()
	tmp, target := filepath.Join(dir, ".b.tmp"), filepath.Join(dir, "b.db")
	for _, f := range []string{tmp, target} {
		if err := os.WriteFile(f, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := place(tmp, target, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("place over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != target {
		t.Fatalf("the existing file was changed: %q", b)
	}
	if err := place(tmp, target, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != tmp {
		t.Fatalf("--force did not replace the file: %q", b)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temporary file still there: %v", err)
	}
	// A new name: linked into place, the temporary name removed.
	if err := os.WriteFile(tmp, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "c.db")
	if err := place(tmp, fresh, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(fresh); string(b) != "new" {
		t.Fatalf("placed file holds %q", b)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temporary file still there: %v", err)
	}
}

// stalledReader is a response whose client stopped reading: a write
// blocks until the write deadline the handler set passes, as a
// connection's does.
type stalledReader struct {
	*httptest.ResponseRecorder
	deadline time.Time
	writes   int
}

func (s *stalledReader) SetWriteDeadline(d time.Time) error { s.deadline = d; return nil }

func (s *stalledReader) Write(p []byte) (int, error) {
	s.writes++
	if s.writes == 1 {
		return s.ResponseRecorder.Write(p)
	}
	if s.deadline.IsZero() {
		select {} // no deadline: the copy would be held open for ever
	}
	time.Sleep(time.Until(s.deadline))
	return 0, os.ErrDeadlineExceeded
}

// TestServeBackupStalledClient: a client that stops reading does not hold
// the copy (and its read transaction) open: each write gets a deadline,
// and when it passes the connection is cut.
func TestServeBackupStalledClient(t *testing.T) {
	old := backupStallTimeout
	backupStallTimeout = 50 * time.Millisecond
	defer func() { backupStallTimeout = old }()
	st := openBolt(t)
	w := &stalledReader{ResponseRecorder: httptest.NewRecorder()}
	done := make(chan any)
	go func() {
		defer func() { done <- recover() }()
		_ = serveBackup(w, httptest.NewRequest(http.MethodGet, "/oauth/backup", nil), st, zap.NewNop())
	}()
	select {
	case r := <-done:
		if r != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled backup download was not cut")
	}
}
