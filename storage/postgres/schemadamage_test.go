package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// damaged opens a store on a new database, runs sql on it as the
// superuser, and returns the error of opening it again.
func damaged(t *testing.T, sql string) (dsn string, err error) {
	t.Helper()
	dsn = newDatabase(t)
	s, err := OpenDSN(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := connect(t, dsn).Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	s, err = OpenDSN(context.Background(), dsn)
	if err == nil {
		_ = s.Close()
	}
	return dsn, err
}

// wantDamaged checks that err refuses the start for good (not
// ErrUnavailable: retrying does not help), names the cause, and says
// what to do.
func wantDamaged(t *testing.T, what string, err error, cause string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: Open succeeded", what)
	}
	if !errors.Is(err, ErrSchemaDamaged) || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("%s: %v; want ErrSchemaDamaged, not ErrUnavailable", what, err)
	}
	for _, want := range []string{cause, "pg_dump", "DROP TABLE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", what, err, want)
		}
	}
	if strings.Contains(err.Error(), "own the database") {
		t.Errorf("%s: %q gives the ownership hint for what is no permission error", what, err)
	}
}

// TestOpenRefusesDamagedSchema: a table that lost what the store's
// statements need stops the start, naming what is wrong, instead of
// failing every write afterwards.
func TestOpenRefusesDamagedSchema(t *testing.T) {
	for _, tc := range []struct{ sql, cause string }{
		{"ALTER TABLE " + recordsTable + " DROP CONSTRAINT " + recordsTable + "_pkey", "primary key (kind, key)"},
		{"ALTER TABLE " + recordsTable + " DROP COLUMN changed", `column "changed" is missing`},
		{"ALTER TABLE " + recordsTable + " ALTER COLUMN value TYPE text", `column "value" is text, not bytea`},
		{"ALTER TABLE " + recordsTable + " ALTER COLUMN expires TYPE timestamp", `column "expires" is timestamp without time zone`},
		{"DROP TABLE " + recordsTable, "the table " + recordsTable + " is missing"},
	} {
		_, err := damaged(t, tc.sql)
		wantDamaged(t, tc.sql, err, tc.cause)
	}
}

// TestMissingIndexOnlyWarns: the indexes serve speed, not correctness.
func TestMissingIndexOnlyWarns(t *testing.T) {
	dsn, err := damaged(t, "DROP INDEX "+recordsTable+"_changed")
	if err != nil {
		t.Fatalf("Open without an index: %v", err)
	}
	pc, err := ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	s, err := Open(context.Background(), Config{Pool: pc, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	w := logs.FilterMessageSnippet("index is missing").All()
	logs.TakeAll()
	if len(w) != 1 || w[0].ContextMap()["index"] != recordsTable+"_changed" {
		t.Fatalf("warnings %v; want one naming %s_changed", logs.All(), recordsTable)
	}
	// The warning gives the statement that recreates it (an operator
	// has psql, not the source).
	stmt, _ := w[0].ContextMap()["statement"].(string)
	if stmt == "" {
		t.Fatalf("no statement in the warning %v", w[0].ContextMap())
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), stmt); err != nil {
		t.Fatalf("the warning's statement %q: %v", stmt, err)
	}
	s, err = Open(context.Background(), Config{Pool: pc, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if w := logs.FilterMessageSnippet("index is missing").All(); len(w) != 0 {
		t.Errorf("still warned after the warning's statement ran: %v", w)
	}
}

// TestSchemaVersionRows: more than one version row reads as the
// highest, whatever their order.
func TestSchemaVersionRows(t *testing.T) {
	for _, rows := range [][]int{{2, 99}, {99, 1}, {99, 2}} {
		sql := "DELETE FROM " + versionTable
		for _, v := range rows {
			sql += fmt.Sprintf("; INSERT INTO %s VALUES (%d)", versionTable, v)
		}
		_, err := damaged(t, sql)
		if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "version 99") {
			t.Errorf("versions %v: %v; want ErrSchemaTooNew at version 99", rows, err)
		}
	}
	// Duplicates of the current version: fine, and left as one row.
	dsn, err := damaged(t, fmt.Sprintf("INSERT INTO %s VALUES (%d)", versionTable, SchemaVersion))
	if err != nil {
		t.Errorf("two rows at the current version: %v", err)
	}
	_ = dsn
}

// TestVersionTableLost: records without a version (the version table
// emptied or dropped) are refused as a damaged database, not taken for
// an empty one.
func TestVersionTableLost(t *testing.T) {
	for _, sql := range []string{"DELETE FROM " + versionTable, "DROP TABLE " + versionTable} {
		_, err := damaged(t, sql)
		wantDamaged(t, sql, err, versionTable+" is missing or empty while "+recordsTable+" exists")
	}
}

// TestVersionSetBack: a version older than the tables (the version row
// set back) fails the step that already ran, naming it, without the
// ownership hint.
func TestVersionSetBack(t *testing.T) {
	_, err := damaged(t, "UPDATE "+versionTable+" SET version = 1")
	wantDamaged(t, "version set back", err, "from version 1 to 2")
}

// TestFailedMigrationRecordsNothing: a first migration that fails leaves
// no version row behind (it and its version are one transaction).
func TestFailedMigrationRecordsNothing(t *testing.T) {
	dsn := newDatabase(t)
	conn := connect(t, dsn)
	// A table in the way of the first step's index.
	if _, err := conn.Exec(context.Background(), "CREATE TABLE "+recordsTable+"_expires (x int)"); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDSN(context.Background(), dsn)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open succeeded")
	}
	if strings.Contains(err.Error(), "own the database") || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Open: %v; want the cause, without the ownership hint", err)
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+versionTable).Scan(&n); err != nil || n != 0 {
		t.Errorf("%s holds %d rows (%v) after the failed migration, want none", versionTable, n, err)
	}
	// Once the obstacle is gone, the schema is created.
	if _, err := conn.Exec(context.Background(), "DROP TABLE "+recordsTable+"_expires"); err != nil {
		t.Fatal(err)
	}
	s, err = OpenDSN(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open after the obstacle went: %v", err)
	}
	_ = s.Close()
}

// TestPermissionDenied: a user that lost its grants gets
// ErrUnavailable (503) with what to grant, not only "unavailable".
func TestPermissionDenied(t *testing.T) {
	dsn := newDatabase(t)
	s, err := OpenDSN(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	conn := connect(t, dsn)
	role := fmt.Sprintf("grantee_%d", time.Now().UnixNano())
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("CREATE ROLE %s LOGIN; GRANT ALL ON %s, %s TO %s", role, recordsTable, versionTable, role)); err != nil {
		t.Fatal(err)
	}
	userDSN := strings.Replace(dsn, "postgres://postgres@", "postgres://"+role+"@", 1)
	s, err = OpenDSN(context.Background(), userDSN)
	if err != nil {
		t.Fatalf("Open as a user with grants: %v", err)
	}
	defer s.Close()
	if _, err := conn.Exec(context.Background(), "REVOKE ALL ON "+recordsTable+" FROM "+role); err != nil {
		t.Fatal(err)
	}
	err = s.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put(storage.KindCodes, "k", storage.Record{Value: []byte("v")})
	})
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "grant the DSN's user") {
		t.Errorf("Update without grants: %v; want ErrUnavailable saying what to grant", err)
	}
	_, err = s.Sweep(context.Background(), time.Now(), 10)
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "grant the DSN's user") {
		t.Errorf("Sweep without grants: %v; want ErrUnavailable saying what to grant", err)
	}
}

// TestConnectionRefusedSaysSo: a refused connection is named as such,
// not as a wait for a connection that did not last.
func TestConnectionRefusedSaysSo(t *testing.T) {
	pc, err := pgxpool.ParseConfig("postgres://u:pw-secret@127.0.0.1:19349/db?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{pool: pool, readPool: pool, txTimeout: 30 * time.Second}
	defer pool.Close()
	err = s.Update(context.Background(), func(tx storage.Tx) error { return nil })
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "cannot connect to PostgreSQL") ||
		!strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "within") || strings.Contains(err.Error(), "pw-secret") {
		t.Errorf("Update with no server: %v; want ErrUnavailable saying the connection was refused", err)
	}
	_, err = OpenDSN(context.Background(), "postgres://u:pw-secret@127.0.0.1:19349/db?sslmode=disable")
	if err == nil || !strings.Contains(err.Error(), "cannot connect to PostgreSQL") || strings.Contains(err.Error(), "pw-secret") {
		t.Errorf("Open with no server: %v", err)
	}
}
