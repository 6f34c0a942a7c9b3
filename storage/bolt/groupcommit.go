package bolt

import (
	"errors"
	"fmt"
	"sync"

	bbolt "go.etcd.io/bbolt"
)

// maxGroup bounds one group commit, so that a burst of writers cannot
// build a transaction whose dirty pages take long to write.
const maxGroup = 1024

// errLead tells a waiting caller that it now commits the queue.
var errLead = errors.New("lead the next group commit")

// errCommitPanicked answers the callers of a commit that panicked.
var errCommitPanicked = errors.New("oauth storage: the commit failed unexpectedly (bbolt panicked)")

// committer is leader-based group commit. bbolt's DB.Batch closes a batch
// on a timer (MaxBatchDelay) and queues it behind the writer lock: an
// idle server adds the delay to every write, and a loaded one commits
// many small batches that each pay two fsyncs. Here a group is whatever
// arrived while the previous commit ran: one caller commits at once, and
// under load each commit carries everyone who waited for it. Each caller
// leads at most one commit, so no caller's answer waits on later ones.
type committer struct {
	db *bbolt.DB

	mu    sync.Mutex
	queue []call
	busy  bool // a leader is committing; queued calls wait for it
}

type call struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// do runs fn in a group-committed transaction and returns once that
// transaction is durable, or with fn's own error (nothing of fn is then
// written). fn may run more than once.
func (c *committer) do(fn func(*bbolt.Tx) error) error {
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
// and the others still commit.
func (c *committer) commit(group []call) {
	answered := false
	defer func() {
		if answered {
			return
		}
		// bbolt panicked outside the callers' functions (an assertion in
		// Commit): none of the group may be left waiting. The panic goes
		// on to the leader's caller.
		for _, cl := range group {
			select {
			case cl.done <- errCommitPanicked:
			default:
			}
		}
	}()
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(btx *bbolt.Tx) error {
			for i, cl := range group {
				if err := safely(cl.fn, btx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, cl := range group {
				cl.done <- err
			}
			answered = true
			return
		}
		bad := group[failed]
		bad.done <- c.db.Update(func(btx *bbolt.Tx) error { return safely(bad.fn, btx) })
		group = append(group[:failed:failed], group[failed+1:]...)
	}
	answered = true
}

// safely turns a panic in fn into its error, so that one caller's bug
// cannot take down the callers committed with it.
func safely(fn func(*bbolt.Tx) error, btx *bbolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("oauth storage: a transaction function panicked: %v", r)
		}
	}()
	return fn(btx)
}
