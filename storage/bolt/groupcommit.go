package bolt

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	bbolt "go.etcd.io/bbolt"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// maxGroup bounds one group commit, so that a burst of writers cannot
// build a transaction whose dirty pages take long to write.
const maxGroup = 1024

// errLead tells a waiting caller that it now commits the queue.
var errLead = errors.New("lead the next group commit")

// FnPanic is what a Batch caller panics with when its own fn panicked:
// fn ran on the goroutine leading the group commit, so the panic is
// carried back and raised again in the caller's goroutine, with the
// stack it had where it happened. Nothing of that fn is written; the
// callers committed with it are unaffected.
type FnPanic struct {
	Value any    // what fn panicked with
	Stack []byte // the leader's stack at the panic
}

func (p *FnPanic) Error() string {
	return fmt.Sprintf("%v [a storage.Batch function panicked; nothing of it was written; its stack:\n%s]", p.Value, p.Stack)
}

// Unwrap is the panic value, when it is an error.
func (p *FnPanic) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// committer is leader-based group commit. bbolt's DB.Batch closes a batch
// on a timer (MaxBatchDelay) and queues it behind the writer lock: an
// idle server adds the delay to every write, and a loaded one commits
// many small batches that each pay two fsyncs. Here a group is whatever
// arrived while the previous commit ran: one caller commits at once, and
// under load each commit carries everyone who waited for it. Each caller
// leads at most one commit, so no caller's answer waits on later ones.
type committer struct {
	store *Store

	mu    sync.Mutex
	queue []call
	busy  bool // a leader is committing; queued calls wait for it
}

type call struct {
	fn   func(storage.Tx) error
	done chan error
}

// do runs fn in a group-committed transaction and returns once that
// transaction is durable, or with fn's own error (nothing of fn is then
// written), or a *FnPanic if fn panicked. fn may run more than once.
func (c *committer) do(fn func(storage.Tx) error) error {
	me := call{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, me)
	lead := !c.busy
	c.busy = true
	c.mu.Unlock()
	if !lead {
		if err := <-me.done; err != errLead {
			return err
		}
	}
	// The leader's own call is at the head of the queue: it arrived first
	// after the previous group was taken.
	c.mu.Lock()
	n := min(len(c.queue), maxGroup)
	group := make([]call, n)
	copy(group, c.queue)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	c.mu.Unlock()

	func() {
		// Even if the commit panics, the next caller must lead: a stuck
		// busy flag would block every later write for good.
		defer c.handOff()
		c.commit(group)
	}()
	return <-me.done
}

// handOff passes the lead to the first queued caller, if any.
func (c *committer) handOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 {
		c.queue[0].done <- errLead
	} else {
		c.busy = false
	}
}

// commit runs group in one transaction and tells each call the outcome.
// A function that fails is run again alone, so that its error is its own
// and the others still commit; one that panics is not run again.
func (c *committer) commit(group []call) {
	s := c.store
	for len(group) > 0 {
		if err := s.writable(); err != nil {
			// Damage found by an earlier group or this one: answer
			// everyone with it.
			for _, cl := range group {
				cl.done <- err
			}
			return
		}
		failed := -1
		var failure error
		err := s.protect(func() error {
			return s.db.Update(func(btx *bbolt.Tx) error {
				for i, cl := range group {
					if err := safely(cl.fn, btx); err != nil {
						failed, failure = i, err
						return err
					}
				}
				return nil
			})
		})
		if s.writable() != nil {
			continue
		}
		if failed < 0 {
			if err != nil && !errors.Is(err, storage.ErrUnavailable) {
				err = fmt.Errorf("%w: committing to %s: %w", storage.ErrUnavailable, s.path, err)
			}
			for _, cl := range group {
				cl.done <- err
			}
			return
		}
		bad := group[failed]
		group = append(group[:failed:failed], group[failed+1:]...)
		var p *FnPanic
		if errors.As(failure, &p) {
			bad.done <- p
			continue
		}
		// Alone, through the same path as Update: its error is its own,
		// a commit failure an outage.
		bad.done <- s.run(context.Background(), true, guard(bad.fn))
	}
}

// safely runs fn on btx as one of a group (see guard).
func safely(fn func(storage.Tx) error, btx *bbolt.Tx) error {
	t := &tx{btx: btx, caller: true}
	err := guard(fn)(t)
	t.btx, t.caller = nil, false
	return err
}

// guard returns fn with a panic in fn's own code turned into a *FnPanic,
// so that one caller's bug cannot take down the callers committed with
// it. A panic inside bbolt goes on, to protect.
func guard(fn func(storage.Tx) error) func(storage.Tx) error {
	return func(st storage.Tx) (err error) {
		t := st.(*tx)
		defer func() {
			if r := recover(); r != nil {
				if !t.caller {
					panic(r)
				}
				err = &FnPanic{Value: r, Stack: debug.Stack()}
			}
		}()
		return fn(st)
	}
}
