package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// The CLI puts user names into admin API paths escaped: removing
// 'carol2?x' must address the user 'carol2?x', never 'carol2' with a
// query, and a name with '/' or '%' stays one path segment.
func TestUserCommandEscapesName(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []*http.Request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, name := range []string{"carol2?x", "a/b", "50%", "x#y"} {
		for _, verb := range []string{"remove", "passwd"} {
			seen = nil
			if err := viaAdmin(addr, verb, adminUser{Name: name, PasswordHash: "h"}, io.Discard); err != nil {
				t.Fatalf("%s %q: %v", verb, name, err)
			}
			if len(seen) != 1 {
				t.Fatalf("%s %q: %d requests", verb, name, len(seen))
			}
			r := seen[0]
			if r.URL.Path != "/oauth/users/"+name || r.URL.RawQuery != "" || r.URL.Fragment != "" {
				t.Fatalf("%s %q went to path %q query %q", verb, name, r.URL.Path, r.URL.RawQuery)
			}
		}
	}
}

// `caddy oauth user passwd` on the storage file (no server running) keeps
// the user's claims when no --claim is given, and ends the user's
// sign-in sessions.
func TestUserPasswdOfflineKeepsClaims(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	st, err := bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h1, _ := bcrypt.GenerateFromPassword([]byte("dave-pw-1"), bcrypt.MinCost)
	h2, _ := bcrypt.GenerateFromPassword([]byte("dave-pw-2"), bcrypt.MinCost)
	users := grants.StoredUsers(st)
	if err := users.Put(ctx, &grants.User{Name: "dave", PasswordHash: string(h1), Claims: map[string]string{"email": "dave@example.test"}}, true); err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx storage.Tx) error {
		return tx.Put(storage.KindSessions, "s1", storage.Record{Value: []byte(`{"user":"dave","auth_time":1}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := viaFile(path, "passwd", adminUser{Name: "dave", PasswordHash: string(h2)}, io.Discard, "localhost:0"); err != nil {
		t.Fatal(err)
	}
	st, err = bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := grants.StoredUsers(st).Authenticate(ctx, "dave", "dave-pw-2")
	if err != nil || u.Claims["email"] != "dave@example.test" {
		t.Fatalf("after passwd: %+v, %v; want the new password and the old claims", u, err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		_, err := tx.Get(storage.KindSessions, "s1")
		return err
	})
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("dave's session outlived the password change: %v", err)
	}
}
