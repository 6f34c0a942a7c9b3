package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// testSweep: Sweep deletes what expired at the instant it is given (its
// expiry at or before it), up to limit, and reports how many; live and
// never-expiring records stay.
func testSweep(t *testing.T, st storage.Store) {
	now := time.Now()
	// Records that expire in an hour are live for Get (which uses the real
	// clock) but expired for a Sweep told it is two hours later, so the
	// test can tell "hidden" from "deleted".
	soon := now.Add(time.Hour)
	later := now.Add(2 * time.Hour)
	if err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range 10 {
			for _, kind := range []storage.Kind{kindA, kindB} {
				if err := tx.Put(kind, fmt.Sprintf("exp%d", i), storage.Record{Value: []byte("e"), Expires: soon}); err != nil {
					return err
				}
				if err := tx.Put(kind, fmt.Sprintf("live%d", i), storage.Record{Value: []byte("l"), Expires: now.Add(3 * time.Hour)}); err != nil {
					return err
				}
			}
			if err := tx.Put(kindA, fmt.Sprintf("forever%d", i), storage.Record{Value: []byte("f")}); err != nil {
				return err
			}
		}
		// Expires exactly at the instant given to Sweep: expired then
		// (Record.Expired), so swept.
		return tx.Put(kindB, "edge", storage.Record{Value: []byte("e"), Expires: later})
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Sweep(ctx, now, 1000); err != nil || n != 0 {
		t.Fatalf("Sweep(now) = %d, %v; want 0 (nothing has expired)", n, err)
	}
	if n, err := st.Sweep(ctx, later, 0); err != nil || n != 0 {
		t.Fatalf("Sweep(limit 0) = %d, %v; want 0", n, err)
	}
	n, err := st.Sweep(ctx, later, 15)
	if err != nil || n != 15 {
		t.Fatalf("Sweep(limit 15) = %d, %v; want 15", n, err)
	}
	n, err = st.Sweep(ctx, later, 1000)
	if err != nil || n != 6 {
		t.Fatalf("second Sweep = %d, %v; want the 6 left", n, err)
	}
	if n, err := st.Sweep(ctx, later, 1000); err != nil || n != 0 {
		t.Errorf("third Sweep = %d, %v; want 0", n, err)
	}
	for _, kind := range []storage.Kind{kindA, kindB} {
		for i := range 10 {
			wantAbsent(t, st, kind, fmt.Sprintf("exp%d", i), "swept")
			wantValue(t, st, kind, fmt.Sprintf("live%d", i), "l")
		}
	}
	if got := len(keys(t, st, kindA)); got != 20 {
		t.Errorf("%d records of kind a, want 20 (live and never expiring)", got)
	}
	// Deleted, not hidden: later than every record's expiry, only the
	// never-expiring records are left for a Sweep to keep.
	if n, err := st.Sweep(ctx, now.Add(4*time.Hour), 1000); err != nil || n != 20 {
		t.Errorf("Sweep after every expiry = %d, %v; want the 20 live ones", n, err)
	}
	if got := len(keys(t, st, kindA)); got != 10 {
		t.Errorf("%d records of kind a, want the 10 never expiring", got)
	}
}

// testSweepFollowsRewrites: Sweep goes by each record's current expiry:
// a record given a later expiry, or none, since it was first written is
// kept, a deleted one is not counted, one given an earlier expiry is
// swept by it.
func testSweepFollowsRewrites(t *testing.T, st storage.Store) {
	now := time.Now()
	past := now.Add(-time.Minute)
	err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range 100 {
			exp := past
			if i%2 == 0 {
				exp = now.Add(time.Hour)
			}
			if err := tx.Put(kindA, fmt.Sprint(i), storage.Record{Value: []byte("v"), Expires: exp}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// In later transactions, as the engine does.
	err = st.Update(ctx, func(tx storage.Tx) error {
		for _, w := range []func() error{
			// Renewed: expired, then given a later expiry.
			func() error {
				return tx.Put(kindA, "1", storage.Record{Value: []byte("renewed"), Expires: now.Add(time.Hour)})
			},
			// Made permanent.
			func() error { return tx.Put(kindA, "5", storage.Record{Value: []byte("forever")}) },
			// Deleted by hand.
			func() error { return tx.Delete(kindA, "3") },
			// Live, then given an expiry in the past.
			func() error { return tx.Put(kindA, "0", storage.Record{Value: []byte("v"), Expires: past}) },
			// Never expiring, then given an expiry in the past.
			func() error { return tx.Put(kindA, "forever", storage.Record{Value: []byte("v")}) },
		} {
			if err := w(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, kindA, "forever", storage.Record{Value: []byte("v"), Expires: past})
	// 50 expired, minus 1, 3, 5, plus 0 and forever.
	if n, err := st.Sweep(ctx, now, 10000); err != nil || n != 49 {
		t.Fatalf("Sweep = %d, %v; want 49", n, err)
	}
	wantValue(t, st, kindA, "1", "renewed")
	wantValue(t, st, kindA, "5", "forever")
	if got := len(keys(t, st, kindA)); got != 51 {
		t.Errorf("%d records left, want 51", got)
	}
	if n, err := st.Sweep(ctx, now.Add(2*time.Hour), 10000); err != nil || n != 50 {
		t.Errorf("Sweep two hours later = %d, %v; want 50 (every live expiring record, counted once)", n, err)
	}
}

// testSweepMany: more expired records than one transaction of a careful
// backend holds, across kinds.
func testSweepMany(t *testing.T, st storage.Store) {
	past := time.Now().Add(-time.Minute)
	const total = 1500
	if err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range total {
			kind := []storage.Kind{kindA, kindB, "c"}[i%3]
			if err := tx.Put(kind, fmt.Sprintf("%04d", i), storage.Record{Expires: past}); err != nil {
				return err
			}
		}
		return tx.Put(kindA, "keep", storage.Record{Value: []byte("k")})
	}); err != nil {
		t.Fatal(err)
	}
	n, err := st.Sweep(ctx, time.Now(), 700)
	if err != nil || n != 700 {
		t.Fatalf("Sweep(limit 700) = %d, %v", n, err)
	}
	n, err = st.Sweep(ctx, time.Now(), 100_000)
	if err != nil || n != total-700 {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, total-700)
	}
	wantValue(t, st, kindA, "keep", "k")
}

// testSweepContextDone: a Sweep whose context is done stops early, at
// most after the transaction it is in, and reports what it deleted.
func testSweepContextDone(t *testing.T, st storage.Store) {
	past := time.Now().Add(-time.Minute)
	const total = 5000
	if err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range total {
			if err := tx.Put(kindA, fmt.Sprintf("%05d", i), storage.Record{Expires: past}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	n, err := st.Sweep(cancelled, time.Now(), 100_000)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Sweep with a cancelled context: %v, want nil or context.Canceled", err)
	}
	if n < 0 || n >= total {
		t.Errorf("Sweep with a cancelled context deleted %d of %d; want it to stop early", n, total)
	}
	m, err := st.Sweep(ctx, time.Now(), 100_000)
	if err != nil || n+m != total {
		t.Errorf("the next Sweep = %d, %v; want the %d left", m, err, total-n)
	}
}
