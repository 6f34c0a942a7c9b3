package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// How a Watch finds what other nodes wrote.
//
// Every Put sets the row's changed column to the database's
// clock_timestamp(), and a Watch reads the rows of its kinds whose
// changed is later than its last read. One clock, the database's, orders
// the writes and the reads: the nodes' own clocks play no part. But a
// row becomes visible at its transaction's COMMIT, which can come up to
// TxTimeout after the Put stamped it: a read must not only ask for rows
// stamped after the previous read, or a transaction that was running
// then would be missed for good. So each read looks back watchMargin
// (TxTimeout + 5s) before the previous one began, and the rows it has
// already reported (the same key with the same changed) are left out.
//
// Polling alone keeps the bound (PollInterval, 250ms by default). To make
// the delay milliseconds, a Put of a watched kind also issues pg_notify
// (delivered when the transaction commits), and one connection of the
// store's own, outside the pools, LISTENs: a notification makes every
// Watch read at once. When that connection is lost, polling carries on
// and the connection is made again with a growing back-off; an engine
// without LISTEN/NOTIFY (CockroachDB) is only polled.

// notifyChannel is the channel of the notifications; the payload is the
// kind written.
const notifyChannel = "oauthgate_records"

const (
	// defaultPollInterval is PollInterval's default.
	defaultPollInterval = 250 * time.Millisecond
	// pollSlack is WatchDelay beyond PollInterval: the read itself.
	pollSlack = 500 * time.Millisecond
	// marginSlack is the look-back beyond TxTimeout, for a COMMIT sent
	// just before TxTimeout and applied a little later.
	marginSlack = 5 * time.Second
	// listenRetryMax bounds the back-off of the LISTEN connection.
	listenRetryMax = 30 * time.Second
)

// watchState is the Store's part for Watch.
type watchState struct {
	interval   time.Duration
	margin     time.Duration
	notify     bool // Puts of notifyKinds issue pg_notify
	connConfig *pgx.ConnConfig
	log        *zap.Logger
	mu         sync.Mutex
	// notifyKinds is read by every Put: replaced whole (under mu), never
	// changed in place.
	notifyKinds atomic.Pointer[map[storage.Kind]bool]
	watches     map[*watch]struct{}
	listening   bool
	stopListen  context.CancelFunc
	listenDone  chan struct{}
}

var _ storage.Watcher = (*Store)(nil)

// initWatch applies cfg and finds out whether the server has pg_notify.
func (s *Store) initWatch(ctx context.Context, cfg Config) {
	s.interval = cfg.PollInterval
	if s.interval <= 0 {
		s.interval = defaultPollInterval
	}
	s.margin = s.txTimeout + marginSlack
	s.log = cfg.Logger
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.connConfig = cfg.Pool.ConnConfig.Copy()
	kinds := cfg.NotifyKinds
	if kinds == nil {
		kinds = []storage.Kind{storage.KindRevoked, storage.KindKeys, storage.KindClients}
	}
	nk := map[storage.Kind]bool{}
	for _, k := range kinds {
		nk[k] = true
	}
	s.notifyKinds.Store(&nk)
	s.watches = map[*watch]struct{}{}
	if cfg.NoNotify {
		return
	}
	// A notification in a transaction rolled back is never sent.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
		return err
	})
	if err != nil {
		s.log.Info("the database has no LISTEN/NOTIFY: changes reach the other nodes by polling alone",
			zap.Duration("poll_interval", s.interval), zap.Error(err))
		return
	}
	s.notify = true
}

// notifies reports whether a Put of kind issues pg_notify.
func (s *Store) notifies(kind storage.Kind) bool {
	return (*s.notifyKinds.Load())[kind]
}

// WatchDelay is PollInterval plus the time of one read.
func (s *Store) WatchDelay() time.Duration { return s.interval + pollSlack }

// Watch implements storage.Watcher; see the comment at the top of this
// file for how.
func (s *Store) Watch(ctx context.Context, kinds []storage.Kind, fn func([]storage.Change)) (func(), error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if len(kinds) == 0 {
		return nil, errors.New("postgres storage: Watch needs at least one kind")
	}
	// Where the first read starts: anything committed after Watch
	// returns was stamped after this, less TxTimeout.
	var at time.Time
	if err := s.readPool.QueryRow(ctx, `SELECT statement_timestamp()`).Scan(&at); err != nil {
		return nil, fmt.Errorf("%w: starting to watch for changes: %w", storage.ErrUnavailable, err)
	}
	w := &watch{s: s, fn: fn, since: at.Add(-s.margin), seen: map[seenKey]seenRow{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	for _, k := range kinds {
		w.kinds = append(w.kinds, string(k))
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		w.cancel()
		return nil, errClosed
	}
	nk := maps.Clone(*s.notifyKinds.Load())
	for _, k := range kinds {
		nk[k] = true
	}
	s.notifyKinds.Store(&nk)
	s.watches[w] = struct{}{}
	if s.notify && !s.listening {
		s.listening = true
		lctx, cancel := context.WithCancel(context.Background())
		s.stopListen, s.listenDone = cancel, make(chan struct{})
		go s.listen(lctx, s.listenDone)
	}
	s.mu.Unlock()
	go w.run()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.watches, w)
			s.mu.Unlock()
			w.cancel()
			<-w.done
		})
	}, nil
}

// stopWatches ends every watch and the LISTEN connection, on Close.
func (s *Store) stopWatches() {
	s.mu.Lock()
	ws := make([]*watch, 0, len(s.watches))
	for w := range s.watches {
		ws = append(ws, w)
	}
	clear(s.watches)
	stop, done := s.stopListen, s.listenDone
	s.mu.Unlock()
	for _, w := range ws {
		w.cancel()
		<-w.done
	}
	if stop != nil {
		stop()
		<-done
	}
}

// wakeAll makes every watch read now (a notification came, or the
// LISTEN connection was made again and may have missed some).
func (s *Store) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watches {
		select {
		case w.wake <- struct{}{}:
		default: // a read is already due
		}
	}
}

// listen holds the LISTEN connection until ctx ends, making it again
// with a growing back-off when it is lost.
func (s *Store) listen(ctx context.Context, done chan struct{}) {
	defer close(done)
	backoff := time.Second
	down := false
	for {
		err := s.listenOnce(ctx, func() {
			backoff = time.Second
			if down {
				down = false
				s.log.Info("the database's change notifications are back")
			}
			s.wakeAll()
		})
		if ctx.Err() != nil {
			return
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "0A000" || pe.Code == "42883" || pe.Code == "42601") {
			// Not supported (feature_not_supported, undefined_function,
			// syntax_error): the engine has NOTIFY without LISTEN.
			s.log.Info("the database does not support LISTEN: changes reach the other nodes by polling alone",
				zap.Duration("poll_interval", s.interval), zap.Error(err))
			return
		}
		if !down {
			down = true
			s.log.Warn("lost the database's change notifications; polling every poll_interval until they are back",
				zap.Duration("poll_interval", s.interval), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenRetryMax)
	}
}

// listenOnce connects, LISTENs, calls up once listening, and wakes the
// watches at each notification until the connection fails or ctx ends.
func (s *Store) listenOnce(ctx context.Context, up func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.connConfig.Copy())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return err
	}
	up()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.wakeAll()
	}
}

// watch is one Watch: its goroutine reads at each tick and wake-up.
type watch struct {
	s     *Store
	kinds []string
	fn    func([]storage.Change)
	since time.Time // the database's clock: read rows changed after it
	// seen holds the rows reported whose changed is after since, which
	// the next reads will return again.
	seen   map[seenKey]seenRow
	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc // ends the watch
	done   chan struct{}
	// failing is set while reads fail, so that the failure is logged
	// once.
	failing bool
}

type seenKey struct{ kind, key string }

// seenRow is what was reported of a row: when it was written and a hash
// of its value (two writes in one microsecond differ by value).
type seenRow struct {
	changed time.Time
	value   uint64
}

// valueSeed keys the hashes of reported values.
var valueSeed = maphash.MakeSeed()

func (w *watch) run() {
	defer close(w.done)
	t := time.NewTicker(w.s.interval)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
		}
		w.poll()
	}
}

// poll reads the rows changed since w.since and reports those not
// reported yet.
func (w *watch) poll() {
	s := w.s
	// w.ctx ends at stop: a read of a database that does not answer is
	// given up then.
	ctx, cancel := context.WithTimeout(w.ctx, s.txTimeout)
	defer cancel()
	changes, at, err := w.read(ctx)
	if err != nil {
		if !w.failing && w.ctx.Err() == nil {
			w.failing = true
			s.log.Warn("reading the changes other nodes made failed; retrying every poll_interval",
				zap.Duration("poll_interval", s.interval), zap.Error(err))
		}
		return
	}
	if w.failing {
		w.failing = false
		s.log.Info("reading the changes other nodes made works again")
	}
	if next := at.Add(-s.margin); next.After(w.since) {
		w.since = next
		for k, row := range w.seen {
			if !row.changed.After(w.since) {
				delete(w.seen, k)
			}
		}
	}
	if len(changes) > 0 {
		w.fn(changes)
	}
}

// read returns the unexpired rows of w's kinds changed after w.since that
// it has not reported, oldest change first, and the time the read began
// (before its snapshot was taken: every row committed after the snapshot
// was stamped after it, less TxTimeout).
func (w *watch) read(ctx context.Context) ([]storage.Change, time.Time, error) {
	nowUS, nowNS := nowArgs()
	rows, err := w.s.readPool.Query(ctx, `WITH t AS (SELECT statement_timestamp() AS at)
		SELECT t.at, r.kind, r.key, r.value, r.expires, r.expires_ns, r.changed FROM t LEFT JOIN `+recordsTable+` r
		ON r.kind = ANY($1) AND r.changed > $2 AND (r.expires IS NULL OR (r.expires, r.expires_ns) > ($3, $4))
		ORDER BY r.changed, r.kind, r.key`, w.kinds, w.since, nowUS, nowNS)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer rows.Close()
	var (
		at    time.Time
		out   []storage.Change
		found []seenRow
	)
	for rows.Next() {
		var (
			kind    *string
			key     []byte
			value   []byte
			exp     *time.Time
			ns      *int32
			changed *time.Time
		)
		if err := rows.Scan(&at, &kind, &key, &value, &exp, &ns, &changed); err != nil {
			return nil, time.Time{}, err
		}
		if kind == nil {
			continue // no row changed: the LEFT JOIN's one row with t.at
		}
		row := seenRow{*changed, maphash.Bytes(valueSeed, value)}
		if prev, ok := w.seen[seenKey{*kind, string(key)}]; ok && prev.changed.Equal(row.changed) && prev.value == row.value {
			continue
		}
		ch := storage.Change{Kind: storage.Kind(*kind), Key: string(key), Record: storage.Record{Value: value}}
		if ch.Record.Value == nil {
			ch.Record.Value = []byte{}
		}
		if exp != nil {
			ch.Record.Expires = exp.Add(time.Duration(*ns))
		}
		out = append(out, ch)
		found = append(found, row)
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, err
	}
	// Only a read that completed counts as reported.
	for i, ch := range out {
		w.seen[seenKey{string(ch.Kind), ch.Key}] = found[i]
	}
	return slices.Clip(out), at, nil
}
