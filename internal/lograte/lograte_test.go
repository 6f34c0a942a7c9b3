package lograte

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	l := New(zap.New(core))
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	full := errors.New("write /data/oauth.db: no space left on device")

	for range 100 {
		l.Error("u"+full.Error(), "oauth storage unavailable", zap.Error(full))
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("100 identical failures in one instant wrote %d lines, want 1", n)
	}
	// Another cause is news: it gets its own line at once.
	l.Error("u database not open", "oauth storage unavailable", zap.Error(errors.New("database not open")))
	if n := logs.Len(); n != 2 {
		t.Fatalf("a new cause wrote %d lines in all, want 2", n)
	}
	now = now.Add(Interval)
	l.Error("u"+full.Error(), "oauth storage unavailable", zap.Error(full), zap.String("request_id", "r2"))
	all := logs.TakeAll()
	if len(all) != 3 {
		t.Fatalf("after the interval: %d lines, want 3", len(all))
	}
	last := all[2]
	ctx := last.ContextMap()
	if last.Level != zapcore.ErrorLevel || ctx["suppressed"] != int64(99) || ctx["request_id"] != "r2" || ctx["error"] != full.Error() {
		t.Fatalf("line after the interval = %v %v, want ERROR with suppressed=99, request_id and the cause", last.Level, ctx)
	}
	if _, ok := all[0].ContextMap()["suppressed"]; ok {
		t.Fatal("the first line carries a suppressed count")
	}
}

func TestLimiterBoundsDistinctCauses(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	l := New(zap.New(core))
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := range 10 * maxKeys {
		l.Error(fmt.Sprint("page ", i), "oauth storage unavailable")
	}
	if n := logs.Len(); n != maxKeys {
		t.Fatalf("%d distinct causes in one instant wrote %d lines, want at most %d", 10*maxKeys, n, maxKeys)
	}
	if len(l.seen) > maxKeys {
		t.Fatalf("the limiter remembers %d lines, want at most %d", len(l.seen), maxKeys)
	}
	// Once the interval passed, old keys make room for new ones.
	now = now.Add(Interval)
	l.Error("a new one", "oauth storage unavailable")
	if n := logs.Len(); n != maxKeys+1 {
		t.Fatalf("after the interval a new cause was not written (%d lines)", n)
	}
}

// Requests fail concurrently; the count is still exact.
func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	l := New(zap.New(core))
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { l.Error("k", "oauth storage unavailable") })
	}
	wg.Wait()
	now = now.Add(Interval)
	l.Error("k", "oauth storage unavailable")
	all := logs.AllUntimed()
	if len(all) != 2 || all[1].ContextMap()["suppressed"] != int64(99) {
		t.Fatalf("lines %v, want 2, the second with suppressed=99", all)
	}
}
