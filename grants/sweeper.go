package grants

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// DefaultSweepInterval is how often expired records are deleted when the
// configuration does not say.
const DefaultSweepInterval = time.Minute

// sweepLimit bounds the records one sweep deletes; the store deletes them
// in small transactions, so writers wait for at most one of those.
const sweepLimit = 100_000

// Sweeper deletes expired records (codes, refresh tokens, families,
// sessions, revocations, retired keys) from one store in the background,
// and forgets expired revocations in memory, so that the file reaches a
// steady size under constant churn. Run one per store in each process;
// on a store shared by several nodes, one of them sweeps at a time.
type Sweeper struct {
	store    storage.Store
	rev      *tokens.Revocations
	logger   *zap.Logger
	interval atomic.Int64 // nanoseconds
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// StartSweeper starts sweeping st every interval (DefaultSweepInterval
// when interval is not positive).
func StartSweeper(st storage.Store, rev *tokens.Revocations, interval time.Duration, logger *zap.Logger) *Sweeper {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Sweeper{store: st, rev: rev, logger: logger,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.SetInterval(interval)
	go s.run()
	return s
}

// SetInterval changes the interval from the next sweep on.
func (s *Sweeper) SetInterval(d time.Duration) {
	if d <= 0 {
		d = DefaultSweepInterval
	}
	if s.interval.Swap(int64(d)) != int64(d) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Stop ends the background task and waits for a sweep in progress.
func (s *Sweeper) Stop() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Sweeper) run() {
	defer close(s.done)
	t := time.NewTimer(time.Duration(s.interval.Load()))
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-t.C:
			n, err := s.Sweep(ctx, time.Now())
			if err != nil && ctx.Err() == nil {
				s.logger.Warn("deleting expired oauth records failed; will retry", zap.Error(err))
			} else if n > 0 {
				s.logger.Debug("deleted expired oauth records", zap.Int("count", n))
			}
		}
		t.Reset(time.Duration(s.interval.Load()))
	}
}

// Sweep deletes the records expired at now and forgets the in-memory
// revocations of tokens that can no longer verify. On a store shared by
// several nodes (storage.Locker) one node sweeps at a time: when another
// holds the sweep lock, this one deletes nothing this round (Prune, of
// this process's memory, still runs).
func (s *Sweeper) Sweep(ctx context.Context, now time.Time) (int, error) {
	s.rev.Prune(now)
	release, ok, err := tryClusterLock(ctx, s.store, lockSweep)
	if err != nil {
		return 0, err
	}
	if !ok {
		s.logger.Debug("another node is deleting expired oauth records; skipping this sweep")
		return 0, nil
	}
	defer release()
	return s.store.Sweep(ctx, now, sweepLimit)
}
