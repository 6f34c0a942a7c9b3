package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

// noServer is an admin address where nothing answers.
const noServer = "127.0.0.1:1"

// writeCaddyfile writes a Caddyfile whose oauth app has the storage
// lines given, and returns its path.
func writeCaddyfile(t *testing.T, storage string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cfg := "{\n\toauth {\n\t\tissuer https://as.test\n\t\tkey_encryption_key {env.CMDTEST_KEK}\n\t\t" + storage + "\n\t}\n}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// boltWithUser makes a bbolt storage file at path holding the user alice.
func boltWithUser(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := grants.StoredUsers(st).Put(context.Background(), &grants.User{Name: "alice", PasswordHash: testPasswordHash}, true); err != nil {
		t.Fatal(err)
	}
}

// testPasswordHash is a bcrypt-shaped hash; no test signs in with it.
const testPasswordHash = "$2a$04$HZL6Zm4mLb3r7gpFs6cJ2uWqN3mSxP3t1m6G4m4G2m8C7fQ0h2bRe"

// hasAlice reports whether the bbolt file at path still holds alice.
func hasAlice(t *testing.T, path string) bool {
	t.Helper()
	st, err := bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, err := grants.StoredUsers(st).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(list) == 1 && list[0].Name == "alice"
}

// TestUserCommandPostgresConfigNoServer: with a config whose storage is
// PostgreSQL and no server answering, user commands refuse and say what
// to do; they never act on a bbolt file instead, neither one given with
// --storage nor one at the default path.
func TestUserCommandPostgresConfigNoServer(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	def := filepath.Join(caddy.AppDataDir(), "oauth", "oauth.db")
	boltWithUser(t, def)
	other := filepath.Join(t.TempDir(), "other.db")
	boltWithUser(t, other)
	cfg := writeCaddyfile(t, "storage postgres {\n\t\t\tdsn postgres://oauth:s3cret-pw@db.internal:5432/oauth\n\t\t}")
	for _, argv := range [][]string{
		{"user", "remove", "alice", "--address", noServer, "--config", cfg},
		{"user", "remove", "alice", "--address", noServer, "--config", cfg, "--storage", other},
		{"user", "list", "--address", noServer, "--config", cfg},
	} {
		_, stderr, code := runOAuth(t, argv...)
		if code != 1 || !strings.Contains(stderr, `the storage of `+cfg+` is "postgres"`) || !strings.Contains(stderr, "--address") ||
			strings.Contains(stderr, "s3cret-pw") {
			t.Errorf("caddy oauth %s: exit %d, stderr %q; want a refusal that says to use a running node", strings.Join(argv, " "), code, stderr)
		}
	}
	if !hasAlice(t, def) || !hasAlice(t, other) {
		t.Fatal("a user command changed a bbolt file although the config's storage is PostgreSQL")
	}
}

// TestUserCommandBoltConfigNoServer: with no server answering, user
// commands open the bbolt file the config names, and refuse a --storage
// that is another file.
func TestUserCommandBoltConfigNoServer(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	def := filepath.Join(caddy.AppDataDir(), "oauth", "oauth.db")
	boltWithUser(t, def)
	named := filepath.Join(t.TempDir(), "named.db")
	boltWithUser(t, named)
	cfg := writeCaddyfile(t, "storage_path "+named)

	_, stderr, code := runOAuth(t, "user", "remove", "alice", "--address", noServer, "--config", cfg, "--storage", def)
	if code != 1 || !strings.Contains(stderr, "is not the storage file of "+cfg) {
		t.Fatalf("--storage of another file: exit %d, %q", code, stderr)
	}
	stdout, stderr, code := runOAuth(t, "user", "remove", "alice", "--address", noServer, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, named) {
		t.Fatalf("remove on the config's file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if hasAlice(t, named) || !hasAlice(t, def) {
		t.Fatal("the user was not removed from the config's file, or was removed from the default one")
	}
}

// TestBackupCommandPostgres: `caddy oauth backup` with a PostgreSQL
// config refuses and points at pg_dump, without writing anything; a
// server on PostgreSQL answers 501 with the same advice, which the
// command prints as it is.
func TestBackupCommandPostgres(t *testing.T) {
	cfg := writeCaddyfile(t, "storage postgres {\n\t\t\tdsn postgres://oauth:s3cret-pw@db.internal:5432/oauth\n\t\t}")
	target := filepath.Join(t.TempDir(), "b.db")
	_, stderr, code := runOAuth(t, "backup", target, "--address", noServer, "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "is PostgreSQL") || !strings.Contains(stderr, "pg_dump") || strings.Contains(stderr, "s3cret-pw") {
		t.Fatalf("backup with a PostgreSQL config: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused backup left %s: %v", target, err)
	}

	rec := httptest.NewRecorder()
	err := serveBackup(rec, httptest.NewRequest(http.MethodGet, "/oauth/backup", nil), (*postgres.Store)(nil), zap.NewNop())
	var ae caddy.APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusNotImplemented || !strings.Contains(ae.Err.Error(), "pg_dump") {
		t.Fatalf("admin backup on PostgreSQL: %v", err)
	}
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ae.HTTPStatus)
		w.Write([]byte(`{"error":` + jsonString(ae.Err.Error()) + `}`))
	}))
	defer admin.Close()
	_, stderr, code = runOAuth(t, "backup", target, "--address", strings.TrimPrefix(admin.URL, "http://"))
	if code != 1 || stderr != "error: "+ae.Err.Error()+"\n" {
		t.Fatalf("backup from a server on PostgreSQL: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused backup left %s: %v", target, err)
	}
}

// jsonString is s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
