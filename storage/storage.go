// Package storage defines the persistence the OAuth engine needs. It holds
// no reference to any database: the bbolt implementation lives in
// storage/bolt, and a networked backend can implement the same interfaces.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Kind names a family of records, such as signing keys or refresh tokens.
// A backend maps each kind to its own namespace (a bbolt bucket, an SQL
// table or a key prefix).
type Kind string

// The record kinds the engine uses.
const (
	KindKeys Kind = "keys"
	// KindUsers holds users created at run time, by name.
	KindUsers Kind = "users"
	// KindCodes holds authorization codes by SHA-256 of the code.
	KindCodes Kind = "codes"
	// KindFamilies holds grants (refresh-token families) by the handle
	// their refresh tokens carry, with the hash of the live one.
	KindFamilies Kind = "families"
	// KindRevoked holds revoked access-token ids until the token expires.
	KindRevoked Kind = "revoked"
	// KindSessions holds browser sign-in sessions by SHA-256 of the cookie.
	KindSessions Kind = "sessions"
	// KindConsents holds what each user allowed each client, by user and client.
	KindConsents Kind = "consents"
	// KindSecrets holds server-side secrets such as the form MAC key.
	KindSecrets Kind = "secrets"
	// KindAssertions holds the ids of used single-use assertions (the jti
	// of client assertions and assertion grants), by a hash of issuer and
	// id, until the assertion expires.
	KindAssertions Kind = "assertions"
	// KindAccess holds opaque access tokens' claims by SHA-256 of the token.
	KindAccess Kind = "access"
	// KindClients holds clients registered at run time, by client_id.
	KindClients Kind = "clients"
	// KindSubjects records, by user name, the subject a name was last
	// given, so that a removed user's subject is never reassigned. Its
	// records never expire.
	KindSubjects Kind = "subjects"
	// KindPushed holds pushed authorization requests (RFC 9126) by
	// SHA-256 of their request_uri, until they are used or expire.
	KindPushed Kind = "pushed"
)

// ErrNotFound is returned when a record does not exist or has expired.
var ErrNotFound = errors.New("storage: record not found")

// ErrUnavailable wraps backend failures (a full disk, a closed database) so
// that handlers can answer temporarily_unavailable instead of a 500.
var ErrUnavailable = errors.New("storage: backend unavailable")

// Record is one stored value with its expiry. A zero Expires never expires.
type Record struct {
	Value   []byte
	Expires time.Time
}

// Expired reports whether the record is past its expiry at now.
func (r Record) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Tx is one transaction. Reads see the transaction's own writes. A Tx is
// valid only inside the function it was passed to.
type Tx interface {
	// Get returns the record, or ErrNotFound when it is absent or expired.
	Get(kind Kind, key string) (Record, error)
	// Put creates or replaces the record.
	Put(kind Kind, key string, rec Record) error
	// Delete removes the record; deleting an absent record is not an error.
	Delete(kind Kind, key string) error
	// ForEach calls fn for every unexpired record of kind, in key order,
	// until fn returns an error. fn must not write to the transaction:
	// collect what to change, then change it after ForEach returns.
	ForEach(kind Kind, fn func(key string, rec Record) error) error
}

// Store is a transactional record store. storage/storagetest is the
// behaviour every implementation must have; the notes below are its
// summary.
//
// Context: when ctx is done before a transaction starts, View, Update and
// Batch return an error wrapping ctx.Err() and write nothing. A
// transaction that has started runs to its end: it is committed whole or
// not at all, whatever happens to ctx meanwhile.
//
// Panics: a panic in the caller's fn is not turned into an error. The
// transaction is rolled back (nothing of fn is written, other callers of
// Batch are unaffected) and the panic goes on in the caller's goroutine,
// so that a bug shows up as one, with its stack, instead of as a storage
// failure. A panic inside the backend (bbolt asserts on a damaged page)
// is an error wrapping ErrUnavailable instead.
//
// Errors: an error fn returns comes back unchanged and is never
// ErrUnavailable unless fn made it so; a failure of the backend (a full
// disk, a read-only or lost file system, a closed store, a damaged file)
// wraps ErrUnavailable and keeps the cause in its text.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction that is durably committed
	// before Update returns nil. If fn returns an error nothing is written.
	Update(ctx context.Context, fn func(Tx) error) error
	// Batch is Update for many concurrent callers: the backend may commit
	// several callers' functions together to share the cost of durability,
	// so fn may run more than once and must be idempotent.
	Batch(ctx context.Context, fn func(Tx) error) error
	// Sweep deletes up to limit expired records and reports how many it
	// deleted, in small transactions so it never stalls writers.
	Sweep(ctx context.Context, now time.Time, limit int) (int, error)
	// Close releases the store.
	Close() error
}

// Backuper is a Store that can write a consistent copy of itself while it
// is in use: the copy is the store as of one moment (every transaction
// committed before Backup began is in it, none that began after), and
// writers are not held up while it is written. Its format is the
// backend's own: a backup restores to the same backend. It is optional:
// storage/bolt implements it; storage/mem, which keeps nothing across a
// restart, does not.
type Backuper interface {
	// Backup writes the copy to w and returns the number of bytes
	// written. When ctx is done before the copy is complete, Backup stops
	// and returns an error wrapping ctx.Err(). A failed Backup may have
	// written part of a copy to w: the caller must discard it.
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// Change is a record that a process committed, as a Watcher reports it:
// its kind, its key and its value at the time it was read (a later Put of
// the same key is reported again).
type Change struct {
	Kind   Kind
	Key    string
	Record Record
}

// Watcher is a Store shared by several processes (a database server) that
// tells each process about the records any of them commits, so that what
// a process keeps in memory from storage (the revocation set, the signing
// keys) follows the other processes' writes. It is optional: a store
// used by one process only (storage/bolt, storage/mem) does not implement
// it, since the process applies its own changes directly.
//
// Every record of a watched kind that is created or replaced by a
// transaction committed after Watch returned is reported within
// WatchDelay of the commit while the database is reachable, and as soon
// as it is reachable again otherwise. A record may be reported more than
// once, and records committed shortly before Watch may be reported too:
// fn must be idempotent. Deletions (and expiries) are not reported.
type Watcher interface {
	// Watch starts reporting the records of kinds, calling fn from one
	// goroutine at a time with the changes found together (unexpired
	// records, oldest write first; a record written again since is
	// reported with its latest value). It fails, starting nothing, when
	// the backend cannot be reached (ctx bounds that check). stop ends
	// the watch and waits for a running fn to return (so fn must not
	// call it); Close of the store ends it too. fn should return soon:
	// the next report waits for it.
	Watch(ctx context.Context, kinds []Kind, fn func([]Change)) (stop func(), err error)
	// WatchDelay is the longest time between a commit and its report
	// while the backend is reachable.
	WatchDelay() time.Duration
}
