// Package bolt implements storage.Store on an embedded bbolt file.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Store is a storage.Store backed by one bbolt file.
type Store struct {
	db     *bbolt.DB
	path   string
	commit *committer
	broken atomic.Pointer[error] // set once bbolt panicked: see damaged
}

// Open opens (creating if needed) the bbolt file at path. It waits at most
// lockTimeout for the file lock, which another process may hold.
func Open(path string, lockTimeout time.Duration) (s *Store, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("oauth storage: creating directory for %s: %w: storage_path must be in a directory caddy can create and write, or set a different one", path, err)
	}
	// bbolt takes an empty file for a new database. An existing file of
	// zero bytes is not one: a copy or restore that wrote nothing, or a
	// file system that lost it. Starting on it would mint new signing
	// keys and forget every grant, so every token issued would stop
	// working, silently. bbolt itself never leaves a file empty: it
	// writes the first pages before Open returns.
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return nil, fmt.Errorf("oauth storage: %s is empty (0 bytes), so it holds no signing keys, clients or grants, and starting on it would invalidate every token issued: restore it from a backup, or delete it to start afresh on purpose", path)
	}
	// bbolt can panic on a file that is not a bolt database or that was
	// truncated, or fault reading past the end of its memory map (SIGBUS,
	// fatal unless the goroutine asked to panic instead); turn that into an
	// error the operator can act on. bbolt has locked the file by then and
	// never releases it, so unlock and close it here: otherwise restoring
	// the file in place and reloading would find it "locked".
	var file *os.File
	opening := true
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		// Only bbolt.Open's own call is this store's file. bbolt calls
		// openFile again for every backup (Tx.WriteTo), possibly from
		// several goroutines at once, after Open has returned.
		if opening {
			file = f
		}
		return f, err
	}
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				// The leaked memory map keeps the file open, so closing
				// it alone would not release the lock.
				unlockFile(file)
				_ = file.Close()
			}
			s, err = nil, fmt.Errorf("oauth storage: %s is corrupt (%v): restore it from a backup or move it away to start empty", path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, OpenFile: openFile, InitialMmapSize: initialMmapSize})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("oauth storage: %s is locked by another process (is another caddy using the same storage_path?): stop it or set a different storage_path", path)
	}
	if errors.Is(err, syscall.EROFS) || errors.Is(err, os.ErrPermission) {
		// Not damage: pointing at a backup would send the operator the
		// wrong way.
		return nil, fmt.Errorf("oauth storage: opening %s: %w: caddy must be able to write it: make its directory writable (not on a read-only mount) or set a different storage_path", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth storage: opening %s: %w (if the file is damaged, restore it from a backup or move it away)", path, err)
	}
	if initialMmapSize > 0 {
		// bbolt grows a file by its mapped size while that is small, and
		// by AllocSize (16 MiB) beyond: with the large map, a new store
		// would start at 16 MiB. Grow by 1 MiB steps instead.
		db.AllocSize = 1 << 20
	}
	// A file cut short (a partial copy or restore) can still open; its
	// missing pages would fault on first use, at request time.
	if err := checkSize(db, file); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("oauth storage: %s is corrupt (%v): restore it from a backup or move it away to start empty", path, err)
	}
	if err := buildIndex(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("oauth storage: indexing %s: %w", path, err)
	}
	opening = false
	st := &Store{db: db, path: path}
	st.commit = &committer{store: st}
	return st, nil
}

// initialMmapSize is the address space bbolt maps at first. bbolt must
// remap to grow the file, and a remap waits for every read transaction
// to end: a backup (one read transaction for as long as the copy takes
// to reach a slow client) would hold up every writer then. Mapping
// 1 GiB up front means a store below that size never remaps. It is
// address space, not memory: pages are read in as they are used. Not on
// Windows, where bbolt grows the file itself to the mapped size, nor on
// 32-bit platforms, whose address space is too small.
var initialMmapSize = func() int {
	if runtime.GOOS == "windows" || strconv.IntSize < 64 {
		return 0
	}
	return 1 << 30
}()

// checkSize reports a file shorter than the pages its metadata says are
// in use.
func checkSize(db *bbolt.DB, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		if fi.Size() < tx.Size() {
			return fmt.Errorf("the file is %d bytes but its data extends to %d bytes", fi.Size(), tx.Size())
		}
		return nil
	})
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// View implements storage.Store.
func (s *Store) View(ctx context.Context, fn func(storage.Tx) error) error {
	return s.run(ctx, false, fn)
}

// Update implements storage.Store.
func (s *Store) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.run(ctx, true, fn)
}

// Batch implements storage.Store with group commit (committer). A panic
// in fn reaches this caller as a *FnPanic (see storage.Store).
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("oauth storage: %w", err)
	}
	if err := s.writable(); err != nil {
		return err
	}
	err := s.commit.do(fn)
	var p *FnPanic
	if errors.As(err, &p) {
		panic(p)
	}
	return err
}

// run runs fn in a bbolt transaction and sorts what can go wrong: fn's
// own error comes back as it is; a failure to begin or to commit wraps
// storage.ErrUnavailable; a panic inside bbolt is the file's damage (see
// damaged); a panic in fn goes on to the caller once bbolt has rolled
// the transaction back.
func (s *Store) run(ctx context.Context, write bool, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("oauth storage: %w", err)
	}
	t := &tx{fn: fn}
	err := s.begin(t, write)
	switch {
	case err == nil || errors.Is(err, storage.ErrUnavailable):
		return err
	case t.ran && t.fnErr != nil:
		return wrap(err)
	case t.ran:
		return fmt.Errorf("%w: committing to %s: %w", storage.ErrUnavailable, s.path, err)
	default:
		return fmt.Errorf("%w: %s: %w", storage.ErrUnavailable, s.path, err)
	}
}

// begin runs t's fn in a bbolt transaction, guarded as protect is.
func (s *Store) begin(t *tx, write bool) (err error) {
	defer s.recoverDamage(t, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if write {
		return s.db.Update(t.call)
	}
	return s.db.View(t.call)
}

// protect runs f, which calls into bbolt, so that a panic in bbolt (an
// assertion on a damaged page, or a fault reading a page the file no
// longer has) becomes the damage error instead of taking down the
// process.
func (s *Store) protect(f func() error) (err error) {
	defer s.recoverDamage(nil, &err)
	// A fault in the memory map (the file shrank under it) panics
	// instead of killing the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return f()
}

// recoverDamage, deferred, turns a panic in bbolt into the damage error
// in *err. A panic while the caller's code runs (t.caller; t is nil when
// none does) is not bbolt's: it goes on unchanged, from where it
// happened (the stack is not unwound until this returns).
func (s *Store) recoverDamage(t *tx, err *error) {
	if r := recover(); r != nil {
		if t != nil && t.caller {
			panic(r)
		}
		*err = s.damaged(r)
	}
}

// damaged returns the error for bbolt's panic r, and records the first
// such error as the one every write gets from then on. bbolt panics only on a file it cannot make sense of:
// writing on would let a damaged free list hand out pages still in use,
// spreading the damage, and a panic may have left bbolt's writer lock
// held. Reads go on, for what is intact.
func (s *Store) damaged(r any) error {
	err := fmt.Errorf("%w: storage file %s is damaged: %v: stop caddy and restore the file from a backup, or move it away to start empty", storage.ErrUnavailable, s.path, r)
	s.broken.CompareAndSwap(nil, &err)
	return err
}

// writable is the damage error once bbolt has panicked, else nil.
func (s *Store) writable() error {
	if p := s.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// Sweep implements storage.Store. It walks the expiry index from the
// oldest entry, so its cost follows the number of expired records, not
// the size of the file; each transaction deletes at most a small number
// of records so writers are never held up for long.
func (s *Store) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	const perTx = 256
	deleted := 0
	cutoff := unixNano(now)
	if err := s.writable(); err != nil {
		return 0, err
	}
	for deleted < limit {
		n, more := 0, false
		err := s.protect(func() error {
			return s.db.Update(func(btx *bbolt.Tx) error {
				idx := btx.Bucket(expiryBucket)
				if idx == nil {
					return nil
				}
				c := idx.Cursor()
				for k, _ := c.First(); k != nil; k, _ = c.First() {
					exp, kind, key, ok := splitIndexKey(k)
					if !ok {
						if err := c.Delete(); err != nil {
							return err
						}
						continue
					}
					if exp > cutoff {
						return nil
					}
					if n >= perTx || deleted+n >= limit {
						more = true
						return nil
					}
					if b := btx.Bucket(kind); b != nil {
						// Delete the record only if this entry is still its
						// expiry: a Put since then re-indexed it.
						if v := b.Get(key); len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) == exp {
							if err := b.Delete(key); err != nil {
								return err
							}
							n++
						}
					}
					if err := c.Delete(); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err != nil {
			if !errors.Is(err, storage.ErrUnavailable) {
				err = fmt.Errorf("%w: sweeping %s: %w", storage.ErrUnavailable, s.path, err)
			}
			return deleted, err
		}
		deleted += n
		if !more || ctx.Err() != nil {
			break
		}
	}
	return deleted, nil
}

// expiryBucket indexes every record that expires, by expiry: a key is the
// expiry (as stored in the record, sign bit flipped so that bytes sort
// like the signed number), the kind, a 0 byte and the record's key. Kinds never contain a 0 byte, so the name cannot clash.
var expiryBucket = []byte("\x00expiry")

func indexKey(exp int64, kind, key []byte) []byte {
	k := make([]byte, 8, 8+len(kind)+1+len(key))
	binary.BigEndian.PutUint64(k, uint64(exp)^signBit) // ordered as signed
	k = append(k, kind...)
	k = append(k, 0)
	return append(k, key...)
}

func splitIndexKey(k []byte) (exp int64, kind, key []byte, ok bool) {
	if len(k) < 10 {
		return 0, nil, nil, false
	}
	rest := k[8:]
	i := bytes.IndexByte(rest, 0)
	if i <= 0 {
		return 0, nil, nil, false
	}
	return int64(binary.BigEndian.Uint64(k) ^ signBit), rest[:i], rest[i+1:], true
}

const signBit = 1 << 63

// reindex keeps the expiry index in step when a record is replaced or
// removed: old is the record's previous stored value (nil if none), exp
// its new expiry (0: none, or deleted).
func reindex(btx *bbolt.Tx, kind, key, old []byte, exp int64) error {
	var oldExp int64
	if len(old) >= 8 {
		oldExp = int64(binary.BigEndian.Uint64(old))
	}
	if oldExp == exp {
		return nil
	}
	idx, err := btx.CreateBucketIfNotExists(expiryBucket)
	if err != nil {
		return err
	}
	// Expiries mostly grow with time, so entries are appended: pack the
	// pages instead of leaving them half empty.
	idx.FillPercent = 0.9
	if oldExp != 0 {
		if err := idx.Delete(indexKey(oldExp, kind, key)); err != nil {
			return err
		}
	}
	if exp != 0 {
		return idx.Put(indexKey(exp, kind, key), nil)
	}
	return nil
}

// buildIndex indexes the expiring records of a file written before the
// index existed; it runs once, when the index bucket is missing.
func buildIndex(db *bbolt.DB) error {
	return db.Update(func(btx *bbolt.Tx) error {
		if btx.Bucket(expiryBucket) != nil {
			return nil
		}
		idx, err := btx.CreateBucket(expiryBucket)
		if err != nil {
			return err
		}
		return btx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if bytes.Equal(name, expiryBucket) {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if len(v) >= 8 {
					if exp := int64(binary.BigEndian.Uint64(v)); exp != 0 {
						return idx.Put(indexKey(exp, name, k), nil)
					}
				}
				return nil
			})
		})
	})
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.db.Close() }

func wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) || errors.Is(err, bolterrors.ErrDatabaseReadOnly) ||
		errors.Is(err, os.ErrPermission) || errors.Is(err, bolterrors.ErrTxClosed) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	var perr *os.PathError
	if errors.As(err, &perr) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// tx is the storage.Tx of one caller's fn. caller is true while the
// caller's code runs and false while bbolt's does, so that recoverDamage
// can tell whose a panic is; it is set without defer on purpose, so that
// it still says where the panic happened when recoverDamage sees it.
type tx struct {
	btx    *bbolt.Tx
	caller bool

	// For run: the caller's fn, its error, and whether it returned.
	fn    func(storage.Tx) error
	fnErr error
	ran   bool
}

// call is run's bbolt transaction function.
func (t *tx) call(btx *bbolt.Tx) error {
	t.btx, t.caller = btx, true
	t.fnErr = t.fn(t)
	t.btx, t.caller, t.ran = nil, false, true
	return t.fnErr
}

// errTxDone answers a Tx used after its fn returned.
var errTxDone = errors.New("oauth storage: a transaction was used after its function returned")

func (t *tx) Get(kind storage.Kind, key string) (storage.Record, error) {
	if t.btx == nil {
		return storage.Record{}, errTxDone
	}
	t.caller = false
	rec, err := t.get(kind, key)
	t.caller = true
	return rec, err
}

func (t *tx) Put(kind storage.Kind, key string, rec storage.Record) error {
	if t.btx == nil {
		return errTxDone
	}
	t.caller = false
	err := t.put(kind, key, rec)
	t.caller = true
	return err
}

func (t *tx) Delete(kind storage.Kind, key string) error {
	if t.btx == nil {
		return errTxDone
	}
	t.caller = false
	err := t.delete(kind, key)
	t.caller = true
	return err
}

func (t *tx) ForEach(kind storage.Kind, fn func(string, storage.Record) error) error {
	if t.btx == nil {
		return errTxDone
	}
	t.caller = false
	err := t.forEach(kind, func(k string, rec storage.Record) error {
		t.caller = true
		err := fn(k, rec)
		t.caller = false
		return err
	})
	t.caller = true
	return err
}

func (t *tx) get(kind storage.Kind, key string) (storage.Record, error) {
	b := t.btx.Bucket([]byte(kind))
	if b == nil {
		return storage.Record{}, storage.ErrNotFound
	}
	rec, ok := decode(b.Get([]byte(key)))
	if !ok || rec.Expired(time.Now()) {
		return storage.Record{}, storage.ErrNotFound
	}
	return rec, nil
}

func (t *tx) put(kind storage.Kind, key string, rec storage.Record) error {
	b, err := t.btx.CreateBucketIfNotExists([]byte(kind))
	if err != nil {
		return err
	}
	v := encode(rec)
	if err := reindex(t.btx, []byte(kind), []byte(key), b.Get([]byte(key)), int64(binary.BigEndian.Uint64(v))); err != nil {
		return err
	}
	return b.Put([]byte(key), v)
}

func (t *tx) delete(kind storage.Kind, key string) error {
	b := t.btx.Bucket([]byte(kind))
	if b == nil {
		return nil
	}
	if err := reindex(t.btx, []byte(kind), []byte(key), b.Get([]byte(key)), 0); err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

func (t *tx) forEach(kind storage.Kind, fn func(string, storage.Record) error) error {
	b := t.btx.Bucket([]byte(kind))
	if b == nil {
		return nil
	}
	now := time.Now()
	return b.ForEach(func(k, v []byte) error {
		rec, ok := decode(v)
		if !ok || rec.Expired(now) {
			return nil
		}
		return fn(string(k), rec)
	})
}

// A stored value is the expiry (Unix nanoseconds, big-endian; 0 = never)
// followed by the value. Values are copied out because bbolt's memory is
// valid only inside the transaction.
func encode(rec storage.Record) []byte {
	buf := make([]byte, 8+len(rec.Value))
	var exp int64
	if !rec.Expires.IsZero() {
		exp = unixNano(rec.Expires)
	}
	binary.BigEndian.PutUint64(buf, uint64(exp))
	copy(buf[8:], rec.Value)
	return buf
}

// Bounds of what UnixNano can represent (years 1678 to 2262).
var (
	minNano = time.Unix(0, math.MinInt64)
	maxNano = time.Unix(0, math.MaxInt64)
)

// unixNano is t.UnixNano clamped to its range, where UnixNano itself
// would overflow: an expiry in 2300 must not wrap round into the past.
// The epoch maps to -1 because 0 means "never expires" on disk.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNano):
		return math.MinInt64
	case t.After(maxNano):
		return math.MaxInt64
	case t.Equal(time.Unix(0, 0)):
		return -1
	}
	return t.UnixNano()
}

func decode(v []byte) (storage.Record, bool) {
	if len(v) < 8 {
		return storage.Record{}, false
	}
	var rec storage.Record
	if exp := int64(binary.BigEndian.Uint64(v)); exp != 0 {
		rec.Expires = time.Unix(0, exp)
	}
	rec.Value = append([]byte(nil), v[8:]...)
	return rec, true
}

var _ storage.Store = (*Store)(nil)
