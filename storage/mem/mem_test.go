package mem

import (
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/storagetest"
)

// TestConformance: mem behaves as every backend must. It has no medium to
// fill or make read-only, so the suite's fault subtests do not apply.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st := New()
		t.Cleanup(func() { _ = st.Close() })
		return st
	})
}
