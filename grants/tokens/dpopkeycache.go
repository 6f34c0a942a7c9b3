package tokens

import (
	"strings"
	"sync"
)

// The proof header cache. A client sends the same protected header
// (typ, alg, jwk) on every proof, and parsing its jwk (JSON, the key,
// the private-member and RSA-size checks, the RFC 7638 thumbprint) is
// much of a proof check's work. The outcome is a pure function of the
// header's exact bytes, so it is kept by them: a header that differs in
// any byte is a different entry, and only headers that passed every
// header check are kept. The signature is still verified on every
// proof, with the key parsed from those same bytes, and each verifier
// still checks alg against its own allowlist.

// dpopHeaderKey is what a proof header that passed the checks yields.
type dpopHeaderKey struct {
	alg string // the header's alg, which each verifier checks itself
	pub any    // the raw public key jwx verifies with
	jkt string // its RFC 7638 SHA-256 thumbprint, base64url
}

const (
	// dpopKeyCacheEntries bounds each of the cache's two generations.
	dpopKeyCacheEntries = 512
	// maxCachedDPoPHeader is the longest header (base64url) kept: one
	// with an RSA-4096 jwk is about 1 KiB; longer ones are checked in
	// full every time, so the cache holds at most about 2 MiB of keys.
	maxCachedDPoPHeader = 2 << 10
)

// dpopKeyCache is bounded with two generations: entries are added to
// cur; when cur is full it becomes old and a new cur starts, so a header
// in use is kept (a hit in old moves it to cur) and one not seen for a
// generation is forgotten. Safe for concurrent use.
type dpopKeyCache struct {
	mu       sync.Mutex
	cur, old map[string]*dpopHeaderKey
	max      int
}

// processDPoPKeys is the cache every verifier of the process shares:
// its entries do not depend on any verifier's settings.
var processDPoPKeys = newDPoPKeyCache(dpopKeyCacheEntries)

func newDPoPKeyCache(max int) *dpopKeyCache {
	return &dpopKeyCache{cur: map[string]*dpopHeaderKey{}, old: map[string]*dpopHeaderKey{}, max: max}
}

// get returns the entry of the header h (base64url, as sent), or nil.
func (c *dpopKeyCache) get(h string) *dpopHeaderKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.cur[h]; e != nil {
		return e
	}
	if e := c.old[h]; e != nil {
		delete(c.old, h)
		c.putLocked(h, e)
		return e
	}
	return nil
}

// put keeps e for the header h, unless h is too long to keep.
func (c *dpopKeyCache) put(h string, e *dpopHeaderKey) {
	if len(h) > maxCachedDPoPHeader {
		return
	}
	// A copy, so the entry does not pin the whole request header.
	h = strings.Clone(h)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(h, e)
}

func (c *dpopKeyCache) putLocked(h string, e *dpopHeaderKey) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]*dpopHeaderKey, c.max)
	}
	c.cur[h] = e
}

// len is how many headers are kept, for tests.
func (c *dpopKeyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
