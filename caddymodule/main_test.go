package caddymodule

import (
	"os"
	"sync"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/internal/pgtest"
)

// postgresServer starts, on first use, the real PostgreSQL of the tests
// that need one (internal/pgtest, ports 19360-19364, registered in
// integration/main_test.go); TestMain stops it.
var postgresServer = sync.OnceValues(func() (*pgtest.Server, error) { return pgtest.Start(19360, 19364) })

var postgresUsed bool

// postgresDSN returns the DSN of a new database of the test's own.
func postgresDSN(t *testing.T) string {
	t.Helper()
	postgresUsed = true
	srv, err := postgresServer()
	if err != nil {
		t.Fatalf("PostgreSQL did not start: %v", err)
	}
	dsn, err := srv.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func TestMain(m *testing.M) {
	code := m.Run()
	if postgresUsed {
		if srv, err := postgresServer(); err == nil {
			srv.Stop()
		}
	}
	os.Exit(code)
}
