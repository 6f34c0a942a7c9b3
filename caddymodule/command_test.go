package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
