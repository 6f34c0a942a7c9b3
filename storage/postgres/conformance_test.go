package postgres

import (
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/storagetest"
)

// TestConformance runs the storage suite against a real PostgreSQL, each
// subtest on a database of its own.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return openStore(t) })
}
