//go:build oauthgate_bench

package micro

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/internal/pgtest"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

// The durable-path benchmarks (BenchmarkRefreshRotation,
// BenchmarkCodeRedemption) run on each store a deployment can have:
//
//	bolt              a bbolt file in a temporary directory (fsync per
//	                  group commit)
//	postgres          a real PostgreSQL (internal/pgtest) with fsync,
//	                  synchronous_commit and full_page_writes on, as a
//	                  real deployment runs it; the pool as a node gets it
//	                  by default (pgx: the larger of 4 and the CPUs)
//	postgres_conns32  the same with pool_max_conns=32 (storage postgres
//	                  { max_conns 32 }), for the parallel runs only
//
// The PostgreSQL starts on the first benchmark that needs it, on the first
// free port of 19390-19394 (registered in integration/main_test.go), and
// stops when the benchmarks end. It is on the same machine and disk, over
// loopback TCP.
var (
	pgOnce sync.Once
	pgSrv  *pgtest.Server
	pgErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		pgSrv.Stop()
	}
	os.Exit(code)
}

// durableStores are the stores of the durable-path benchmarks;
// parallelOnly marks a variant only worth running in parallel.
var durableStores = []struct {
	name         string
	parallelOnly bool
}{{"bolt", false}, {"postgres", false}, {"postgres_conns32", true}}

// openDurable opens a fresh, empty store of the named kind, closed when
// the benchmark ends.
func openDurable(b *testing.B, kind string) storage.Store {
	b.Helper()
	if kind == "bolt" {
		return openStore(b)
	}
	pgOnce.Do(func() {
		pgSrv, pgErr = pgtest.Start(19390, 19394, pgtest.Durable...)
		if pgErr == nil {
			fmt.Fprintf(os.Stderr, "bench/micro: PostgreSQL on 127.0.0.1:%d, settings %s\n", pgSrv.Port, strings.Join(pgSrv.Settings(), " "))
		}
	})
	if pgErr != nil {
		b.Fatalf("PostgreSQL did not start: %v", pgErr)
	}
	dsn, err := pgSrv.NewDatabase()
	if err != nil {
		b.Fatal(err)
	}
	if kind == "postgres_conns32" {
		dsn += "&pool_max_conns=32"
	}
	st, err := postgres.OpenDSN(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// durableModes are the two ways each durable path is driven: one
// request at a time (the latency of one durable write, as ops/s), and
// 64 goroutines at once on 2 CPUs (SetParallelism(32) on GOMAXPROCS 2),
// as bench/run.sh's grantload does: bbolt's group commit and
// PostgreSQL's concurrent transactions only show under concurrency.
var durableModes = []struct {
	name        string
	parallelism int // 0: serial
}{{"serial", 0}, {"parallel64", 64}}

// runDurable runs op b.N times, serially or in parallel, each goroutine
// with its own state from newWorker, and reports unit/s. Every goroutine
// of a parallel run calls newWorker once.
func runDurable(b *testing.B, parallelism int, unit string, newWorker func() func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	if parallelism == 0 {
		op := newWorker()
		for range b.N {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(max(1, parallelism/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			op := newWorker()
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
}

// forEachDurable runs fn as a sub-benchmark per store and mode.
func forEachDurable(b *testing.B, fn func(b *testing.B, store string, parallelism int)) {
	for _, st := range durableStores {
		for _, m := range durableModes {
			if st.parallelOnly && m.parallelism == 0 {
				continue
			}
			b.Run(st.name+"/"+m.name, func(b *testing.B) { fn(b, st.name, m.parallelism) })
		}
	}
}

// webEngine is an engine with one confidential client for the code and
// refresh grants, with scope, started on st.
func webEngine(b *testing.B, st storage.Store, scope []string) *grants.Engine {
	b.Helper()
	eng, err := grants.NewEngine(grants.Config{
		Issuer:          issuer,
		AccessTokenTTL:  time.Hour,
		RefreshTokenTTL: 24 * time.Hour,
		Users:           []*grants.User{{Name: "alice", PasswordHash: "$2a$04$invalidinvalidinvalidinvalidinvalidinvalidinvalidinva", FromConfig: true}},
		Clients: []*grants.Client{{
			ClientSpec: grants.ClientSpec{
				ID:           webID,
				AuthMethod:   grants.AuthSecretBasic,
				GrantTypes:   []string{grants.GrantAuthorizationCode, grants.GrantRefreshToken},
				Scopes:       scope,
				RedirectURIs: []string{webRedirect},
			},
			SecretHash: grants.HashSecret(webSecret),
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	start(b, eng, st)
	return eng
}
