package gate

import (
	"sync"
	"time"
)

// expiringMap is a map whose entries expire, bounded in size: when it is
// full, entries past their time go first, then arbitrary ones (map order
// is random), so a flood can evict entries but never grow it. The gate
// keeps introspection answers, signed-out sessions and replaced session
// cookies in one each.
type expiringMap[K comparable, V any] struct {
	max int

	mu sync.RWMutex
	m  map[K]expiring[V]
}

type expiring[V any] struct {
	v     V
	until time.Time
}

func newExpiringMap[K comparable, V any](max int) *expiringMap[K, V] {
	return &expiringMap[K, V]{max: max, m: map[K]expiring[V]{}}
}

// get returns k's value while now is before its time.
func (e *expiringMap[K, V]) get(k K, now time.Time) (V, bool) {
	e.mu.RLock()
	x, ok := e.m[k]
	e.mu.RUnlock()
	if !ok || !now.Before(x.until) {
		var zero V
		return zero, false
	}
	return x.v, true
}

// put keeps v for k until the time until.
func (e *expiringMap[K, V]) put(k K, v V, until, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.m[k]; !ok && len(e.m) >= e.max {
		for old, x := range e.m {
			if !now.Before(x.until) {
				delete(e.m, old)
			}
		}
		for old := range e.m {
			if len(e.m) < e.max {
				break
			}
			delete(e.m, old)
		}
	}
	e.m[k] = expiring[V]{v, until}
}

func (e *expiringMap[K, V]) len() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.m)
}
