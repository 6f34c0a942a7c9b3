package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// TestUnreachable: a database nobody answers for is ErrUnavailable at
// Open, with the cause.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// 19349: outside the range TestMain picks from, nothing listens.
	s, err := OpenDSN(ctx, "postgres://u@127.0.0.1:19349/db?sslmode=disable&connect_timeout=2")
	if err == nil {
		_ = s.Close()
		t.Fatal("Open succeeded with no server")
	}
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "19349") {
		t.Errorf("Open: %v; want ErrUnavailable naming the address", err)
	}
}

// TestBadDSNKeepsSecret: a DSN pgx cannot parse is refused without
// repeating it (it may hold the password).
func TestBadDSNKeepsSecret(t *testing.T) {
	_, err := OpenDSN(context.Background(), "postgres://u:hunter2-secret@127.0.0.1:notaport/db")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("OpenDSN: %v; want an error without the password", err)
	}
}

// TestStatementFailure: a statement the database refuses (here: the
// table was dropped under the store) is ErrUnavailable keeping the
// cause, in View and Update alike, and fn's own error is untouched.
func TestStatementFailure(t *testing.T) {
	dsn := newDatabase(t)
	s, err := OpenDSN(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	own := errors.New("the caller's own")
	if err := s.Update(context.Background(), func(storage.Tx) error { return own }); err != own {
		t.Errorf("Update returned %v, want fn's error unchanged", err)
	}
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "DROP TABLE "+recordsTable); err != nil {
		t.Fatal(err)
	}
	read := s.View(context.Background(), func(tx storage.Tx) error { _, err := tx.Get(storage.KindCodes, "k"); return err })
	write := s.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put(storage.KindCodes, "k", storage.Record{Value: []byte("v")})
	})
	// fn ignores the failed statement: the transaction still fails.
	ignored := s.Update(context.Background(), func(tx storage.Tx) error {
		_ = tx.Delete(storage.KindCodes, "k")
		return nil
	})
	_, sweep := s.Sweep(context.Background(), time.Now(), 10)
	for name, err := range map[string]error{"View": read, "Update": write, "Update ignoring the error": ignored, "Sweep": sweep} {
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s: %v; want ErrUnavailable with the cause", name, err)
		}
	}
}

// TestUpdateRetriesConflicts: two Updates that read what the other
// writes (write skew, which only SERIALIZABLE catches) both succeed, one
// of them by running again: the outcome is as if they ran one after the
// other.
func TestUpdateRetriesConflicts(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	put := func(k, v string) {
		if err := s.Update(ctx, func(tx storage.Tx) error { return tx.Put(storage.KindKeys, k, storage.Record{Value: []byte(v)}) }); err != nil {
			t.Fatal(err)
		}
	}
	put("x", "on")
	put("y", "on")
	// Each turns its own key off if the other is still on: run one
	// after the other, exactly one is turned off.
	var ready sync.WaitGroup
	ready.Add(2)
	var runs atomic.Int32
	turnOff := func(mine, other string) error {
		first := true
		return s.Update(ctx, func(tx storage.Tx) error {
			runs.Add(1)
			rec, err := tx.Get(storage.KindKeys, other)
			if err != nil {
				return err
			}
			if first {
				// The first runs wait for each other's read, so that
				// they overlap.
				first = false
				ready.Done()
				ready.Wait()
			}
			if string(rec.Value) == "on" {
				return tx.Put(storage.KindKeys, mine, storage.Record{Value: []byte("off")})
			}
			return nil
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- turnOff("x", "y") }()
	go func() { errs <- turnOff("y", "x") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := runs.Load(); n < 3 {
		t.Errorf("fn ran %d times in all, want a run again after the conflict", n)
	}
	var x, y storage.Record
	if err := s.View(ctx, func(tx storage.Tx) error {
		var err error
		if x, err = tx.Get(storage.KindKeys, "x"); err != nil {
			return err
		}
		y, err = tx.Get(storage.KindKeys, "y")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if off := strings.Count(string(x.Value)+string(y.Value), "off"); off != 1 {
		t.Errorf("x=%s y=%s: %d turned off, want exactly 1 (write skew)", x.Value, y.Value, off)
	}
}

// TestViewInsideUpdatesPoolFull: as many Updates as the pool has
// connections, each running a View inside its fn (as the engine does),
// all finish: the Views do not wait for the connections the Updates hold.
func TestViewInsideUpdatesPoolFull(t *testing.T) {
	pc, err := pgxpool.ParseConfig(newDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 2
	s, err := Open(context.Background(), Config{Pool: pc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var inside sync.WaitGroup
	inside.Add(int(pc.MaxConns))
	errs := make(chan error, pc.MaxConns)
	for i := range int(pc.MaxConns) {
		go func() {
			first := true
			errs <- s.Update(context.Background(), func(tx storage.Tx) error {
				if first {
					// Every connection of the pool is in an Update now.
					first = false
					inside.Done()
					inside.Wait()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(storage.KindClients, "c"); return ignoreNotFound(err) }); err != nil {
					return err
				}
				return tx.Put(storage.KindUsers, fmt.Sprint(i), storage.Record{Value: []byte("u")})
			})
		}()
	}
	for range pc.MaxConns {
		if err := <-errs; err != nil {
			t.Errorf("Update with a View inside, pool full: %v", err)
		}
	}
}

func ignoreNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// TestConnectionsLost: after the server dropped every connection of the
// pool (a database restart, a failover, an idle timeout in a proxy), the
// next transactions run on new connections instead of failing: their
// first statement failed before anything was committed, so they run
// again.
func TestConnectionsLost(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	// Several connections in each pool.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Update(ctx, func(tx storage.Tx) error {
				return tx.Put(storage.KindUsers, "u", storage.Record{Value: []byte("v")})
			})
			_ = s.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(storage.KindUsers, "u"); return err })
		}()
	}
	wg.Wait()
	name := s.pool.Config().ConnConfig.Database
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", name).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminated %d connections: %v", n, err)
	}
	time.Sleep(100 * time.Millisecond) // let the server close them
	for i := range 6 {
		if err := s.Update(ctx, func(tx storage.Tx) error {
			return tx.Put(storage.KindUsers, fmt.Sprint(i), storage.Record{Value: []byte("v")})
		}); err != nil {
			t.Errorf("Update %d after the connections were lost: %v", i, err)
		}
		if err := s.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(storage.KindUsers, "u"); return err }); err != nil {
			t.Errorf("View %d after the connections were lost: %v", i, err)
		}
	}
}

// TestExpiryBeyondTimestamptz: expiries outside timestamptz's range
// (4713 BC to 294276 AD) keep their meaning instead of failing the write.
func TestExpiryBeyondTimestamptz(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		expires time.Time
		visible bool
	}{
		{"year 300000", time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"year -10000", time.Date(-10000, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		if err := s.Update(ctx, func(tx storage.Tx) error {
			return tx.Put(storage.KindKeys, c.name, storage.Record{Value: []byte("v"), Expires: c.expires})
		}); err != nil {
			t.Errorf("%s: Put: %v", c.name, err)
			continue
		}
		err := s.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(storage.KindKeys, c.name); return err })
		if c.visible != (err == nil) {
			t.Errorf("%s: Get = %v, want visible %v", c.name, err, c.visible)
		}
	}
}

// TestConnectTimeoutDefault: without a connect_timeout in the DSN,
// opening a connection is bounded anyway (a request's context may have
// no deadline); one the DSN sets is kept.
func TestConnectTimeoutDefault(t *testing.T) {
	dsn := newDatabase(t)
	for _, c := range []struct {
		dsn  string
		want time.Duration
	}{{dsn, defaultConnectTimeout}, {dsn + "&connect_timeout=3", 3 * time.Second}} {
		s, err := OpenDSN(context.Background(), c.dsn)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*pgxpool.Pool{s.pool, s.readPool} {
			if got := p.Config().ConnConfig.ConnectTimeout; got != c.want {
				t.Errorf("%s: ConnectTimeout = %v, want %v", c.dsn, got, c.want)
			}
		}
		_ = s.Close()
	}
}
