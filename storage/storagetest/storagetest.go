// Package storagetest is the conformance suite for storage.Store: every
// storage behaviour the engine relies on, run against any backend. A
// backend passes it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			st := mem.New()
//			t.Cleanup(func() { _ = st.Close() })
//			return st
//		})
//	}
//
// A backend with a medium that can fill up or turn read-only (a file
// system, a database server) also gives RunBackend the hooks that break
// it, so that the suite checks those failures come back as
// storage.ErrUnavailable and leave nothing half written.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Backend is the store under test and the hooks that break its medium.
type Backend struct {
	// Open returns a new, empty store and arranges (with t.Cleanup) for
	// it to be closed. The suite closes some stores itself first, so
	// Close must accept a second call. Required.
	Open func(t *testing.T) storage.Store

	// FullDisk, if set, returns a new, empty store on a medium of its
	// own, and fill, which uses up that medium's free space so that a
	// write that needs more room fails, and returns free, which gives
	// the space back. Nil (a backend with nothing to fill, such as
	// storage/mem): the full-disk subtest does not run.
	FullDisk func(t *testing.T) (st storage.Store, fill func(t *testing.T) (free func()))

	// ReadOnly, if set, returns a new, empty store on a medium of its
	// own, and setReadOnly, which makes that medium refuse every write
	// from then on, as a file system forced read-only after a disk error
	// does. Nil: the read-only subtest does not run.
	ReadOnly func(t *testing.T) (st storage.Store, setReadOnly func(t *testing.T))
}

// Run runs the suite against the stores open returns (see Backend.Open).
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	RunBackend(t, Backend{Open: open})
}

// RunBackend runs the suite, with the fault subtests for the hooks b has.
// Subtests run in parallel, each on a store of its own.
func RunBackend(t *testing.T, b Backend) {
	if b.Open == nil {
		t.Fatal("storagetest: Backend.Open is required")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"EveryKind", testEveryKind},
		{"ExpiredInvisible", testExpiredInvisible},
		{"ExpiryInstants", testExpiryInstants},
		{"ExpiresOnTheClock", testExpiresOnTheClock},
		{"ForEach", testForEach},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"UpdateSerialised", testUpdateSerialised},
		{"ViewSnapshot", testViewSnapshot},
		{"ViewInsideUpdate", testViewInsideUpdate},
		{"SingleUseTakeUpdate", func(t *testing.T, st storage.Store) { testSingleUseTake(t, st, st.Update) }},
		{"SingleUseTakeBatch", func(t *testing.T, st storage.Store) { testSingleUseTake(t, st, st.Batch) }},
		{"BatchOwnErrors", testBatchOwnErrors},
		{"BatchSeesEarlierWrites", testBatchSeesEarlierWrites},
		{"PanicUpdate", testPanicUpdate},
		{"PanicView", testPanicView},
		{"PanicBatch", testPanicBatch},
		{"ContextDone", testContextDone},
		{"Sweep", testSweep},
		{"SweepFollowsRewrites", testSweepFollowsRewrites},
		{"SweepMany", testSweepMany},
		{"SweepContextDone", testSweepContextDone},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, b.Open(t))
		})
	}
	if b.FullDisk != nil {
		t.Run("FullDisk", func(t *testing.T) {
			t.Parallel()
			st, fill := b.FullDisk(t)
			testFullDisk(t, st, fill)
		})
	}
	if b.ReadOnly != nil {
		t.Run("ReadOnly", func(t *testing.T) {
			t.Parallel()
			st, setReadOnly := b.ReadOnly(t)
			testReadOnly(t, st, setReadOnly)
		})
	}
}

const (
	kindA storage.Kind = "a"
	kindB storage.Kind = "b"
)

var ctx = context.Background()

func put(t *testing.T, st storage.Store, kind storage.Kind, key string, rec storage.Record) {
	t.Helper()
	if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Put(kind, key, rec) }); err != nil {
		t.Fatalf("Put %s/%q: %v", kind, key, err)
	}
}

func get(t *testing.T, st storage.Store, kind storage.Kind, key string) (storage.Record, error) {
	t.Helper()
	var rec storage.Record
	err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		rec, err = tx.Get(kind, key)
		return err
	})
	return rec, err
}

// wantValue fails unless kind/key holds value.
func wantValue(t *testing.T, st storage.Store, kind storage.Kind, key, value string) {
	t.Helper()
	rec, err := get(t, st, kind, key)
	if err != nil || string(rec.Value) != value {
		t.Errorf("%s/%s = %.40q, %v; want %q", kind, key, rec.Value, err, value)
	}
}

// wantAbsent fails unless Get of kind/key says ErrNotFound.
func wantAbsent(t *testing.T, st storage.Store, kind storage.Kind, key, why string) {
	t.Helper()
	if rec, err := get(t, st, kind, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s/%s: %.40q, %v; want ErrNotFound (%s)", kind, key, rec.Value, err, why)
	}
}

func keys(t *testing.T, st storage.Store, kind storage.Kind) []string {
	t.Helper()
	var out []string
	if err := st.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kind, func(k string, _ storage.Record) error { out = append(out, k); return nil })
	}); err != nil {
		t.Fatalf("ForEach %s: %v", kind, err)
	}
	return out
}

func trunc(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func testPutGetDelete(t *testing.T, st storage.Store) {
	future := time.Now().Add(time.Hour).Round(0)
	tests := []struct {
		name string
		key  string
		rec  storage.Record
	}{
		{"never expires", "k1", storage.Record{Value: []byte("v1")}},
		{"expires later", "k2", storage.Record{Value: []byte("v2"), Expires: future}},
		{"expiry to the nanosecond", "k2n", storage.Record{Value: []byte("v"), Expires: time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)}},
		{"empty value", "k3", storage.Record{}},
		{"binary value", "k4", storage.Record{Value: []byte{0, 1, 2, 0xff}}},
		{"binary key", "\x00\xff/..", storage.Record{Value: []byte("x")}},
		{"long key", strings.Repeat("k", 512), storage.Record{Value: []byte("x")}},
		{"large value", "k5", storage.Record{Value: bytes.Repeat([]byte("z"), 1<<20)}},
	}
	for _, tt := range tests {
		put(t, st, kindA, tt.key, tt.rec)
		got, err := get(t, st, kindA, tt.key)
		if err != nil {
			t.Errorf("%s: Get: %v", tt.name, err)
			continue
		}
		if !bytes.Equal(got.Value, tt.rec.Value) {
			t.Errorf("%s: Value = %q, want %q", tt.name, trunc(got.Value), trunc(tt.rec.Value))
		}
		if !got.Expires.Equal(tt.rec.Expires) || got.Expires.IsZero() != tt.rec.Expires.IsZero() {
			t.Errorf("%s: Expires = %v, want %v", tt.name, got.Expires, tt.rec.Expires)
		}
		if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Delete(kindA, tt.key) }); err != nil {
			t.Fatalf("%s: Delete: %v", tt.name, err)
		}
		wantAbsent(t, st, kindA, tt.key, tt.name+", deleted")
	}

	// Overwrite replaces value and expiry.
	put(t, st, kindA, "o", storage.Record{Value: []byte("old"), Expires: future})
	put(t, st, kindA, "o", storage.Record{Value: []byte("new")})
	if got, err := get(t, st, kindA, "o"); err != nil || string(got.Value) != "new" || !got.Expires.IsZero() {
		t.Errorf("overwritten: %q %v %v; want new, never expiring", got.Value, got.Expires, err)
	}

	// Kinds are separate namespaces.
	put(t, st, kindA, "same", storage.Record{Value: []byte("a")})
	put(t, st, kindB, "same", storage.Record{Value: []byte("b")})
	wantValue(t, st, kindA, "same", "a")
	wantValue(t, st, kindB, "same", "b")
	if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Delete(kindB, "same") }); err != nil {
		t.Fatal(err)
	}
	wantValue(t, st, kindA, "same", "a")

	// Absent records and kinds.
	wantAbsent(t, st, kindA, "nope", "never written")
	wantAbsent(t, st, "no-such-kind", "k", "a kind never written")
	if err := st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Delete(kindA, "nope"); err != nil {
			return err
		}
		return tx.Delete("no-such-kind", "k")
	}); err != nil {
		t.Errorf("deleting absent records: %v", err)
	}

	// An empty key is refused, and the refusal is the caller's error,
	// not an outage.
	err := st.Update(ctx, func(tx storage.Tx) error { return tx.Put(kindA, "", storage.Record{Value: []byte("x")}) })
	if err == nil {
		t.Error("Put with an empty key succeeded")
	} else if errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put with an empty key: %v, an ErrUnavailable (the engine would answer 503 for a bug)", err)
	}

	// Values are copies both ways.
	in := []byte("original")
	put(t, st, kindA, "c", storage.Record{Value: in})
	copy(in, "XXXXXXXX")
	got, _ := get(t, st, kindA, "c")
	if string(got.Value) != "original" {
		t.Fatalf("stored value changed with the caller's slice: %q", got.Value)
	}
	copy(got.Value, "YYYYYYYY")
	wantValue(t, st, kindA, "c", "original")

	// A transaction reads its own writes and deletes.
	if err := st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Put(kindB, "rw", storage.Record{Value: []byte("1")}); err != nil {
			return err
		}
		if rec, err := tx.Get(kindB, "rw"); err != nil || string(rec.Value) != "1" {
			return fmt.Errorf("own write not visible: %q %v", rec.Value, err)
		}
		if ks := forEachKeys(tx, kindB); !slices.Contains(ks, "rw") {
			return fmt.Errorf("own write not visible to ForEach: %q", ks)
		}
		if err := tx.Delete(kindB, "rw"); err != nil {
			return err
		}
		if _, err := tx.Get(kindB, "rw"); !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("own delete not visible: %v", err)
		}
		if ks := forEachKeys(tx, kindB); slices.Contains(ks, "rw") {
			return fmt.Errorf("own delete not visible to ForEach: %q", ks)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func forEachKeys(tx storage.Tx, kind storage.Kind) []string {
	var out []string
	_ = tx.ForEach(kind, func(k string, _ storage.Record) error { out = append(out, k); return nil })
	return out
}

// testEveryKind: every kind the engine uses stores and lists records, on
// its own.
func testEveryKind(t *testing.T, st storage.Store) {
	kinds := []storage.Kind{
		storage.KindKeys, storage.KindUsers, storage.KindCodes, storage.KindFamilies,
		storage.KindRevoked, storage.KindSessions, storage.KindConsents, storage.KindSecrets,
		storage.KindAssertions, storage.KindAccess, storage.KindClients, storage.KindSubjects, storage.KindPushed,
	}
	exp := time.Now().Add(time.Hour)
	if err := st.Update(ctx, func(tx storage.Tx) error {
		for _, k := range kinds {
			for _, key := range []string{"x", "y"} {
				if err := tx.Put(k, key, storage.Record{Value: []byte(string(k) + "/" + key), Expires: exp}); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if got := keys(t, st, k); !slices.Equal(got, []string{"x", "y"}) {
			t.Errorf("ForEach %s = %q, want [x y]", k, got)
		}
		wantValue(t, st, k, "y", string(k)+"/y")
	}
}

func testExpiredInvisible(t *testing.T, st storage.Store) {
	now := time.Now()
	put(t, st, kindA, "past", storage.Record{Value: []byte("p"), Expires: now.Add(-time.Second)})
	put(t, st, kindA, "long-past", storage.Record{Value: []byte("p"), Expires: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)})
	put(t, st, kindA, "before-epoch", storage.Record{Value: []byte("p"), Expires: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)})
	put(t, st, kindA, "live", storage.Record{Value: []byte("l"), Expires: now.Add(time.Hour)})
	put(t, st, kindA, "forever", storage.Record{Value: []byte("f")})
	for _, k := range []string{"past", "long-past", "before-epoch"} {
		wantAbsent(t, st, kindA, k, "expired")
	}
	wantValue(t, st, kindA, "live", "l")
	wantValue(t, st, kindA, "forever", "f")
	if got := keys(t, st, kindA); !slices.Equal(got, []string{"forever", "live"}) {
		t.Errorf("ForEach = %q, want [forever live]", got)
	}
	// Inside a write transaction too: a single-use record that expired
	// must not be taken.
	if err := st.Update(ctx, func(tx storage.Tx) error {
		if _, err := tx.Get(kindA, "past"); !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("expired record in Update: %v, want ErrNotFound", err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// Writing an expired record over a live one hides it.
	put(t, st, kindA, "live", storage.Record{Value: []byte("l2"), Expires: now.Add(-time.Minute)})
	wantAbsent(t, st, kindA, "live", "overwritten with an expired record")
}

// testExpiryInstants: expiry instants at and beyond the ends of what a
// backend may find easy to store keep their meaning.
func testExpiryInstants(t *testing.T, st storage.Store) {
	tests := []struct {
		name    string
		expires time.Time
		visible bool
	}{
		{"zero never expires", time.Time{}, true},
		{"year 2300", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), true},
		{"max duration from now", time.Now().Add(math.MaxInt64), true},
		{"epoch", time.Unix(0, 0), false},
		{"one ns after epoch", time.Unix(0, 1), false},
		{"year 1500", time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), false},
	}
	for _, tt := range tests {
		put(t, st, kindA, tt.name, storage.Record{Value: []byte("v"), Expires: tt.expires})
		rec, err := get(t, st, kindA, tt.name)
		switch {
		case tt.visible && err != nil:
			t.Errorf("%s: Get = %v, want visible", tt.name, err)
		case tt.visible && rec.Expires.IsZero() != tt.expires.IsZero():
			t.Errorf("%s: Expires = %v, want %v", tt.name, rec.Expires, tt.expires)
		case !tt.visible && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("%s: Get = %v, want ErrNotFound (expired)", tt.name, err)
		}
	}
}

// testExpiresOnTheClock: a record stops being visible when the real
// clock passes its expiry, without anyone writing.
func testExpiresOnTheClock(t *testing.T, st storage.Store) {
	exp := time.Now().Add(300 * time.Millisecond)
	put(t, st, kindA, "short", storage.Record{Value: []byte("s"), Expires: exp})
	// Checked only if the machine was quick enough to read it in time.
	if _, err := get(t, st, kindA, "short"); err != nil && time.Now().Before(exp) {
		t.Errorf("Get before the expiry: %v", err)
	}
	time.Sleep(time.Until(exp) + 10*time.Millisecond)
	wantAbsent(t, st, kindA, "short", "its expiry has passed")
	if got := keys(t, st, kindA); len(got) != 0 {
		t.Errorf("ForEach after the expiry = %q", got)
	}
}

func testForEach(t *testing.T, st storage.Store) {
	for _, k := range []string{"c", "a", "b", "d", "B", "\x00", "aa"} {
		put(t, st, kindA, k, storage.Record{Value: []byte("v" + k)})
	}
	put(t, st, kindB, "other", storage.Record{Value: []byte("o")})
	want := []string{"\x00", "B", "a", "aa", "b", "c", "d"} // byte order
	if got := keys(t, st, kindA); !slices.Equal(got, want) {
		t.Errorf("ForEach order = %q, want %q", got, want)
	}
	stop := errors.New("stop")
	var seen []string
	err := st.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(kindA, func(k string, rec storage.Record) error {
			if string(rec.Value) != "v"+k {
				return fmt.Errorf("value of %q = %q", k, rec.Value)
			}
			seen = append(seen, k)
			if k == "aa" {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) {
		t.Errorf("err = %v, want the callback's error", err)
	}
	if !slices.Equal(seen, want[:4]) {
		t.Errorf("visited %q, want %q and nothing after the callback's error", seen, want[:4])
	}
	called := false
	if err := st.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach("no-such-kind", func(string, storage.Record) error { called = true; return nil })
	}); err != nil || called {
		t.Errorf("ForEach of an absent kind: err=%v called=%v", err, called)
	}
}

func testViewIsReadOnly(t *testing.T, st storage.Store) {
	put(t, st, kindA, "k", storage.Record{Value: []byte("v")})
	if err := st.View(ctx, func(tx storage.Tx) error { return tx.Put(kindA, "w", storage.Record{Value: []byte("v")}) }); err == nil {
		t.Error("Put inside View succeeded")
	}
	if err := st.View(ctx, func(tx storage.Tx) error { return tx.Delete(kindA, "k") }); err == nil {
		t.Error("Delete inside View succeeded")
	}
	// Even if fn ignores the refusals, nothing is written.
	if err := st.View(ctx, func(tx storage.Tx) error {
		_ = tx.Put(kindA, "w", storage.Record{Value: []byte("v")})
		_ = tx.Delete(kindA, "k")
		return nil
	}); err != nil {
		t.Errorf("View: %v", err)
	}
	wantAbsent(t, st, kindA, "w", "written inside View")
	wantValue(t, st, kindA, "k", "v")
}

func testUpdateRollsBack(t *testing.T, st storage.Store) {
	put(t, st, kindA, "keep", storage.Record{Value: []byte("before")})
	put(t, st, kindA, "gone", storage.Record{Value: []byte("before")})
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx storage.Tx) error {
		for _, w := range []func() error{
			func() error { return tx.Put(kindA, "new", storage.Record{Value: []byte("x")}) },
			func() error {
				return tx.Put(kindB, "new", storage.Record{Value: []byte("x"), Expires: time.Now().Add(time.Hour)})
			},
			func() error { return tx.Put(kindA, "keep", storage.Record{Value: []byte("after")}) },
			func() error { return tx.Delete(kindA, "gone") },
		} {
			if err := w(); err != nil {
				return err
			}
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("the callback's error %v is reported as unavailable", err)
	}
	wantAbsent(t, st, kindA, "new", "written by a failed Update")
	if got := keys(t, st, kindB); len(got) != 0 {
		t.Errorf("kind b holds %q after a failed Update", got)
	}
	wantValue(t, st, kindA, "keep", "before")
	wantValue(t, st, kindA, "gone", "before")
	// The rolled-back expiring record leaves nothing for Sweep either.
	if n, err := st.Sweep(ctx, time.Now().Add(2*time.Hour), 100); err != nil || n != 0 {
		t.Errorf("Sweep after a rolled-back Update = %d, %v; want 0", n, err)
	}
}

// testUpdateSerialised: concurrent read-modify-write transactions lose no
// update.
func testUpdateSerialised(t *testing.T, st storage.Store) {
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := st.Update
			if i%2 == 1 {
				do = st.Batch
			}
			errs <- do(ctx, func(tx storage.Tx) error { return increment(tx, "counter") })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	wantValue(t, st, kindA, "counter", fmt.Sprint(2*n))
}

func increment(tx storage.Tx, key string) error {
	v := 0
	rec, err := tx.Get(kindA, key)
	switch {
	case err == nil:
		if _, err := fmt.Sscan(string(rec.Value), &v); err != nil {
			return err
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	return tx.Put(kindA, key, storage.Record{Value: []byte(fmt.Sprint(v + 1))})
}

// testViewSnapshot: a View that has read one record of a pair that an
// Update changes together never sees the other one changed.
func testViewSnapshot(t *testing.T, st storage.Store) {
	put(t, st, kindA, "x", storage.Record{Value: []byte("0")})
	put(t, st, kindA, "y", storage.Record{Value: []byte("0")})
	for round := range 3 {
		old, next := fmt.Sprint(round), []byte(fmt.Sprint(round+1))
		started := make(chan struct{})
		written := make(chan error, 1)
		go func() {
			<-started
			written <- st.Update(ctx, func(tx storage.Tx) error {
				if err := tx.Put(kindA, "x", storage.Record{Value: next}); err != nil {
					return err
				}
				return tx.Put(kindA, "y", storage.Record{Value: next})
			})
		}()
		var x, y storage.Record
		err := st.View(ctx, func(tx storage.Tx) error {
			var err error
			if x, err = tx.Get(kindA, "x"); err != nil {
				return err
			}
			close(started)
			// A backend that keeps writers out during a View holds the
			// Update until this View ends; one with snapshots lets it
			// commit now. Either way y must still go with x.
			select {
			case err := <-written:
				written <- err
			case <-time.After(100 * time.Millisecond):
			}
			y, err = tx.Get(kindA, "y")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		if string(x.Value) != old || string(y.Value) != old {
			t.Fatalf("round %d: View saw x=%q y=%q, want both %q (the Update changes them together)", round, x.Value, y.Value, old)
		}
		wantValue(t, st, kindA, "y", string(next))
	}
}

// testViewInsideUpdate: a View begun inside an Update's fn (the engine
// looks up a client while it writes a user) does not wait for that
// Update, and sees what was committed, not the Update's own writes.
func testViewInsideUpdate(t *testing.T, st storage.Store) {
	put(t, st, kindA, "k", storage.Record{Value: []byte("committed")})
	done := make(chan error, 1)
	go func() {
		done <- st.Update(ctx, func(tx storage.Tx) error {
			if err := tx.Put(kindA, "k", storage.Record{Value: []byte("pending")}); err != nil {
				return err
			}
			return st.View(ctx, func(inner storage.Tx) error {
				rec, err := inner.Get(kindA, "k")
				if err != nil || string(rec.Value) != "committed" {
					return fmt.Errorf("a View inside an Update reads %q, %v; want the committed value", rec.Value, err)
				}
				return nil
			})
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a View inside an Update's fn still waits after 10s: deadlock")
	}
	wantValue(t, st, kindA, "k", "pending")
}
