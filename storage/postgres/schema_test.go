package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// TestMigrateConcurrently: nodes starting together on an empty database
// take turns at the schema: every Open succeeds and the schema is created
// once, at the current version.
func TestMigrateConcurrently(t *testing.T) {
	dsn := newDatabase(t)
	const nodes = 8
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	start := make(chan struct{})
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, err := OpenDSN(context.Background(), dsn)
			if err == nil {
				_ = s.Close()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: Open: %v", i, err)
		}
	}
	conn := connect(t, dsn)
	rows, err := conn.Query(context.Background(), "SELECT version FROM "+versionTable)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || versions[0] != SchemaVersion {
		t.Errorf("%s holds %v, want one row [%d]", versionTable, versions, SchemaVersion)
	}
}

// TestSchemaTooNew: a database a newer release upgraded is refused with
// an error that says so, not used.
func TestSchemaTooNew(t *testing.T) {
	dsn := newDatabase(t)
	s, err := OpenDSN(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "UPDATE "+versionTable+" SET version = $1", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s, err = OpenDSN(context.Background(), dsn)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open succeeded on a database with a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Open: %v; want ErrSchemaTooNew and not ErrUnavailable (retrying will not help)", err)
	}
	for _, want := range []string{"newer", fmt.Sprint("version ", SchemaVersion+1), fmt.Sprint("up to ", SchemaVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open: %q does not say %q", err, want)
		}
	}
}

// TestSchemaUpgrade: a database at an older version (here: a version
// table and nothing else, as a crash between the two would leave) is
// brought up to date.
func TestSchemaUpgrade(t *testing.T) {
	dsn := newDatabase(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "CREATE TABLE "+versionTable+" (version integer NOT NULL); INSERT INTO "+versionTable+" VALUES (0)"); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDSN(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put(storage.KindKeys, "k", storage.Record{Value: []byte("v")})
	}); err != nil {
		t.Errorf("Update after the upgrade: %v", err)
	}
	var v int
	if err := conn.QueryRow(context.Background(), "SELECT version FROM "+versionTable).Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("version = %d, %v; want %d", v, err, SchemaVersion)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
