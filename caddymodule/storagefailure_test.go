package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/internal/lograte"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// unopenableApp is an oauth app whose storage cannot open: its directory
// is a regular file (which stops root too).
func unopenableApp(t *testing.T) (*App, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "oauth.db")
	app, err := provisionApp("oauth {\n issuer https://as.test\n storage_path " + path + "\n}")
	if err != nil {
		t.Fatal(err)
	}
	return app, path
}

// withUUID tags r as Caddy does, with a request uuid in the replacer.
func withUUID(r *http.Request, id string) *http.Request {
	repl := caddy.NewReplacer()
	repl.Set("http.request.uuid", id)
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}

// checkBurstLog checks the log of a burst of n identical failures that
// took elapsed: ERROR lines, about one a second, the first with the
// request id and the cause.
func checkBurstLog(t *testing.T, logs *observer.ObservedLogs, elapsed time.Duration, firstID, cause string) {
	t.Helper()
	lines := logs.FilterLevelExact(zapcore.ErrorLevel).AllUntimed()
	if bound := 1 + int(elapsed/lograte.Interval); len(lines) < 1 || len(lines) > bound {
		t.Fatalf("100 failures wrote %d ERROR lines, want 1..%d", len(lines), bound)
	}
	m := lines[0].ContextMap()
	if m["request_id"] != firstID {
		t.Errorf("ERROR line %v: request_id %v, want %q", m, m["request_id"], firstID)
	}
	if got, _ := m["error"].(string); !strings.Contains(got, cause) {
		t.Errorf("ERROR line %v does not name the cause %q", m, cause)
	}
}

// While the storage cannot open, every request to oauth_server fails the
// same way: 503 temporarily_unavailable with Retry-After, and about one
// ERROR line a second, not one per request.
func TestServerStorageUnavailable(t *testing.T) {
	app, path := unopenableApp(t)
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	s := &Server{app: app, logger: logger, failures: lograte.New(logger)}
	start := time.Now()
	for i := range 100 {
		r := withUUID(httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials")), fmt.Sprint("req-", i))
		w := httptest.NewRecorder()
		if err := s.ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"error":"temporarily_unavailable"`) {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body.String())
		}
		if got := w.Header().Get("Retry-After"); got != fmt.Sprint(grants.RetryAfterUnavailable) {
			t.Fatalf("Retry-After = %q, want %d", got, grants.RetryAfterUnavailable)
		}
	}
	checkBurstLog(t, logs, time.Since(start), "req-0", filepath.Dir(path))
}

// failingStore is a real store whose reads and writes fail as a full
// disk does once fail is set.
type failingStore struct {
	storage.Store
	fail atomic.Bool
}

var errDiskFull = fmt.Errorf("%w: write /var/lib/caddy/oauth/oauth.db: %w", storage.ErrUnavailable, syscall.ENOSPC)

func (s *failingStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	if s.fail.Load() {
		return errDiskFull
	}
	return s.Store.View(ctx, fn)
}

func (s *failingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if s.fail.Load() {
		return errDiskFull
	}
	return s.Store.Update(ctx, fn)
}

func (s *failingStore) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	if s.fail.Load() {
		return errDiskFull
	}
	return s.Store.Batch(ctx, fn)
}

// The admin API answers a storage failure 503 with Retry-After, and an
// error that names the cause (Caddy's admin server logs it at ERROR),
// not a 400 that blames the operator's request or a bare 500.
func TestAdminStorageUnavailable(t *testing.T) {
	eng, err := grants.NewEngine(grants.Config{Issuer: "https://as.test", AccessTokenTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fs := &failingStore{Store: st}
	if err := eng.Start(context.Background(), fs, nil); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	hash := "$2a$04$abcdefghijklmnopqrstuuRkQTcy8MuNxKQlzVXzvJ6wHb3yQH6W."
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/oauth/users", ""},
		{http.MethodPost, "/oauth/users", `{"name":"dave","password_hash":"` + hash + `"}`},
		{http.MethodPut, "/oauth/users/dave", `{"claims":{"email":"d@x.test"}}`},
		{http.MethodDelete, "/oauth/users/dave", ""},
		{http.MethodGet, "/oauth/clients", ""},
		{http.MethodPost, "/oauth/clients", `{"client_id":"svc","grant_types":["client_credentials"]}`},
		{http.MethodDelete, "/oauth/clients/svc", ""},
		{http.MethodPost, "/oauth/revoke", `{"subject":"dave"}`},
		{http.MethodPost, "/oauth/keys/rotate", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			w := httptest.NewRecorder()
			err := retryLater(w, routeAdmin(w, r, eng))
			var ae caddy.APIError
			if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusServiceUnavailable {
				t.Fatalf("error %v (%#v), want a 503 APIError", err, ae.HTTPStatus)
			}
			if !strings.Contains(ae.Message, "no space left on device") {
				t.Errorf("message %q does not name the cause", ae.Message)
			}
			if got := w.Header().Get("Retry-After"); got != fmt.Sprint(grants.RetryAfterUnavailable) {
				t.Errorf("Retry-After = %q", got)
			}
		})
	}
}
