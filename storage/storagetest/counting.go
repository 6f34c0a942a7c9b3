package storagetest

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Counting wraps a store and counts the records each committed write
// transaction put or deleted, by kind: a test compares two Writes calls
// to learn what a request persisted (a refused request must persist
// nothing).
type Counting struct {
	storage.Store
	mu     sync.Mutex
	writes map[storage.Kind]int
}

// NewCounting wraps st.
func NewCounting(st storage.Store) *Counting {
	return &Counting{Store: st, writes: map[storage.Kind]int{}}
}

// Writes returns how many records of each kind committed transactions
// have put or deleted so far.
func (c *Counting) Writes() map[storage.Kind]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.writes)
}

// Update counts fn's writes when the transaction commits.
func (c *Counting) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return c.counted(ctx, c.Store.Update, fn)
}

// Batch counts fn's writes when the transaction commits.
func (c *Counting) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	return c.counted(ctx, c.Store.Batch, fn)
}

// Sweep counts nothing: deleting expired records is not a request's
// doing.
func (c *Counting) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	return c.Store.Sweep(ctx, now, limit)
}

func (c *Counting) counted(ctx context.Context, run func(context.Context, func(storage.Tx) error) error, fn func(storage.Tx) error) error {
	// fn may run more than once (a group commit retries it alone after
	// another caller's failure): only its last run committed.
	var last map[storage.Kind]int
	err := run(ctx, func(tx storage.Tx) error {
		last = map[storage.Kind]int{}
		return fn(&countingTx{Tx: tx, n: last})
	})
	if err == nil {
		c.mu.Lock()
		for k, n := range last {
			c.writes[k] += n
		}
		c.mu.Unlock()
	}
	return err
}

type countingTx struct {
	storage.Tx
	n map[storage.Kind]int
}

func (t *countingTx) Put(kind storage.Kind, key string, rec storage.Record) error {
	err := t.Tx.Put(kind, key, rec)
	if err == nil {
		t.n[kind]++
	}
	return err
}

func (t *countingTx) Delete(kind storage.Kind, key string) error {
	err := t.Tx.Delete(kind, key)
	if err == nil {
		t.n[kind]++
	}
	return err
}
