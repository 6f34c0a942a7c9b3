// Package postgres implements storage.Store on PostgreSQL (and engines
// that speak its protocol) with github.com/jackc/pgx/v5, so that several
// Caddy nodes can share one store.
//
// Schema: Open creates the tables, or upgrades them, under a PostgreSQL
// advisory lock, so that nodes starting together take turns; the
// version applied is kept in the table oauthgate_schema_version. A
// database upgraded by a newer release is refused with ErrSchemaTooNew
// rather than used with a schema this binary does not know.
//
// Transactions: every Update and Batch is one SERIALIZABLE transaction,
// whose reads and writes are real SQL in it (so it reads its own
// writes); View is a READ ONLY REPEATABLE READ transaction (one snapshot
// for the whole View). PostgreSQL aborts a serializable transaction that
// conflicts with a concurrent one (SQLSTATE 40001) or is chosen to break
// a deadlock (40P01): the store then rolls it back and runs fn again in
// a new transaction, with a short random back-off, up to maxAttempts
// times; after that the caller gets an error wrapping
// storage.ErrUnavailable (the engine answers temporarily_unavailable).
//
// Update retries too. This is the one place the store differs from
// bbolt, where Update's fn runs once: under SERIALIZABLE the only way to
// make two nodes' read-modify-write transactions safe without a global
// lock is to abort one and run it again. A run that was aborted wrote
// nothing, so the rule for fn is the one Batch already states: it may run
// more than once, and must not have effects outside the transaction
// other than setting variables that each run sets afresh. Batch is
// Update here: a database server already commits concurrent transactions
// from many connections together (group commit of its WAL).
//
// Context: a done ctx before a transaction starts (or before a retry)
// returns its error and writes nothing; waiting for a connection (and
// pgxpool's ping of one that sat idle) is bounded by Config.TxTimeout
// too, so a server that stops answering without closing its connections
// fails the call within about one TxTimeout; once BEGIN is sent, the
// transaction's statements run with ctx's values but without its
// cancellation, bounded by Config.TxTimeout, so that it commits whole or
// not at all. Panics in fn roll the transaction back and go on in the
// caller's goroutine; a panic inside pgx itself is an error wrapping
// storage.ErrUnavailable, and its connection is closed.
//
// A transaction whose connection turns out to be lost before COMMIT is
// sent (the server restarted, or a proxy dropped an idle connection) has
// written nothing: it runs again on another connection, up to the pool's
// size plus one times. One that ran out of TxTimeout is not run again:
// the next connection would wait as long. One whose COMMIT went out unanswered is not run
// again (it may have been applied): the caller gets ErrUnavailable.
//
// Errors: connection and statement failures wrap storage.ErrUnavailable
// and keep pgx's error (and so the SQLSTATE) in their chain; fn's own
// errors come back unchanged.
//
// Connections: the store keeps two pools built from Config.Pool, one for
// View and one for the rest, so a View inside an Update's fn (which the
// engine does) never waits for a connection its own Update holds; count
// twice Config.Pool's MaxConns against the server's max_connections,
// plus one connection per cluster-wide chore while a node runs it
// (TryLock, lock.go).
//
// Watch (storage.Watcher, watch.go): every Put stamps its row with the
// database's clock, and a watch reads the rows of its kinds stamped
// since its last read (looking back TxTimeout + 5s for transactions that
// were still running), every PollInterval and at once when a NOTIFY says
// another node wrote one, so a node learns another's revocations and key
// rotations within WatchDelay (750ms by default).
//
// Expiry: an expired record is invisible to Get and ForEach at once, by
// the clock of the node that reads it; Sweep deletes expired rows in
// batches of sweepBatch rows, one statement each.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

const (
	// maxAttempts bounds the runs of one Update or Batch aborted by
	// serialization failures or deadlocks.
	maxAttempts = 30
	// sweepBatch is the most rows one Sweep statement deletes.
	sweepBatch = 500
	// defaultTxTimeout bounds a transaction once it has begun.
	defaultTxTimeout = 30 * time.Second
	// defaultConnectTimeout bounds opening one connection when the DSN
	// sets no connect_timeout.
	defaultConnectTimeout = 10 * time.Second
)

// Config is how Open reaches the database.
type Config struct {
	// Pool is the pgx pool configuration: connection string, TLS, pool
	// size, and any run-time parameters (statement_timeout, search_path).
	// Build it with pgxpool.ParseConfig. Required. Without a
	// connect_timeout, connecting gives up after 10s.
	Pool *pgxpool.Config
	// TxTimeout bounds one transaction from BEGIN to COMMIT, whatever
	// the caller's context does meanwhile, and, apart, the wait for a
	// connection from the pool. Default 30s. A Watch looks back this
	// long plus 5s at every poll, for the transactions still running
	// when it polled: give every node the same TxTimeout.
	TxTimeout time.Duration
	// PollInterval is how often a Watch reads the records changed since
	// its last read. Default 250ms, so that a change reaches every node
	// within WatchDelay (750ms) even without notifications.
	PollInterval time.Duration
	// NoNotify turns LISTEN/NOTIFY off: Watch then only polls. Without
	// it, a Put of a watched kind (or of NotifyKinds) issues pg_notify,
	// delivered at COMMIT, and every Watch polls at once, so a change
	// normally reaches the other nodes in milliseconds. An engine
	// without pg_notify (CockroachDB) is detected at Open and polled.
	NoNotify bool
	// NotifyKinds are the kinds whose Puts are announced even when this
	// process does not watch them (another node does). Default
	// storage.KindRevoked, storage.KindKeys and storage.KindClients, the
	// kinds the engine watches.
	NotifyKinds []storage.Kind
	// Logger receives one line when the notification connection is lost
	// or restored and when polling starts or stops failing; never one per
	// poll. Default: none.
	Logger *zap.Logger
}

// Store is a storage.Store on a PostgreSQL database.
type Store struct {
	pool      *pgxpool.Pool // Update, Batch, Sweep
	readPool  *pgxpool.Pool // View
	txTimeout time.Duration
	closed    atomic.Bool
	closeOnce sync.Once

	watchState // Watch, LISTEN/NOTIFY: watch.go
}

var _ storage.Store = (*Store)(nil)

// OpenDSN opens the store at a connection string ("postgres://…" or
// "host=… dbname=…"), with pgx's defaults for everything else.
func OpenDSN(ctx context.Context, dsn string) (*Store, error) {
	pc, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres storage: %w", err)
	}
	return Open(ctx, Config{Pool: pc})
}

// Open connects, creates or upgrades the schema and returns the store.
// It fails with an error wrapping storage.ErrUnavailable when the
// database cannot be reached, and with ErrSchemaTooNew when a newer
// release has upgraded the schema.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Pool == nil {
		return nil, errors.New("postgres storage: Config.Pool is required")
	}
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = defaultTxTimeout
	}
	if cfg.Pool.ConnConfig.ConnectTimeout <= 0 {
		// pgx waits for a connection as long as the caller's context
		// lets it, and a request's may have no deadline: a database
		// host that drops packets would hold requests forever.
		cfg.Pool = cfg.Pool.Copy()
		cfg.Pool.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if err := checkSchema(ctx, pool, cfg.Logger); err != nil {
		pool.Close()
		return nil, err
	}
	// Views get connections of their own: the engine runs a View inside
	// an Update's fn, and with one pool, as many such Updates as there
	// are connections would each hold one and wait for another forever.
	readPool, err := pgxpool.NewWithConfig(ctx, cfg.Pool.Copy())
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	s := &Store{pool: pool, readPool: readPool, txTimeout: cfg.TxTimeout}
	s.initWatch(ctx, cfg)
	return s, nil
}

// Close stops the watches, then closes the pools. A second call does
// nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stopWatches()
		s.pool.Close()
		s.readPool.Close()
	})
	return nil
}

var errClosed = fmt.Errorf("%w: the PostgreSQL store is closed", storage.ErrUnavailable)

// View runs fn in a read-only snapshot.
func (s *Store) View(ctx context.Context, fn func(storage.Tx) error) error {
	return s.run(ctx, s.readPool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

// Update runs fn in a serializable transaction; see the package doc for
// when fn runs more than once.
func (s *Store) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return s.run(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, true, fn)
}

// Batch is Update: fn may run more than once.
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Update(ctx, fn)
}

// retryable reports whether err is a serialization failure or a deadlock
// after which the transaction may run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func (s *Store) run(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, write bool, fn func(storage.Tx) error) error {
	var last error
	lost := 0
	for attempt := range maxAttempts {
		if attempt > 0 && lost == 0 {
			// Random back-off, growing to 50ms, so that the transactions
			// that collided do not collide again.
			d := time.Duration(rand.Int64N(int64(min(time.Millisecond<<attempt, 50*time.Millisecond)) + 1))
			select {
			case <-ctx.Done():
				return fmt.Errorf("postgres storage: retrying after %v: %w", last, ctx.Err())
			case <-time.After(d):
			}
		}
		connLost, err := s.once(ctx, pool, opts, write, fn)
		if connLost && lost <= int(pool.Config().MaxConns) {
			// Every idle connection of the pool may be as dead as this
			// one (the server restarted): try them all, then a new one.
			lost++
			last = err
			continue
		}
		lost = 0
		if err == nil || !retryable(err) {
			return err
		}
		last = err
	}
	return fmt.Errorf("%w: transaction aborted by concurrent ones %d times in a row: %w", storage.ErrUnavailable, maxAttempts, last)
}

// once runs fn in one transaction. connLost reports that it failed
// because the connection was lost before COMMIT was sent, so that
// nothing was written and fn may run again on another connection.
func (s *Store) once(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, write bool, fn func(storage.Tx) error) (connLost bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("postgres storage: %w", err)
	}
	if s.closed.Load() {
		return false, errClosed
	}
	// Waiting for a connection is before the transaction starts: ctx
	// may end it. So does txTimeout: pgxpool pings a connection that sat
	// idle before handing it out, and a server that stopped answering
	// without closing the connection (a hung host, a partition) would
	// hold that ping, and the request, for as long as ctx lets it.
	acqCtx, acqCancel := context.WithTimeout(ctx, s.txTimeout)
	var conn *pgxpool.Conn
	err = guard("connecting to PostgreSQL", func() (err error) {
		conn, err = pool.Acquire(acqCtx)
		return err
	})
	acqCancel()
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("postgres storage: waiting for a connection: %w", ctx.Err())
		}
		if errors.Is(acqCtx.Err(), context.DeadlineExceeded) {
			return false, fmt.Errorf("%w: connecting to PostgreSQL (no usable connection within %s): %w", storage.ErrUnavailable, s.txTimeout, err)
		}
		// Refused, reset, a bad password: the wait is not the cause.
		return false, fmt.Errorf("%w: %w", storage.ErrUnavailable, connectFault(err))
	}
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.txTimeout)
	defer cancel()
	// lost reports a connection lost for a reason other than txTimeout:
	// a reset says only that this connection is dead, so another may
	// work; a server that did not answer within txTimeout would make the
	// next connection wait as long again.
	lost := func() bool { return conn.Conn().IsClosed() && txCtx.Err() == nil }
	broken := false // a panic in pgx left the connection in an unknown state
	defer func() {
		if broken {
			// Closed, not released: the pool drops a closed connection.
			_ = guard("closing a connection", func() error { return conn.Conn().Close(context.WithoutCancel(txCtx)) })
		}
		conn.Release()
	}()
	var tx pgx.Tx
	if err := guard("beginning a transaction", func() (err error) { tx, err = conn.BeginTx(txCtx, opts); return err }); err != nil {
		broken = errors.Is(err, errDriverPanic)
		return !broken && lost(), fmt.Errorf("%w: beginning a transaction: %w", storage.ErrUnavailable, err)
	}
	committed := false
	t := &pgTx{ctx: txCtx, tx: tx, write: write}
	if write && s.notify {
		t.notify = s.notifies
	}
	defer func() {
		broken = broken || t.broken
		if !committed && !broken {
			// Also on a panic in fn, which goes on after the rollback.
			// A rollback that fails leaves a broken connection: close it
			// so the pool does not hand it out again.
			if rerr := guard("rolling back", func() error { return tx.Rollback(context.WithoutCancel(txCtx)) }); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
				broken = true
			}
		}
	}()
	if err := fn(t); err != nil {
		// A statement the database aborted for a conflict: run again,
		// whatever fn made of it, as long as fn kept the cause. A
		// statement that lost the connection: run again, whatever fn
		// made of it.
		return t.failed != nil && !t.broken && lost(), err
	}
	if t.failed != nil {
		// fn went on after a statement failed (PostgreSQL then refuses
		// every statement until the end of the transaction).
		return !t.broken && lost(), t.failed
	}
	if err := guard("committing", func() error { return tx.Commit(txCtx) }); err != nil {
		// Not run again when the connection was lost: COMMIT was sent,
		// and it may have been applied.
		committed = true // Commit ends the transaction either way.
		broken = errors.Is(err, errDriverPanic)
		return false, fmt.Errorf("%w: committing: %w", storage.ErrUnavailable, err)
	}
	committed = true
	return false, nil
}

// pgTx is a storage.Tx on one pgx transaction.
type pgTx struct {
	ctx    context.Context
	tx     pgx.Tx
	write  bool
	failed error // the first statement that failed
	broken bool  // pgx panicked: the connection is not to be reused
	// notify reports whether a Put of kind is to be announced with
	// pg_notify; nil when the store does not notify.
	notify func(storage.Kind) bool
}

var _ storage.Tx = (*pgTx)(nil)

var errReadOnly = errors.New("postgres storage: write inside View: use Update")

// fail records and wraps a database error.
func (t *pgTx) fail(what string, err error) error {
	if errors.Is(err, errDriverPanic) {
		t.broken = true
	} else if pgCode(err) == "42501" {
		// Still ErrUnavailable (the request may work once the grant is
		// back), but the log says what to fix.
		err = fmt.Errorf("%w: %s: %s: %w", storage.ErrUnavailable, what, grantHint, err)
	} else {
		err = fmt.Errorf("%w: %s: %w", storage.ErrUnavailable, what, err)
	}
	if t.failed == nil {
		t.failed = err
	}
	return err
}

// expiry splits an expiry into the columns: the instant rounded down to
// the microsecond and the nanoseconds below it; nil when it never
// expires. Instants beyond what timestamptz holds are moved to its ends,
// where they keep their meaning (far future: live; far past: expired).
func expiry(t time.Time) (any, int32) {
	if t.IsZero() {
		return nil, 0
	}
	if t.Year() > 200000 {
		t = time.Date(200000, 1, 1, 0, 0, 0, 0, time.UTC)
	} else if t.Year() < -4000 {
		t = time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	us := t.Truncate(time.Microsecond)
	return us, int32(t.Sub(us))
}

// live is the SQL condition of an unexpired row at ($n, $n+1).
func live(n int) string {
	return fmt.Sprintf("(expires IS NULL OR (expires, expires_ns) > ($%d, $%d))", n, n+1)
}

func nowArgs() (time.Time, int32) {
	now := time.Now()
	us := now.Truncate(time.Microsecond)
	return us, int32(now.Sub(us))
}

func (t *pgTx) Get(kind storage.Kind, key string) (storage.Record, error) {
	nowUS, nowNS := nowArgs()
	var (
		rec storage.Record
		exp *time.Time
		ns  int32
	)
	err := guard("reading a record", func() error {
		return t.tx.QueryRow(t.ctx, `SELECT value, expires, expires_ns FROM `+recordsTable+
			` WHERE kind = $1 AND key = $2 AND `+live(3), string(kind), []byte(key), nowUS, nowNS).Scan(&rec.Value, &exp, &ns)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Record{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Record{}, t.fail("reading a record", err)
	}
	if exp != nil {
		rec.Expires = exp.Add(time.Duration(ns))
	}
	if rec.Value == nil {
		rec.Value = []byte{}
	}
	return rec, nil
}

func (t *pgTx) Put(kind storage.Kind, key string, rec storage.Record) error {
	if !t.write {
		return errReadOnly
	}
	if key == "" {
		return errors.New("postgres storage: empty key")
	}
	exp, ns := expiry(rec.Expires)
	value := rec.Value
	if value == nil {
		value = []byte{}
	}
	err := guard("writing a record", func() error {
		_, err := t.tx.Exec(t.ctx, putSQL, string(kind), []byte(key), value, exp, ns)
		return err
	})
	if err != nil {
		return t.fail("writing a record", err)
	}
	if t.notify != nil && t.notify(kind) {
		// Delivered at COMMIT, and not at all on a rollback; PostgreSQL
		// sends one notification for the many alike of one transaction.
		if err := guard("notifying a change", func() error {
			_, err := t.tx.Exec(t.ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(kind))
			return err
		}); err != nil {
			return t.fail("notifying a change", err)
		}
	}
	return nil
}

func (t *pgTx) Delete(kind storage.Kind, key string) error {
	if !t.write {
		return errReadOnly
	}
	if err := guard("deleting a record", func() error {
		_, err := t.tx.Exec(t.ctx, `DELETE FROM `+recordsTable+` WHERE kind = $1 AND key = $2`, string(kind), []byte(key))
		return err
	}); err != nil {
		return t.fail("deleting a record", err)
	}
	return nil
}

func (t *pgTx) ForEach(kind storage.Kind, fn func(key string, rec storage.Record) error) error {
	nowUS, nowNS := nowArgs()
	var rows pgx.Rows
	err := guard("listing records", func() (err error) {
		rows, err = t.tx.Query(t.ctx, `SELECT key, value, expires, expires_ns FROM `+recordsTable+
			` WHERE kind = $1 AND `+live(2)+` ORDER BY key`, string(kind), nowUS, nowNS)
		return err
	})
	if err != nil {
		return t.fail("listing records", err)
	}
	defer func() { _ = guard("listing records", func() error { rows.Close(); return nil }) }()
	for {
		// Each call into pgx is guarded on its own: fn, the caller's,
		// is not, so that its panics go on.
		var (
			more bool
			key  []byte
			rec  storage.Record
			exp  *time.Time
			ns   int32
		)
		err := guard("listing records", func() error {
			if more = rows.Next(); more {
				return rows.Scan(&key, &rec.Value, &exp, &ns)
			}
			return rows.Err()
		})
		if err != nil {
			return t.fail("listing records", err)
		}
		if !more {
			return nil
		}
		if exp != nil {
			rec.Expires = exp.Add(time.Duration(ns))
		}
		if rec.Value == nil {
			rec.Value = []byte{}
		}
		if err := fn(string(key), rec); err != nil {
			return err
		}
	}
}

// sweepSQL deletes up to $3 rows expired at ($1, $2). The inner SELECT
// finds them through the partial index oauthgate_records_expires and
// locks them; the DELETE then reaches each by its ctid (a TID scan).
// Matching them by primary key instead (WHERE (kind, key) IN …) let
// the planner hash-join the whole table, a sequential scan per batch
// (TestSweepUsesExpiryIndex). The row locked by FOR UPDATE cannot move
// before the DELETE of the same statement; the expiry is checked again
// all the same.
const sweepSQL = `DELETE FROM ` + recordsTable + ` WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM ` + recordsTable + ` WHERE expires IS NOT NULL AND (expires, expires_ns) <= ($1, $2)
	LIMIT $3 FOR UPDATE SKIP LOCKED)) AND expires IS NOT NULL AND (expires, expires_ns) <= ($1, $2)`

// Sweep deletes up to limit records expired at now, sweepBatch rows per
// statement (each its own transaction), and stops early when ctx is done.
func (s *Store) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	if s.closed.Load() {
		return 0, errClosed
	}
	exp, ns := expiry(now)
	deleted := 0
	for deleted < limit {
		if err := ctx.Err(); err != nil {
			return deleted, fmt.Errorf("postgres storage: sweeping: %w", err)
		}
		n := min(sweepBatch, limit-deleted)
		stmtCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.txTimeout)
		// SKIP LOCKED: rows a transaction is rewriting are left for the
		// next sweep instead of holding this one (and its other rows) up.
		var tag pgconn.CommandTag
		err := guard("sweeping expired records", func() (err error) {
			tag, err = s.pool.Exec(stmtCtx, sweepSQL, exp, ns, n)
			return err
		})
		cancel()
		if err != nil {
			if pgCode(err) == "42501" {
				return deleted, fmt.Errorf("%w: sweeping expired records: %s: %w", storage.ErrUnavailable, grantHint, err)
			}
			return deleted, fmt.Errorf("%w: sweeping expired records: %w", storage.ErrUnavailable, err)
		}
		deleted += int(tag.RowsAffected())
		if int(tag.RowsAffected()) < n {
			break
		}
	}
	return deleted, nil
}
