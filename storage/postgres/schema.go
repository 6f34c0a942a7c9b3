package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
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

// ErrSchemaDamaged is returned by Open when the database's tables are
// not what the recorded schema version says: a column or constraint
// dropped or retyped, or the version table missing or emptied while the
// records are there. Retrying does not help: restore the database from a
// backup, or drop both tables so that Open creates them empty.
var ErrSchemaDamaged = errors.New("postgres storage: the database schema is damaged")

// damagedFix is what to do about ErrSchemaDamaged.
const damagedFix = "restore the database from a pg_dump backup, or DROP TABLE " + recordsTable + ", " + versionTable + " so that the next start creates them empty (every grant and key is then lost)"

// migrate creates or upgrades the schema, holding the migration lock.
// Each step and the version it reaches are one transaction.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, connectFault(err))
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
	// Created only when missing: CREATE TABLE IF NOT EXISTS needs the
	// CREATE privilege on the schema even when the table is there, which
	// a user granted only the tables does not have.
	var haveVersion bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&haveVersion); err != nil {
		return schemaFault("looking for "+versionTable, err)
	}
	if !haveVersion {
		if _, err := conn.Exec(ctx, `CREATE TABLE `+versionTable+` (version integer NOT NULL)`); err != nil {
			return schemaFault("creating "+versionTable, err)
		}
	}
	// max, not the first row: rows in any order give one answer.
	var (
		rows    int
		version int
		records bool
	)
	if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(max(version), 0), to_regclass($1) IS NOT NULL FROM `+versionTable, recordsTable).Scan(&rows, &version, &records); err != nil {
		return schemaFault("reading the schema version", err)
	}
	if rows == 0 && records {
		return fmt.Errorf("%w: %s is missing or empty while %s exists (the database was tampered with or partly restored): %s", ErrSchemaDamaged, versionTable, recordsTable, damagedFix)
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
			if pgCode(err) == "" || pgCode(err) == "42501" {
				return schemaFault(fmt.Sprintf("upgrading the schema to version %d", v+1), err)
			}
			return fmt.Errorf("%w: upgrading the schema from version %d to %d failed: %w; the tables do not match the version %s records (tampered with or partly restored): %s", ErrSchemaDamaged, v, v+1, err, versionTable, damagedFix)
		}
		// One row, at the version reached, whatever was there.
		if _, err := tx.Exec(ctx, `DELETE FROM `+versionTable); err == nil {
			_, err = tx.Exec(ctx, `INSERT INTO `+versionTable+` (version) VALUES ($1)`, v+1)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return schemaFault(fmt.Sprintf("recording schema version %d", v+1), err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("%w: upgrading the schema to version %d: %w", storage.ErrUnavailable, v+1, err)
		}
	}
	return nil
}

// pgCode is err's SQLSTATE, or "" when the server did not answer one.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// schemaFault wraps a failure to read or change the schema: the server
// refused (a permission, with what to grant, or another statement
// error, as is) or could not be reached (ErrUnavailable).
func schemaFault(what string, err error) error {
	switch code := pgCode(err); {
	case code == "42501":
		return fmt.Errorf("postgres storage: %s: %w (the DSN's user needs to own the database or schema, or CREATE on the schema, to create and upgrade the tables)", what, err)
	case code != "":
		return fmt.Errorf("postgres storage: %s: %w", what, err)
	default:
		return fmt.Errorf("%w: %s: %w", storage.ErrUnavailable, what, err)
	}
}
