package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// putSQL is Put's statement; checkSchema runs it too.
const putSQL = `INSERT INTO ` + recordsTable + ` (kind, key, value, expires, expires_ns, changed) VALUES ($1, $2, $3, $4, $5, clock_timestamp())
		ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires, expires_ns = EXCLUDED.expires_ns, changed = EXCLUDED.changed`

// recordColumns are the columns of recordsTable the store's statements
// use, with their types as format_type writes them.
var recordColumns = []struct{ name, typ string }{
	{"kind", "text"},
	{"key", "bytea"},
	{"value", "bytea"},
	{"expires", "timestamp with time zone"},
	{"expires_ns", "integer"},
	{"changed", "timestamp with time zone"},
}

// checkSchema makes sure the tables are what the store's statements
// need, so that a damaged schema stops the start with what is wrong
// instead of failing every write later: each column with its type, and
// Put's upsert (which needs the primary key) on a probe row, in a
// transaction rolled back. Missing indexes only slow the store down:
// they get a warning.
func checkSchema(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) error {
	rows, err := pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, recordsTable)
	if err != nil {
		return schemaFault("reading the columns of "+recordsTable, err)
	}
	have := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return schemaFault("reading the columns of "+recordsTable, err)
		}
		have[name] = typ
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return schemaFault("reading the columns of "+recordsTable, err)
	}
	if len(have) == 0 {
		return fmt.Errorf("%w: the table %s is missing while %s records schema version %d (the database was tampered with or partly restored): %s", ErrSchemaDamaged, recordsTable, versionTable, SchemaVersion, damagedFix)
	}
	var faults []string
	for _, c := range recordColumns {
		switch typ, ok := have[c.name]; {
		case !ok:
			faults = append(faults, fmt.Sprintf("column %q is missing", c.name))
		case typ != c.typ:
			faults = append(faults, fmt.Sprintf("column %q is %s, not %s", c.name, typ, c.typ))
		}
	}
	if len(faults) > 0 {
		return fmt.Errorf("%w: in %s, %s: %s", ErrSchemaDamaged, recordsTable, strings.Join(faults, ", "), damagedFix)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%w: checking the schema: %w", storage.ErrUnavailable, connectFault(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	exp, _ := expiry(time.Now().Add(time.Hour))
	if _, err := tx.Exec(ctx, putSQL, "oauthgate schema probe", []byte("probe"), []byte{}, exp, int32(0)); err != nil {
		switch code := pgCode(err); code {
		case "42P10": // no unique constraint matches ON CONFLICT
			return fmt.Errorf("%w: %s has lost its primary key (kind, key), which every write needs: %s", ErrSchemaDamaged, recordsTable, damagedFix)
		case "", "42501":
			return schemaFault("writing a probe row in "+recordsTable+" (rolled back)", err)
		default:
			return fmt.Errorf("%w: writing a probe row in %s (rolled back): %w: %s", ErrSchemaDamaged, recordsTable, err, damagedFix)
		}
	}
	for index, create := range indexes {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, index).Scan(&ok); err != nil {
			return schemaFault("looking for index "+index, err)
		}
		if !ok && log != nil {
			log.Warn("postgres storage: an index is missing: the store works, but sweeps and watches read the whole table; recreate it with psql",
				zap.String("index", index), zap.String("statement", create))
		}
	}
	return nil
}

// connectFault describes a failure to get a connection: pgx's
// ConnectError names the user, database and address, never the password.
func connectFault(err error) error {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return fmt.Errorf("PostgreSQL refused the connection: %w", err)
	}
	return fmt.Errorf("cannot connect to PostgreSQL: %w", err)
}

// grantHint is what to do about a permission the server denied while
// the store runs.
const grantHint = "permission denied (grant the DSN's user SELECT, INSERT, UPDATE and DELETE on " + recordsTable + ", or make it the tables' owner)"

// indexes are the indexes the store wants, each with the statement that
// makes it (as the migrations in schema.go do), for the warning about a
// missing one.
var indexes = map[string]string{
	recordsTable + "_expires": "CREATE INDEX " + recordsTable + "_expires ON " + recordsTable + " (expires, expires_ns) WHERE expires IS NOT NULL;",
	recordsTable + "_changed": "CREATE INDEX " + recordsTable + "_changed ON " + recordsTable + " (kind, changed);",
}
