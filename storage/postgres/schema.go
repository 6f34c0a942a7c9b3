package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Table names. They carry a prefix so that the store can share a database
// (or a schema, chosen with search_path in the DSN) with other software.
const (
	recordsTable = "oauthgate_records"
	versionTable = "oauthgate_schema_version"
)

// migrationLock is the key of the session advisory lock held while the
// schema is created or upgraded, so that nodes starting together do not
// run the same migration twice (concurrent CREATE TABLE IF NOT EXISTS
// can still fail on PostgreSQL's catalog). It is "oauthgat" in ASCII.
const migrationLock int64 = 0x6f61757468676174

// migrations are the schema's steps in order: the database's version is
// the number of steps applied. Append new steps; never change one that
// has shipped, since databases already ran it.
//
// Keys are bytea (they may hold any bytes, and bytea sorts bytewise, the
// order ForEach promises). An expiry is kept to the nanosecond: expires
// is the instant rounded down to the microsecond (timestamptz's
// resolution) and expires_ns the nanoseconds below it, so that the pair
// compares exactly like the time.Time it came from. NULL expires never.
var migrations = []string{
	`CREATE TABLE ` + recordsTable + ` (
		kind text COLLATE "C" NOT NULL,
		key bytea NOT NULL,
		value bytea NOT NULL,
		expires timestamptz,
		expires_ns integer NOT NULL DEFAULT 0,
		PRIMARY KEY (kind, key)
	);
	CREATE INDEX ` + recordsTable + `_expires ON ` + recordsTable + ` (expires, expires_ns) WHERE expires IS NOT NULL;`,
	// 2: changed is when the row was last written (the database's
	// clock_timestamp() at the Put), so that a Watch can find what other
	// nodes wrote. Rows from before it read as written long ago. The
	// default is a constant: adding the column does not rewrite the table.
	`ALTER TABLE ` + recordsTable + ` ADD COLUMN changed timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00';
	CREATE INDEX ` + recordsTable + `_changed ON ` + recordsTable + ` (kind, changed);`,
}

// SchemaVersion is the schema version this binary creates and expects.
var SchemaVersion = len(migrations)

// ErrSchemaTooNew is returned by Open when the database was upgraded by a
// newer release than this one.
var ErrSchemaTooNew = errors.New("postgres storage: the database schema is newer than this binary")

// migrate creates or upgrades the schema, holding the migration lock.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("%w: connecting to PostgreSQL: %w", storage.ErrUnavailable, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("%w: taking the schema migration lock: %w", storage.ErrUnavailable, err)
	}
	defer func() {
		// A session lock outlives a failed unlock only as long as the
		// connection: drop the connection then, so the lock goes with it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+versionTable+` (version integer NOT NULL)`); err != nil {
		return fmt.Errorf("%w: creating %s: %w", storage.ErrUnavailable, versionTable, err)
	}
	var version int
	err = conn.QueryRow(ctx, `SELECT version FROM `+versionTable).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := conn.Exec(ctx, `INSERT INTO `+versionTable+` (version) VALUES (0)`); err != nil {
			return fmt.Errorf("%w: initialising %s: %w", storage.ErrUnavailable, versionTable, err)
		}
	case err != nil:
		return fmt.Errorf("%w: reading the schema version: %w", storage.ErrUnavailable, err)
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: the database is at schema version %d, this binary knows versions up to %d: run the newer caddy-oauthgate release that upgraded it (a downgrade needs a restore from a backup made before the upgrade)", ErrSchemaTooNew, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("%w: upgrading the schema to version %d: %w", storage.ErrUnavailable, v+1, err)
		}
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return fmt.Errorf("postgres storage: upgrading the schema to version %d: %w (does the DSN's user own the database or schema?)", v+1, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE `+versionTable+` SET version = $1`, v+1); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return fmt.Errorf("%w: recording schema version %d: %w", storage.ErrUnavailable, v+1, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("%w: upgrading the schema to version %d: %w", storage.ErrUnavailable, v+1, err)
		}
	}
	return nil
}
