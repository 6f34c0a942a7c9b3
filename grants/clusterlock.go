package grants

import (
	"context"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Names of the cluster-wide locks (storage.Locker) the engine takes.
const (
	// lockSweep is held for one sweep of expired records.
	lockSweep = "sweep"
	// lockKeys is held around a rotation of the signing keys.
	lockKeys = "keys"
)

// tryClusterLock takes the named lock when st is shared by several
// nodes (a storage.Locker), so that one node does a cluster-wide chore
// while the others skip it. On a store of one process it always
// succeeds: there is no other node. ok false means another node holds
// the lock now.
func tryClusterLock(ctx context.Context, st storage.Store, name string) (release func(), ok bool, err error) {
	l, shared := st.(storage.Locker)
	if !shared {
		return func() {}, true, nil
	}
	release, ok, err = l.TryLock(ctx, name)
	if err != nil || !ok {
		return nil, ok, err
	}
	return release, true, nil
}

// clusterLockWait is how long an operator's rotation waits for another
// node's to end before it is refused.
const clusterLockWait = 10 * time.Second

// waitClusterLock is tryClusterLock for a chore an operator asked for,
// which must not be skipped: it tries again until the lock is free, ctx
// is done or clusterLockWait has passed (ok false then).
func waitClusterLock(ctx context.Context, st storage.Store, name string) (release func(), ok bool, err error) {
	deadline := time.Now().Add(clusterLockWait)
	for {
		release, ok, err = tryClusterLock(ctx, st, name)
		if err != nil || ok || time.Now().After(deadline) {
			return release, ok, err
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
