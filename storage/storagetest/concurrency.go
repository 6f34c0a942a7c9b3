package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// testSingleUseTake: of 100 callers that each read a record and delete it
// in one transaction (how the engine redeems a code or rotates a refresh
// token), exactly one wins, in every round.
func testSingleUseTake(t *testing.T, st storage.Store, do func(context.Context, func(storage.Tx) error) error) {
	const (
		callers = 100
		rounds  = 5
	)
	for round := range rounds {
		key := fmt.Sprintf("code-%d", round)
		put(t, st, storage.KindCodes, key, storage.Record{Value: []byte("grant"), Expires: time.Now().Add(time.Hour)})
		var (
			wg      sync.WaitGroup
			winners atomic.Int32
			start   = make(chan struct{})
			errs    = make(chan error, callers)
		)
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// fn may run more than once (Batch); only the outcome
				// of the run that committed counts.
				took := false
				err := do(ctx, func(tx storage.Tx) error {
					took = false
					rec, err := tx.Get(storage.KindCodes, key)
					if errors.Is(err, storage.ErrNotFound) {
						return nil
					}
					if err != nil {
						return err
					}
					if string(rec.Value) != "grant" {
						return fmt.Errorf("read %q", rec.Value)
					}
					took = true
					return tx.Delete(storage.KindCodes, key)
				})
				if err != nil {
					errs <- err
					return
				}
				if took {
					winners.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if n := winners.Load(); n != 1 {
			t.Fatalf("round %d: %d of %d concurrent callers took the single-use record, want exactly 1", round, n, callers)
		}
		wantAbsent(t, st, storage.KindCodes, key, "taken")
	}
}

// testBatchOwnErrors: concurrent Batch callers each get their own
// outcome: a caller whose fn fails gets its error and nothing of its fn
// is written; the others are committed and visible when Batch returns.
func testBatchOwnErrors(t *testing.T, st storage.Store) {
	put(t, st, kindB, "shared", storage.Record{Value: []byte("before")})
	const n = 60
	failing := func(i int) bool { return i%10 == 3 }
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = st.Batch(ctx, func(tx storage.Tx) error {
				if err := tx.Put(kindA, fmt.Sprintf("k%02d", i), storage.Record{Value: []byte{byte(i)}}); err != nil {
					return err
				}
				if failing(i) {
					// A failing caller also changed a record the others
					// do not touch: that change goes too.
					if err := tx.Put(kindB, "shared", storage.Record{Value: []byte(fmt.Sprint(i))}); err != nil {
						return err
					}
					return fmt.Errorf("caller %d fails", i)
				}
				return nil
			})
			if errs[i] == nil {
				// Committed: visible to a new transaction at once.
				if rec, err := get(t, st, kindA, fmt.Sprintf("k%02d", i)); err != nil || len(rec.Value) != 1 || rec.Value[0] != byte(i) {
					errs[i] = fmt.Errorf("Batch returned nil but a View right after reads %v, %v", rec.Value, err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		key := fmt.Sprintf("k%02d", i)
		if failing(i) {
			if errs[i] == nil || !strings.Contains(errs[i].Error(), fmt.Sprintf("caller %d fails", i)) {
				t.Errorf("caller %d: err = %v, want its own error", i, errs[i])
			}
			if errors.Is(errs[i], storage.ErrUnavailable) {
				t.Errorf("caller %d: its own error %v is reported as unavailable", i, errs[i])
			}
			wantAbsent(t, st, kindA, key, "written by a failed Batch fn")
			continue
		}
		if errs[i] != nil {
			t.Errorf("caller %d: %v (another caller's failure leaked)", i, errs[i])
		}
	}
	wantValue(t, st, kindB, "shared", "before")
	if got, want := len(keys(t, st, kindA)), n-n/10; got != want {
		t.Errorf("%d records, want %d", got, want)
	}
}

// testBatchSeesEarlierWrites: Batch callers committed together still
// run one after the other, each seeing the writes of those before it.
func testBatchSeesEarlierWrites(t *testing.T, st storage.Store) {
	const n = 100
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- st.Batch(ctx, func(tx storage.Tx) error {
				if i%7 == 0 {
					// Fails after its increment: the increment must go.
					if err := increment(tx, "counter"); err != nil {
						return err
					}
					return errors.New("fails after incrementing")
				}
				return increment(tx, "counter")
			})
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if want := (n + 6) / 7; failed != want {
		t.Errorf("%d callers failed, want %d", failed, want)
	}
	wantValue(t, st, kindA, "counter", fmt.Sprint(n-failed))
}

// mustPanic runs f and returns what it panicked with; it fails the test
// if f returns.
func mustPanic(t *testing.T, what string, f func()) (v any) {
	t.Helper()
	returned := false
	func() {
		defer func() { v = recover() }()
		f()
		returned = true
	}()
	if returned {
		t.Fatalf("%s returned; want the panic of its fn to reach the caller", what)
	}
	return v
}

const callerBug = "a bug in the caller's fn"

// testPanicUpdate: a panic in Update's fn reaches the caller after the
// transaction is rolled back, and the store goes on working.
func testPanicUpdate(t *testing.T, st storage.Store) {
	put(t, st, kindA, "keep", storage.Record{Value: []byte("before")})
	v := mustPanic(t, "Update", func() {
		_ = st.Update(ctx, func(tx storage.Tx) error {
			_ = tx.Put(kindA, "new", storage.Record{Value: []byte("x")})
			_ = tx.Put(kindA, "keep", storage.Record{Value: []byte("after")})
			panic(callerBug)
		})
	})
	if !strings.Contains(fmt.Sprint(v), callerBug) {
		t.Errorf("panicked with %v, want the fn's own panic", v)
	}
	wantAbsent(t, st, kindA, "new", "written by an Update whose fn panicked")
	wantValue(t, st, kindA, "keep", "before")
	put(t, st, kindA, "after", storage.Record{Value: []byte("ok")})
	wantValue(t, st, kindA, "after", "ok")
}

func testPanicView(t *testing.T, st storage.Store) {
	put(t, st, kindA, "k", storage.Record{Value: []byte("v")})
	v := mustPanic(t, "View", func() {
		_ = st.View(ctx, func(tx storage.Tx) error {
			_, _ = tx.Get(kindA, "k")
			panic(callerBug)
		})
	})
	if !strings.Contains(fmt.Sprint(v), callerBug) {
		t.Errorf("panicked with %v, want the fn's own panic", v)
	}
	// Nothing is left held: writers and readers go on.
	put(t, st, kindA, "k", storage.Record{Value: []byte("v2")})
	wantValue(t, st, kindA, "k", "v2")
}

// testPanicBatch: a panic in one Batch fn reaches that caller only; the
// callers committed with it are unaffected, and nothing of the panicking
// fn is written.
func testPanicBatch(t *testing.T, st storage.Store) {
	const n = 30
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		errs   = make([]error, n)
		panics = make([]any, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			<-start
			errs[i] = st.Batch(ctx, func(tx storage.Tx) error {
				if err := tx.Put(kindA, fmt.Sprintf("k%02d", i), storage.Record{Value: []byte("v")}); err != nil {
					return err
				}
				if i == 7 {
					panic(callerBug)
				}
				return nil
			})
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if i == 7 {
			if !strings.Contains(fmt.Sprint(panics[i]), callerBug) {
				t.Errorf("the panicking caller got panic %v, err %v; want its fn's panic", panics[i], errs[i])
			}
			wantAbsent(t, st, kindA, "k07", "written by a Batch fn that panicked")
			continue
		}
		if panics[i] != nil || errs[i] != nil {
			t.Errorf("caller %d: panic %v, err %v; another caller's panic leaked", i, panics[i], errs[i])
		}
		wantValue(t, st, kindA, fmt.Sprintf("k%02d", i), "v")
	}
	put(t, st, kindA, "after", storage.Record{Value: []byte("ok")})
}

// testContextDone: a transaction asked for with a context that is
// already done does not run: the caller gets the context's error and
// nothing is written.
func testContextDone(t *testing.T, st storage.Store) {
	put(t, st, kindA, "k", storage.Record{Value: []byte("before")})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"cancelled", cancelled, context.Canceled}, {"deadline passed", expired, context.DeadlineExceeded}} {
		write := func(tx storage.Tx) error {
			if err := tx.Put(kindA, "new", storage.Record{Value: []byte("x")}); err != nil {
				return err
			}
			return tx.Put(kindA, "k", storage.Record{Value: []byte("after")})
		}
		for name, do := range map[string]func(context.Context, func(storage.Tx) error) error{
			"Update": st.Update, "Batch": st.Batch,
			"View": func(ctx context.Context, _ func(storage.Tx) error) error {
				return st.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(kindA, "k"); return err })
			},
		} {
			if err := do(c.ctx, write); !errors.Is(err, c.want) {
				t.Errorf("%s with a context %s: %v, want %v", name, c.name, err, c.want)
			}
		}
	}
	wantAbsent(t, st, kindA, "new", "written with a done context")
	wantValue(t, st, kindA, "k", "before")
}

// testClosed: a closed store answers ErrUnavailable, not a panic.
func testClosed(t *testing.T, st storage.Store) {
	put(t, st, kindA, "k", storage.Record{Value: []byte("v")})
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	noop := func(storage.Tx) error { return nil }
	for name, err := range map[string]error{
		"View":   st.View(ctx, noop),
		"Update": st.Update(ctx, noop),
		"Batch":  st.Batch(ctx, noop),
	} {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s on a closed store: %v, want ErrUnavailable", name, err)
		}
	}
	if _, err := st.Sweep(ctx, time.Now(), 10); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Sweep on a closed store: %v, want ErrUnavailable", err)
	}
}
