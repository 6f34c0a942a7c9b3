// Package mem is an in-memory storage.Store for tests and experiments. It
// writes nothing anywhere: what it holds is gone at Close or when the
// process exits, so it is no place for a server's grants and keys.
//
// It has the transactional behaviour storage/storagetest checks (the same
// suite storage/bolt passes), so engine code tested on it behaves the
// same on a file, without the cost of an fsync per write:
//
//	st := mem.New()
//	t.Cleanup(func() { _ = st.Close() })
//	err := engine.Start(ctx, st, …)
//
// Writers are serialised by one lock and work on an overlay of their own;
// a commit publishes a new state that shares every untouched kind with
// the old one and copies each kind it changed. A View reads the state
// that was current when it began and holds no lock, so it sees no write
// land while it runs, and a View inside an Update (which the engine
// does) or an Update inside a View works as on bbolt. The price is a copy
// of each changed kind per commit: fine for tests, not for millions of
// records.
package mem

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Store is an in-memory storage.Store. The zero value is not usable: call
// New.
type Store struct {
	writer sync.Mutex            // held by Update, Batch, a Sweep step and Close
	cur    atomic.Pointer[kinds] // the committed state; nil once closed
}

// kinds is a committed state: never changed once published.
type kinds map[storage.Kind]map[string]storage.Record

// New returns an empty store.
func New() *Store {
	s := &Store{}
	s.cur.Store(&kinds{})
	return s
}

// maxKey is bbolt's key size limit, so that code that works here does not
// fail on a file.
const maxKey = 32768

var (
	errClosed   = fmt.Errorf("%w: the in-memory store is closed", storage.ErrUnavailable)
	errReadOnly = errors.New("mem storage: a write in a read-only transaction (View)")
	errTxDone   = errors.New("mem storage: a transaction was used after its function returned")
)

// View implements storage.Store.
func (s *Store) View(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem storage: %w", err)
	}
	base := s.cur.Load()
	if base == nil {
		return errClosed
	}
	t := &tx{base: *base}
	defer func() { t.done = true }()
	return fn(t)
}

// Update implements storage.Store. fn's writes go to an overlay that is
// published only when fn returns nil: an error or a panic in fn leaves
// nothing behind, and a panic goes on to the caller.
func (s *Store) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem storage: %w", err)
	}
	s.writer.Lock()
	defer s.writer.Unlock()
	base := s.cur.Load()
	if base == nil {
		return errClosed
	}
	t := &tx{base: *base, writes: map[storage.Kind]map[string]*storage.Record{}}
	defer func() { t.done = true }()
	if err := fn(t); err != nil {
		return err
	}
	s.publish(*base, t.writes)
	return nil
}

// publish makes base with writes applied (nil: deleted) the committed
// state. The caller holds s.writer.
func (s *Store) publish(base kinds, writes map[storage.Kind]map[string]*storage.Record) {
	if len(writes) == 0 {
		return
	}
	next := maps.Clone(base)
	for kind, w := range writes {
		recs := maps.Clone(base[kind])
		if recs == nil {
			recs = map[string]storage.Record{}
		}
		for k, rec := range w {
			if rec == nil {
				delete(recs, k)
			} else {
				recs[k] = *rec
			}
		}
		next[kind] = recs
	}
	s.cur.Store(&next)
}

// Batch implements storage.Store; here it is Update.
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Update(ctx, fn)
}

// sweepChunk bounds the records one Sweep step deletes, as bolt bounds
// its transactions.
const sweepChunk = 256

// Sweep implements storage.Store. It scans every record (there is no
// expiry index here), deleting at most sweepChunk in a step, and stops
// between steps once ctx is done.
func (s *Store) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	deleted := 0
	for deleted < limit {
		n, more, err := s.sweepStep(now, min(sweepChunk, limit-deleted))
		deleted += n
		if err != nil {
			return deleted, err
		}
		if !more || ctx.Err() != nil {
			break
		}
	}
	return deleted, nil
}

// sweepStep deletes up to max expired records and reports whether more
// are left.
func (s *Store) sweepStep(now time.Time, max int) (n int, more bool, err error) {
	s.writer.Lock()
	defer s.writer.Unlock()
	base := s.cur.Load()
	if base == nil {
		return 0, false, errClosed
	}
	writes := map[storage.Kind]map[string]*storage.Record{}
	for kind, recs := range *base {
		for k, rec := range recs {
			if !rec.Expired(now) {
				continue
			}
			if n == max {
				s.publish(*base, writes)
				return n, true, nil
			}
			if writes[kind] == nil {
				writes[kind] = map[string]*storage.Record{}
			}
			writes[kind][k] = nil
			n++
		}
	}
	s.publish(*base, writes)
	return n, false, nil
}

// Close implements storage.Store. It drops everything; a second Close
// does nothing.
func (s *Store) Close() error {
	s.writer.Lock()
	defer s.writer.Unlock()
	s.cur.Store(nil)
	return nil
}

// tx is one transaction: the state it began on, and (in Update) its own
// writes, a nil record for a delete.
type tx struct {
	base   kinds
	writes map[storage.Kind]map[string]*storage.Record
	done   bool
}

func (t *tx) lookup(kind storage.Kind, key string) (storage.Record, bool) {
	if w, ok := t.writes[kind][key]; ok {
		if w == nil {
			return storage.Record{}, false
		}
		return *w, true
	}
	rec, ok := t.base[kind][key]
	return rec, ok
}

func (t *tx) Get(kind storage.Kind, key string) (storage.Record, error) {
	if t.done {
		return storage.Record{}, errTxDone
	}
	rec, ok := t.lookup(kind, key)
	if !ok || rec.Expired(time.Now()) {
		return storage.Record{}, storage.ErrNotFound
	}
	return clone(rec), nil
}

func (t *tx) Put(kind storage.Kind, key string, rec storage.Record) error {
	if err := t.check(key); err != nil {
		return err
	}
	rec = clone(rec)
	t.write(kind, key, &rec)
	return nil
}

func (t *tx) Delete(kind storage.Kind, key string) error {
	if err := t.check(key); err != nil {
		return err
	}
	t.write(kind, key, nil)
	return nil
}

func (t *tx) write(kind storage.Kind, key string, rec *storage.Record) {
	w := t.writes[kind]
	if w == nil {
		w = map[string]*storage.Record{}
		t.writes[kind] = w
	}
	w[key] = rec
}

func (t *tx) ForEach(kind storage.Kind, fn func(string, storage.Record) error) error {
	if t.done {
		return errTxDone
	}
	keys := slices.Collect(maps.Keys(t.base[kind]))
	for k := range t.writes[kind] {
		if _, ok := t.base[kind][k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // Go orders strings by their bytes, as bbolt does
	now := time.Now()
	for _, k := range keys {
		rec, ok := t.lookup(kind, k)
		if !ok || rec.Expired(now) {
			continue
		}
		if err := fn(k, clone(rec)); err != nil {
			return err
		}
	}
	return nil
}

// check refuses what bbolt refuses, so that code that works here works on
// a file.
func (t *tx) check(key string) error {
	switch {
	case t.done:
		return errTxDone
	case t.writes == nil:
		return errReadOnly
	case key == "":
		return errors.New("mem storage: a record needs a non-empty key")
	case len(key) > maxKey:
		return fmt.Errorf("mem storage: a key of %d bytes is longer than %d", len(key), maxKey)
	}
	return nil
}

// clone copies the value, so that neither the caller's slice nor the one
// it is given aliases what is stored.
func clone(rec storage.Record) storage.Record {
	rec.Value = slices.Clone(rec.Value)
	return rec
}

var _ storage.Store = (*Store)(nil)
