// Package memstore is an in-memory storage.Store for fuzz targets, which
// call the engine many thousand times a second and must not pay an fsync
// per write. It keeps no durability and is not for production use.
//
// Issue 11 adds storage/mem, a conformance-tested in-memory store; once it
// exists this package should give way to it.
package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Store holds every record in maps under one lock. A transaction buffers
// its writes and applies them only when its function returns nil.
type Store struct {
	// wmu serializes write transactions; mu guards the maps and is held
	// only while a record is read or a transaction is applied, so that a
	// function inside a transaction may read the store again.
	wmu  sync.Mutex
	mu   sync.RWMutex
	data map[storage.Kind]map[string]storage.Record
	// writes counts the records each committed transaction put or
	// deleted, by kind.
	writes map[storage.Kind]int
}

// New returns an empty store.
func New() *Store {
	return &Store{data: map[storage.Kind]map[string]storage.Record{}, writes: map[storage.Kind]int{}}
}

// Writes returns how many records of each kind committed transactions
// have put or deleted so far. A test compares two calls to learn what a
// request persisted.
func (s *Store) Writes() map[storage.Kind]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[storage.Kind]int, len(s.writes))
	for k, n := range s.writes {
		out[k] = n
	}
	return out
}

type op struct {
	rec     storage.Record
	deleted bool
}

type tx struct {
	s       *Store
	now     time.Time
	pending map[storage.Kind]map[string]op
	ro      bool
}

func (t *tx) Get(kind storage.Kind, key string) (storage.Record, error) {
	if o, ok := t.pending[kind][key]; ok {
		if o.deleted || o.rec.Expired(t.now) {
			return storage.Record{}, storage.ErrNotFound
		}
		return o.rec, nil
	}
	t.s.mu.RLock()
	rec, ok := t.s.data[kind][key]
	t.s.mu.RUnlock()
	if !ok || rec.Expired(t.now) {
		return storage.Record{}, storage.ErrNotFound
	}
	return rec, nil
}

func (t *tx) Put(kind storage.Kind, key string, rec storage.Record) error {
	return t.write(kind, key, op{rec: storage.Record{Value: append([]byte(nil), rec.Value...), Expires: rec.Expires}})
}

func (t *tx) Delete(kind storage.Kind, key string) error {
	return t.write(kind, key, op{deleted: true})
}

func (t *tx) write(kind storage.Kind, key string, o op) error {
	if t.ro {
		return storage.ErrUnavailable
	}
	m := t.pending[kind]
	if m == nil {
		m = map[string]op{}
		t.pending[kind] = m
	}
	m[key] = o
	return nil
}

func (t *tx) ForEach(kind storage.Kind, fn func(key string, rec storage.Record) error) error {
	t.s.mu.RLock()
	keys := make([]string, 0, len(t.s.data[kind])+len(t.pending[kind]))
	for k := range t.s.data[kind] {
		if _, ok := t.pending[kind][k]; !ok {
			keys = append(keys, k)
		}
	}
	t.s.mu.RUnlock()
	for k := range t.pending[kind] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec, err := t.Get(kind, k)
		if err != nil {
			continue
		}
		if err := fn(k, rec); err != nil {
			return err
		}
	}
	return nil
}

// View implements storage.Store.
func (s *Store) View(_ context.Context, fn func(storage.Tx) error) error {
	return fn(&tx{s: s, now: time.Now(), ro: true})
}

// Update implements storage.Store.
func (s *Store) Update(_ context.Context, fn func(storage.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	t := &tx{s: s, now: time.Now(), pending: map[storage.Kind]map[string]op{}}
	if err := fn(t); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for kind, m := range t.pending {
		d := s.data[kind]
		if d == nil {
			d = map[string]storage.Record{}
			s.data[kind] = d
		}
		for k, o := range m {
			if o.deleted {
				delete(d, k)
			} else {
				d[k] = o.rec
			}
		}
		s.writes[kind] += len(m)
	}
	return nil
}

// Batch implements storage.Store; each call is its own transaction.
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Update(ctx, fn)
}

// Sweep implements storage.Store.
func (s *Store) Sweep(_ context.Context, now time.Time, limit int) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for kind, d := range s.data {
		for k, rec := range d {
			if n >= limit {
				return n, nil
			}
			if rec.Expired(now) {
				delete(d, k)
				s.writes[kind]++
				n++
			}
		}
	}
	return n, nil
}

// Close implements storage.Store.
func (s *Store) Close() error { return nil }

var _ storage.Store = (*Store)(nil)
