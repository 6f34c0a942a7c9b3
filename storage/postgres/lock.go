package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

var _ storage.Locker = (*Store)(nil)

// lockReleaseTimeout bounds the unlock and close of a lock's connection.
const lockReleaseTimeout = 5 * time.Second

// lockKey is the key of the advisory lock called name: FNV-1a 64 of a
// prefix and the name, so that it does not meet the locks of other
// software using advisory locks on the same database.
func lockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("caddy-oauthgate lock " + name))
	return int64(h.Sum64())
}

// TryLock takes a session-level advisory lock (pg_try_advisory_lock) on
// a connection of its own, opened for the lock with the pools'
// connection settings and closed on release: the lock goes with the
// connection, so a node that dies or loses the database never keeps it,
// and no pool connection is taken from requests or kept back from the
// pool. Each node holds at most one such connection per chore while the
// chore runs: count them against max_connections with the pools.
//
// Session locks need a session: behind a connection pooler in
// transaction mode (PgBouncer's pool_mode=transaction) they do not
// exclude anything; connect the store directly or in session mode.
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	if s.closed.Load() {
		return nil, false, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("postgres storage: taking lock %q: %w", name, err)
	}
	key := lockKey(name)
	var conn *pgx.Conn
	err = guard("connecting for lock "+name, func() (err error) {
		conn, err = pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("%w: taking lock %q: connecting to PostgreSQL: %w", storage.ErrUnavailable, name, err)
	}
	closeConn := func() {
		cctx, cancel := context.WithTimeout(context.Background(), lockReleaseTimeout)
		defer cancel()
		_ = guard("closing the lock connection", func() error { return conn.Close(cctx) })
	}
	err = guard("taking lock "+name, func() error {
		return conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok)
	})
	if err != nil || !ok {
		closeConn()
		if err != nil {
			return nil, false, fmt.Errorf("%w: taking lock %q: %w", storage.ErrUnavailable, name, err)
		}
		return nil, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Unlocking first frees the lock at once for the next node;
			// closing alone frees it too, once the server has seen the
			// connection end.
			uctx, cancel := context.WithTimeout(context.Background(), lockReleaseTimeout)
			_ = guard("releasing lock "+name, func() error {
				_, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key)
				return err
			})
			cancel()
			closeConn()
		})
	}, true, nil
}
