package storage

import "context"

// Locker is a Store shared by several processes (the nodes of a cluster)
// that can give one of them at a time a named lock, so that chores which
// need doing once per cluster, not once per node (deleting expired
// records, rotating the signing keys), are done by one node while the
// others skip them. It is optional: a store one process owns (bbolt,
// mem) has no other node to exclude, and does not implement it.
//
// The lock is advisory: it excludes only other TryLock callers of the
// same name on the same data, never a transaction. Holding it is not
// needed for correctness (the chores are safe to run concurrently); it
// saves the work and the conflicts of running them N times at once.
type Locker interface {
	// TryLock takes the lock called name without waiting. When another
	// holder has it, ok is false and release is nil. When ok is true,
	// the lock is held until release is called (once; later calls do
	// nothing) or until the holder's connection to the store is lost
	// (its process died or the network broke), whichever comes first:
	// a crashed node never keeps the lock. A failure to reach the store
	// is an error wrapping ErrUnavailable.
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}
