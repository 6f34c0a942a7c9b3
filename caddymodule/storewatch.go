package caddymodule

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// storeWatch keeps what a process holds in memory from a store shared
// with other nodes (storage.Watcher) in step with their writes: the
// revocations they commit join the handle's revocation set, so this
// node's gate and verified-token cache refuse those tokens too, and a
// change of the signing keys (a rotation on another node) makes every
// engine on the handle reload its key ring, both within the store's
// WatchDelay; a client registered on another node gains CORS here at
// once too (it would within 30s anyway). A store of one process (bbolt)
// has no storeWatch: the process applies its own changes directly.
//
// Nothing else needs it: clients, users, consents and sessions are read
// from storage on every use, and the form MAC key is made once (in a
// serializable transaction, so every node reads the same one) and never
// changes.
type storeWatch struct {
	stop   func()
	log    *zap.Logger
	reload chan struct{} // one pending key reload, coalescing a burst
	quit   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	engines map[*grants.Engine]struct{}
}

// watchedKinds are the kinds a storeWatch follows.
var watchedKinds = []storage.Kind{storage.KindRevoked, storage.KindKeys, storage.KindClients}

// startStoreWatch starts following st into rev, if st is a Watcher; it
// returns nil otherwise. Start it before rev is loaded: a revocation
// committed in between is then reported rather than lost.
func startStoreWatch(ctx context.Context, st storage.Store, rev *tokens.Revocations, log *zap.Logger) (*storeWatch, error) {
	w, ok := st.(storage.Watcher)
	if !ok {
		return nil, nil
	}
	sw := &storeWatch{log: log, reload: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		engines: map[*grants.Engine]struct{}{}}
	malformed := false
	stop, err := w.Watch(ctx, watchedKinds, func(changes []storage.Change) {
		keys, clients := false, false
		for _, c := range changes {
			switch c.Kind {
			case storage.KindRevoked:
				if err := rev.Apply(c.Key, c.Record); err != nil && !malformed {
					malformed = true // once: the record stays until it expires
					log.Error("another node stored a revocation this node cannot read; is every node on the same release?", zap.Error(err))
				}
			case storage.KindKeys:
				keys = true
			case storage.KindClients:
				clients = true
			}
		}
		if clients {
			for _, e := range sw.engineList() {
				e.StoredClientsChanged()
			}
		}
		if keys {
			select {
			case sw.reload <- struct{}{}:
			default: // a reload is pending, and will read this change too
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sw.stop = stop
	go sw.reloadKeys()
	return sw, nil
}

// reloadKeys reloads the key ring of every engine on the handle each
// time the keys change.
func (sw *storeWatch) reloadKeys() {
	defer close(sw.done)
	for {
		select {
		case <-sw.quit:
			return
		case <-sw.reload:
		}
		for _, e := range sw.engineList() {
			if err := e.ReloadKeys(context.Background()); err != nil {
				// The periodic key maintenance reloads again.
				sw.log.Error("reloading the signing keys another node changed failed; will retry at the next key maintenance", zap.Error(err))
			}
		}
	}
}

// engineList returns the engines on the handle.
func (sw *storeWatch) engineList() []*grants.Engine {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	engines := make([]*grants.Engine, 0, len(sw.engines))
	for e := range sw.engines {
		engines = append(engines, e)
	}
	return engines
}

// addEngine makes e reload its keys when another node changes them. It
// also has the keys reloaded once now: e loaded them at its start, before
// it was added, and a change reported in between would otherwise wait for
// the key maintenance.
func (sw *storeWatch) addEngine(e *grants.Engine) {
	if sw == nil {
		return
	}
	sw.mu.Lock()
	sw.engines[e] = struct{}{}
	sw.mu.Unlock()
	select {
	case sw.reload <- struct{}{}:
	default:
	}
}

// removeEngine undoes addEngine, when e's config is unloaded.
func (sw *storeWatch) removeEngine(e *grants.Engine) {
	if sw == nil {
		return
	}
	sw.mu.Lock()
	delete(sw.engines, e)
	sw.mu.Unlock()
}

// close stops the watch and the reloads.
func (sw *storeWatch) close() {
	if sw == nil {
		return
	}
	sw.stop()
	close(sw.quit)
	<-sw.done
}
