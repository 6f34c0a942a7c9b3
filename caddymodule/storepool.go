package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// stores shares one open store per backend identity (StoreOpener's
// StoreKey: a bbolt file, a database DSN) across configs: Caddy
// provisions and starts a new config before it cleans up the old one,
// bbolt allows one handle per file per process, and a database backend
// should keep one connection pool, revocation set and sweeper per
// process rather than one per config.
var stores = caddy.NewUsagePool()

// storeHandle is what configs on one file share: the store, the
// in-memory revocation set fed from it, and the sweeper that deletes its
// expired records.
type storeHandle struct {
	storage.Store
	rev     *tokens.Revocations
	sweeper *grants.Sweeper
	// watch follows the other nodes' writes (storewatch.go); nil unless
	// the store is shared.
	watch *storeWatch
}

// Destruct stops the sweeper and the watch, then closes the file.
func (h *storeHandle) Destruct() error {
	h.sweeper.Stop()
	h.watch.close()
	return h.Store.Close()
}

// acquireStore takes a reference to the handle on the store that o
// opens, opening it (and starting its sweeper) if no config holds its key
// yet. The sweep interval of the newest config wins. Each successful call
// is paired with one releaseStore of o.StoreKey().
func acquireStore(o StoreOpener, sweep time.Duration) (*storeHandle, error) {
	val, _, err := stores.LoadOrNew(o.StoreKey(), func() (caddy.Destructor, error) {
		st, err := o.OpenStore()
		if err != nil {
			return nil, err
		}
		rev := tokens.NewRevocations()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		watch, err := startStoreWatch(ctx, st, rev, caddy.Log().Named("oauth.storage"))
		if err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("oauth storage: watching %s for the other nodes' changes: %w", o.StoreName(), err)
		}
		if err := rev.Load(ctx, st); err != nil {
			watch.close()
			_ = st.Close()
			return nil, fmt.Errorf("oauth storage: reading revocations from %s: %w", o.StoreName(), err)
		}
		return &storeHandle{Store: st, rev: rev, watch: watch,
			sweeper: grants.StartSweeper(st, rev, sweep, caddy.Log().Named("oauth.sweeper"))}, nil
	})
	if err != nil {
		return nil, err
	}
	h := val.(*storeHandle)
	h.sweeper.SetInterval(sweep)
	return h, nil
}

// releaseStore drops one reference to the handle of the store key; the
// last one stops the sweeper and closes the store.
func releaseStore(key string) error {
	_, err := stores.Delete(key)
	return err
}
