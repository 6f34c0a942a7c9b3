package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sqlLog is a pgx tracer that records the statements sent.
type sqlLog struct {
	mu    sync.Mutex
	stmts []string
}

func (l *sqlLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	l.stmts = append(l.stmts, d.SQL)
	l.mu.Unlock()
	return ctx
}

func (l *sqlLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// fillExpiring inserts live rows (half never expire, half in an hour)
// and expired ones, in one statement each, and analyzes the table.
func fillExpiring(t *testing.T, pool *pgxpool.Pool, live, expired int) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO %s (kind, key, value, expires)
			SELECT 'codes', convert_to('live-' || i, 'UTF8'), '\x00', CASE WHEN i %% 2 = 0 THEN now() + interval '1 hour' END
			FROM generate_series(1, %d) i`, recordsTable, live),
		fmt.Sprintf(`INSERT INTO %s (kind, key, value, expires)
			SELECT 'codes', convert_to('gone-' || i, 'UTF8'), '\x00', now() - interval '1 minute'
			FROM generate_series(1, %d) i`, recordsTable, expired),
		`ANALYZE ` + recordsTable,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSweepUsesExpiryIndex: the sweep's DELETE finds expired rows
// through the partial index on (expires, expires_ns), not by reading
// the whole table, so a sweep costs what it deletes.
func TestSweepUsesExpiryIndex(t *testing.T) {
	s := openStore(t)
	fillExpiring(t, s.pool, 50_000, 1_000)
	exp, ns := expiry(time.Now())
	rows, err := s.pool.Query(context.Background(), `EXPLAIN `+sweepSQL, exp, ns, sweepBatch)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, recordsTable+"_expires") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("the sweep's plan does not go through the expiry index:\n%s", plan)
	}
}

// TestSweepSmallTransactions: a sweep of many rows is a statement per
// sweepBatch rows, each its own transaction, never one long one that
// would hold its locks (and the table's dead rows) for the whole sweep.
func TestSweepSmallTransactions(t *testing.T) {
	pc, err := pgxpool.ParseConfig(newDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	log := &sqlLog{}
	pc.ConnConfig.Tracer = log
	s, err := Open(context.Background(), Config{Pool: pc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const expired = 4*sweepBatch + 10
	fillExpiring(t, s.pool, 100, expired)
	log.mu.Lock()
	log.stmts = nil
	log.mu.Unlock()
	n, err := s.Sweep(context.Background(), time.Now(), 1_000_000)
	if err != nil || n != expired {
		t.Fatalf("Sweep: %d, %v; want %d", n, err, expired)
	}
	deletes := 0
	for _, q := range log.stmts {
		switch {
		case strings.HasPrefix(q, "DELETE"):
			deletes++
		case strings.EqualFold(strings.TrimSpace(q), "begin") || strings.HasPrefix(strings.ToLower(q), "begin "):
			t.Fatalf("the sweep opened a transaction: %q", q)
		}
	}
	if want := expired/sweepBatch + 1; deletes != want {
		t.Fatalf("%d DELETE statements for %d rows, want %d of at most %d rows each", deletes, expired, want, sweepBatch)
	}
}
