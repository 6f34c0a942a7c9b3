package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/storagetest"
)

// TestConformance runs the storage suite against a real PostgreSQL, each
// subtest on a database of its own. The read-only medium is a database
// whose new sessions are read-only (as a standby that a failover has not
// promoted, or a database an operator froze): every write must fail as
// ErrUnavailable and reads go on.
func TestConformance(t *testing.T) {
	storagetest.RunBackend(t, storagetest.Backend{
		Open: func(t *testing.T) storage.Store { return openStore(t) },
		ReadOnly: func(t *testing.T) (storage.Store, func(*testing.T)) {
			s := openStore(t)
			return s, func(t *testing.T) {
				name := s.pool.Config().ConnConfig.Database
				if !strings.HasPrefix(name, "t") {
					t.Fatalf("database %q is not a test's", name)
				}
				if _, err := admin.Exec(context.Background(), "ALTER DATABASE "+name+" SET default_transaction_read_only = on"); err != nil {
					t.Fatal(err)
				}
				// The setting applies to new sessions.
				s.pool.Reset()
				s.readPool.Reset()
			}
		},
	})
}
