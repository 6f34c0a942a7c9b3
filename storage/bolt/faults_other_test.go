//go:build !linux

package bolt

import (
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// faultHooks: mounting a small file system for the fault tests is done
// on Linux only.
func faultHooks() (func(*testing.T) (storage.Store, func(*testing.T) func()), func(*testing.T) (storage.Store, func(*testing.T))) {
	return nil, nil
}
