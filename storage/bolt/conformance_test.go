package bolt

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/storagetest"
)

// TestConformance runs the storage suite against bolt, with the full-disk
// and read-only faults where the platform can make them (faultHooks).
func TestConformance(t *testing.T) {
	full, readOnly := faultHooks()
	storagetest.RunBackend(t, storagetest.Backend{
		Open:     func(t *testing.T) storage.Store { return openAt(t, filepath.Join(t.TempDir(), "oauth.db")) },
		FullDisk: full,
		ReadOnly: readOnly,
	})
}

// openAt opens the store at path and closes it when the test ends.
func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
