package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/internal/pgtest"
)

// The tests run against a real PostgreSQL from Debian's postgresql
// package (internal/pgtest), on the first free port of 19350-19359
// (registered in integration/main_test.go), stopped after. If it cannot
// start, every test fails with the reason: nothing is skipped.
var (
	pg    *pgtest.Server
	pgErr error // why PostgreSQL did not start
	admin *pgxpool.Pool
)

func TestMain(m *testing.M) {
	pg, pgErr = pgtest.Start(19350, 19359)
	if pgErr != nil {
		fmt.Fprintln(os.Stderr, "postgres storage tests: PostgreSQL did not start:", pgErr)
	} else {
		admin = pg.Admin()
	}
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	os.Exit(code)
}

// newDatabase creates an empty database of the test's own and returns
// its DSN.
func newDatabase(t *testing.T) string {
	t.Helper()
	if pgErr != nil {
		t.Fatalf("PostgreSQL did not start: %v", pgErr)
	}
	dsn, err := pg.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// openStore opens a store on a new database and closes it when the test
// ends.
func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenDSN(context.Background(), newDatabase(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
