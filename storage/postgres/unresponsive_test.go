package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// freezer is a TCP proxy in front of the test's PostgreSQL that can stop
// answering: the server's host hangs or a network partition drops every
// packet, and nothing resets the connections.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{} // closed while frozen
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	t.Cleanup(f.close)
	go f.serve()
	return f
}

func (f *freezer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		frozen := f.frozen
		f.mu.Unlock()
		if frozen != nil {
			continue // accepted, never answered
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, up)
		f.mu.Unlock()
		go f.pipe(up, c)
		go f.pipe(c, up)
	}
}

// pipe copies src to dst until the proxy freezes; then it holds what it
// read.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		frozen := f.frozen
		f.mu.Unlock()
		if frozen != nil {
			<-make(chan struct{}) // never delivered; close() ends the conns
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = dst.Close()
			}
			return
		}
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = make(chan struct{})
}

func (f *freezer) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		_ = c.Close()
	}
}

// TestUnresponsiveServerBounded: when the server stops answering without
// closing the connections (a hung host, a partition), an Update fails
// with ErrUnavailable within about one TxTimeout (or one connect
// timeout), not once per pooled connection: a connection that timed out
// says nothing about the next one being alive, and trying every idle
// connection in turn would hold the request for MaxConns+1 timeouts.
func TestUnresponsiveServerBounded(t *testing.T) {
	dsn := newDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	f := newFreezer(t, u.Host)
	u.Host = f.ln.Addr().String()
	pc, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 6
	pc.ConnConfig.ConnectTimeout = 500 * time.Millisecond
	const txTimeout = 500 * time.Millisecond
	s, err := Open(context.Background(), Config{Pool: pc, TxTimeout: txTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	// Cleanups run last first: drop the proxy's connections before Close
	// says goodbye on them, or Close waits for the frozen server.
	t.Cleanup(f.close)
	ctx := context.Background()
	// Fill the write pool with idle connections.
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range int(pc.MaxConns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Update(ctx, func(tx storage.Tx) error {
				if _, err := tx.Get(storage.KindUsers, "u"); err != nil && !errors.Is(err, storage.ErrNotFound) {
					return err
				}
				<-hold
				return nil
			})
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); s.pool.Stat().AcquiredConns() < pc.MaxConns; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool has %d connections, want %d", s.pool.Stat().AcquiredConns(), pc.MaxConns)
		}
	}
	close(hold)
	wg.Wait()
	if idle := s.pool.Stat().IdleConns(); idle != pc.MaxConns {
		t.Fatalf("%d idle connections, want %d", idle, pc.MaxConns)
	}

	f.freeze()
	// The caller gives up after 10s (a client's timeout); the store must
	// not need it.
	patience, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	began := time.Now()
	err = s.Update(patience, func(tx storage.Tx) error {
		return tx.Put(storage.KindUsers, "u", storage.Record{Value: []byte("v")})
	})
	took := time.Since(began)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Update on an unresponsive server: %v, want ErrUnavailable", err)
	}
	// One TxTimeout, and pgx's own grace after a deadline, with slack
	// for a busy machine; trying every idle connection takes 7 of them.
	if limit := 3 * txTimeout; took > limit {
		t.Errorf("Update on an unresponsive server took %s, want at most %s (one transaction timeout, not one per pooled connection): %v", took.Round(time.Millisecond), limit, err)
	}
	t.Logf("Update on an unresponsive server failed after %s: %v", took.Round(time.Millisecond), err)
}
