package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// openNode opens a store on dsn as one node would, with cfg adjusted by
// set, and closes it when the test ends.
func openNode(t *testing.T, dsn string, set func(*Config)) *Store {
	t.Helper()
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Pool: pc}
	if set != nil {
		set(&cfg)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// watchInto starts a watch of kinds on s that sends every change to the
// returned channel.
func watchInto(t *testing.T, s *Store, kinds ...storage.Kind) <-chan storage.Change {
	t.Helper()
	ch := make(chan storage.Change, 100)
	stop, err := s.Watch(context.Background(), kinds, func(cs []storage.Change) {
		for _, c := range cs {
			ch <- c
		}
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(stop)
	return ch
}

// awaitChange waits up to within for the change of kind and key, failing
// on any other change of a watched kind but the ones in ignore.
func awaitChange(t *testing.T, ch <-chan storage.Change, kind storage.Kind, key string, within time.Duration) storage.Change {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case c := <-ch:
			if c.Kind == kind && c.Key == key {
				return c
			}
		case <-deadline:
			t.Fatalf("the write of %s %q was not reported within %v", kind, key, within)
		}
	}
}

func put(t *testing.T, s *Store, kind storage.Kind, key, value string) {
	t.Helper()
	if err := s.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put(kind, key, storage.Record{Value: []byte(value), Expires: time.Now().Add(time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
}

// TestWatchNotifyTwoNodes: a record of a watched kind committed through
// node A is reported at node B within 1s, by NOTIFY: B polls only once a
// minute here, so only the notification can be that fast. Kinds B does
// not watch are not reported.
func TestWatchNotifyTwoNodes(t *testing.T) {
	dsn := newDatabase(t)
	a := openNode(t, dsn, nil)
	b := openNode(t, dsn, func(c *Config) { c.PollInterval = time.Minute })
	if !a.notify || !b.notify {
		t.Fatal("PostgreSQL has pg_notify, yet the store does not notify")
	}
	changes := watchInto(t, b, storage.KindRevoked, storage.KindKeys)
	time.Sleep(300 * time.Millisecond) // B's LISTEN connection
	for i := range 5 {
		put(t, a, storage.KindCodes, fmt.Sprint("code", i), "unwatched")
		start := time.Now()
		put(t, a, storage.KindRevoked, fmt.Sprint("jti", i), fmt.Sprint("v", i))
		c := awaitChange(t, changes, storage.KindRevoked, fmt.Sprint("jti", i), time.Second)
		if string(c.Record.Value) != fmt.Sprint("v", i) || c.Record.Expires.IsZero() {
			t.Fatalf("reported %+v", c)
		}
		t.Logf("reported after %v", time.Since(start))
	}
	put(t, a, storage.KindKeys, "kid", "key")
	awaitChange(t, changes, storage.KindKeys, "kid", time.Second)
	select {
	case c := <-changes:
		if c.Kind == storage.KindCodes {
			t.Fatalf("an unwatched kind was reported: %+v", c)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWatchPollingTwoNodes: with LISTEN/NOTIFY off on both nodes (an
// engine without it), polling alone reports A's write at B within 1s,
// and a record written again is reported again.
func TestWatchPollingTwoNodes(t *testing.T) {
	dsn := newDatabase(t)
	off := func(c *Config) { c.NoNotify = true }
	a, b := openNode(t, dsn, off), openNode(t, dsn, off)
	if a.notify || b.notify {
		t.Fatal("NoNotify left notifications on")
	}
	if d := b.WatchDelay(); d > time.Second {
		t.Fatalf("WatchDelay %v by default, want at most 1s", d)
	}
	changes := watchInto(t, b, storage.KindRevoked)
	for i := range 3 {
		put(t, a, storage.KindRevoked, "jti", fmt.Sprint("v", i))
		c := awaitChange(t, changes, storage.KindRevoked, "jti", time.Second)
		if string(c.Record.Value) != fmt.Sprint("v", i) {
			t.Fatalf("reported %q, want v%d", c.Record.Value, i)
		}
	}
	// Reported once per write, though every poll reads it again.
	select {
	case c := <-changes:
		t.Fatalf("reported again without a write: %+v", c)
	case <-time.After(time.Second):
	}
}

// TestWatchLateCommit: a transaction that stamped its record before
// several of B's polls and committed after them is still reported
// within 1s of its commit, with and without NOTIFY.
func TestWatchLateCommit(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprint("notify=", notify), func(t *testing.T) {
			dsn := newDatabase(t)
			set := func(c *Config) { c.NoNotify = !notify }
			a, b := openNode(t, dsn, set), openNode(t, dsn, set)
			changes := watchInto(t, b, storage.KindRevoked)
			// Other writes keep B's reads moving on meanwhile.
			go func() {
				for i := range 8 {
					_ = a.Update(context.Background(), func(tx storage.Tx) error {
						return tx.Put(storage.KindRevoked, fmt.Sprint("other", i), storage.Record{Value: []byte("x")})
					})
					time.Sleep(250 * time.Millisecond)
				}
			}()
			if err := a.Update(context.Background(), func(tx storage.Tx) error {
				if err := tx.Put(storage.KindRevoked, "late", storage.Record{Value: []byte("late")}); err != nil {
					return err
				}
				time.Sleep(3 * time.Second)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			awaitChange(t, changes, storage.KindRevoked, "late", time.Second)
		})
	}
}

// TestWatchListenReconnects: when B's LISTEN connection is killed, B
// connects again and notifications are fast again; meanwhile nothing is
// lost.
func TestWatchListenReconnects(t *testing.T) {
	dsn := newDatabase(t)
	a := openNode(t, dsn, nil)
	b := openNode(t, dsn, func(c *Config) { c.PollInterval = time.Minute })
	changes := watchInto(t, b, storage.KindRevoked)
	time.Sleep(300 * time.Millisecond)
	var db string
	if err := b.pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	var killed int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND query LIKE 'LISTEN%'`, db).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("found %d LISTEN connections, want 1", killed)
	}
	time.Sleep(2500 * time.Millisecond) // the first retry is after 1s
	put(t, a, storage.KindRevoked, "after", "x")
	awaitChange(t, changes, storage.KindRevoked, "after", time.Second)
}

// TestWatchStops: after stop, and after Close, fn is not called again.
func TestWatchStops(t *testing.T) {
	dsn := newDatabase(t)
	a, b := openNode(t, dsn, nil), openNode(t, dsn, nil)
	calls := make(chan struct{}, 10)
	stop, err := b.Watch(context.Background(), []storage.Kind{storage.KindRevoked}, func([]storage.Change) { calls <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // a second call does nothing
	c := openNode(t, dsn, nil)
	cs := watchInto(t, c, storage.KindRevoked)
	if _, err := c.Watch(context.Background(), nil, func([]storage.Change) {}); err == nil {
		t.Fatal("Watch of no kinds was accepted")
	}
	_ = c.Close()
	put(t, a, storage.KindRevoked, "x", "x")
	select {
	case <-calls:
		t.Fatal("a stopped watch reported a change")
	case <-cs:
		t.Fatal("a watch of a closed store reported a change")
	case <-time.After(time.Second):
	}
	if _, err := c.Watch(context.Background(), []storage.Kind{storage.KindRevoked}, func([]storage.Change) {}); err == nil {
		t.Fatal("Watch on a closed store was accepted")
	}
}

// TestWatchDatabaseRestart: while the database is down, B's reads fail
// with one log line (not one per poll); once it is back, a write is
// reported within 1s (by polling, while the LISTEN connection waits out
// its back-off), and each failure and recovery is logged once.
func TestWatchDatabaseRestart(t *testing.T) {
	dsn := newDatabase(t)
	core, logs := observer.New(zapcore.InfoLevel)
	a := openNode(t, dsn, nil)
	b := openNode(t, dsn, func(c *Config) { c.Logger = zap.New(core) })
	changes := watchInto(t, b, storage.KindRevoked)
	time.Sleep(300 * time.Millisecond)
	pg.Down()
	time.Sleep(2 * time.Second) // eight polls
	if err := pg.Up(); err != nil {
		t.Fatal(err)
	}
	put(t, a, storage.KindRevoked, "after-restart", "x")
	awaitChange(t, changes, storage.KindRevoked, "after-restart", time.Second)
	time.Sleep(3 * time.Second) // the LISTEN connection's retries
	count := func(msg string) int { return logs.FilterMessageSnippet(msg).Len() }
	if n := count("reading the changes other nodes made failed"); n != 1 {
		t.Errorf("%d lines about failed reads, want 1", n)
	}
	if n := count("reading the changes other nodes made works again"); n != 1 {
		t.Errorf("%d lines about reads working again, want 1", n)
	}
	if n := count("lost the database's change notifications"); n != 1 {
		t.Errorf("%d lines about lost notifications, want 1", n)
	}
	if n := count("change notifications are back"); n != 1 {
		t.Errorf("%d lines about notifications back, want 1", n)
	}
}
