package gate

import (
	"testing"
	"time"
)

// TestExpiringMap: entries answer until their time, the size never
// passes the bound, and a full map evicts expired entries first.
func TestExpiringMap(t *testing.T) {
	now := time.Now()
	m := newExpiringMap[int, string](3)
	m.put(1, "old", now.Add(time.Second), now)
	m.put(2, "b", now.Add(time.Hour), now)
	m.put(3, "c", now.Add(time.Hour), now)
	if v, ok := m.get(1, now); !ok || v != "old" {
		t.Fatalf("get(1) = %q, %v", v, ok)
	}
	later := now.Add(2 * time.Second)
	if _, ok := m.get(1, later); ok {
		t.Fatal("an expired entry answered")
	}
	m.put(4, "d", later.Add(time.Hour), later)
	if m.len() != 3 {
		t.Fatalf("len %d, want 3", m.len())
	}
	for _, k := range []int{2, 3, 4} {
		if _, ok := m.get(k, later); !ok {
			t.Errorf("live entry %d evicted while an expired one was there", k)
		}
	}
	for k := 10; k < 1000; k++ {
		m.put(k, "flood", later.Add(time.Hour), later)
	}
	if m.len() != 3 {
		t.Fatalf("after a flood: len %d, want 3", m.len())
	}
	m.put(999, "again", later.Add(time.Hour), later) // replacing keeps the rest
	if m.len() != 3 {
		t.Fatalf("replacing an entry changed len to %d", m.len())
	}
}
