package postgres

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// panicTracer makes pgx panic when it is about to send a statement that
// starts with the armed prefix: a bug inside the driver, not in the
// caller's fn.
type panicTracer struct{ armed atomic.Pointer[string] }

func (p *panicTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if pre := p.armed.Load(); pre != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(d.SQL)), *pre) {
		panic("driver bug: " + *pre)
	}
	return ctx
}

func (p *panicTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (p *panicTracer) arm(prefix string) { p.armed.Store(&prefix) }
func (p *panicTracer) disarm()           { p.armed.Store(nil) }

// TestDriverPanicIsUnavailable: a panic inside pgx, whether in a
// statement of fn, in COMMIT, in a sweep or in taking a lock, becomes an
// error wrapping storage.ErrUnavailable, writes nothing, and leaves the
// store working; a panic of the caller's own fn (or ForEach callback)
// still goes on in the caller's goroutine.
func TestDriverPanicIsUnavailable(t *testing.T) {
	pc, err := pgxpool.ParseConfig(newDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 2
	tr := &panicTracer{}
	pc.ConnConfig.Tracer = tr
	s, err := Open(context.Background(), Config{Pool: pc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	put := func(key string) func(storage.Tx) error {
		return func(tx storage.Tx) error {
			return tx.Put(storage.KindCodes, key, storage.Record{Value: []byte("v"), Expires: time.Now().Add(time.Minute)})
		}
	}
	if err := s.Update(ctx, put("before")); err != nil {
		t.Fatal(err)
	}
	noPanic := func(what string, f func() error) error {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%s: the driver's panic reached the caller: %v", what, r)
			}
		}()
		return f()
	}
	for _, tc := range []struct {
		what, prefix string
		call         func() error
	}{
		{"Get in View", "select value", func() error {
			return s.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(storage.KindCodes, "before"); return err })
		}},
		{"Put in Update", "insert", func() error { return s.Update(ctx, put("p1")) }},
		{"Delete in Batch", "delete", func() error {
			return s.Batch(ctx, func(tx storage.Tx) error { return tx.Delete(storage.KindCodes, "before") })
		}},
		{"ForEach", "select key", func() error {
			return s.View(ctx, func(tx storage.Tx) error {
				return tx.ForEach(storage.KindCodes, func(string, storage.Record) error { return nil })
			})
		}},
		{"COMMIT", "commit", func() error { return s.Update(ctx, put("p2")) }},
		{"BEGIN", "begin", func() error { return s.Update(ctx, put("p3")) }},
		{"Sweep", "delete", func() error { _, err := s.Sweep(ctx, time.Now(), 10); return err }},
		{"TryLock", "select pg_try", func() error { _, _, err := s.TryLock(ctx, "sweep"); return err }},
	} {
		tr.arm(tc.prefix)
		err := noPanic(tc.what, tc.call)
		tr.disarm()
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "driver panicked") {
			t.Errorf("%s: %v, want an error wrapping ErrUnavailable that says the driver panicked", tc.what, err)
		}
		// Nothing written, and the store works on.
		var keys []string
		if err := s.View(ctx, func(tx storage.Tx) error {
			return tx.ForEach(storage.KindCodes, func(k string, _ storage.Record) error { keys = append(keys, k); return nil })
		}); err != nil {
			t.Fatalf("after %s: %v", tc.what, err)
		}
		if len(keys) != 1 || keys[0] != "before" {
			t.Fatalf("after %s: records %v, want only [before]", tc.what, keys)
		}
		if err := s.Update(ctx, func(tx storage.Tx) error {
			return tx.Put(storage.KindCodes, "before", storage.Record{Value: []byte("v")})
		}); err != nil {
			t.Fatalf("after %s: %v", tc.what, err)
		}
	}

	// The caller's panics are the caller's.
	for what, fn := range map[string]func(storage.Tx) error{
		"fn": func(tx storage.Tx) error {
			if err := tx.Put(storage.KindCodes, "mine", storage.Record{Value: []byte("v")}); err != nil {
				return err
			}
			panic("caller bug")
		},
		"ForEach callback": func(tx storage.Tx) error {
			return tx.ForEach(storage.KindCodes, func(string, storage.Record) error { panic("caller bug") })
		},
	} {
		got := func() (r any) {
			defer func() { r = recover() }()
			_ = s.Update(ctx, fn)
			return nil
		}()
		if got != "caller bug" {
			t.Errorf("panic in the caller's %s: recovered %v, want the caller's panic", what, got)
		}
		if err := s.View(ctx, func(tx storage.Tx) error {
			_, err := tx.Get(storage.KindCodes, "mine")
			return err
		}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("after the caller's panic in %s: %v, want nothing written", what, err)
		}
	}
}
