package tokens

import (
	"hash/maphash"
	"sync"
)

// tokenCache remembers access tokens that verified, so that a token seen
// again costs a map lookup instead of a signature check (DESIGN §7). It is
// bounded, its entries die at the token's exp, and a hit is still checked
// against the clock and the revocation set by the caller.
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards   = 16
	cacheMaxShard = 1024 // 16k tokens, a few MB at most
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*AccessClaims
}

func newTokenCache() *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*AccessClaims)
	}
	return c
}

func (c *tokenCache) shard(token string) *cacheShard {
	return &c.shards[maphash.String(c.seed, token)%cacheShards]
}

// A nil *tokenCache caches nothing (a Verifier made with NoCache).

func (c *tokenCache) get(token string) *AccessClaims {
	if c == nil {
		return nil
	}
	s := c.shard(token)
	s.mu.RLock()
	claims := s.m[token]
	s.mu.RUnlock()
	return claims
}

// put adds a verified token. A full shard first drops expired entries,
// then, if still full, half of the rest: a flood of distinct tokens cannot
// grow memory, it only costs the flooder signature checks.
func (c *tokenCache) put(token string, claims *AccessClaims, now int64) {
	if c == nil {
		return
	}
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= cacheMaxShard {
		for k, v := range s.m {
			if v.ExpiresAt < now {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < cacheMaxShard/2 {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[token] = claims
}

func (c *tokenCache) remove(token string) {
	if c == nil {
		return
	}
	s := c.shard(token)
	s.mu.Lock()
	delete(s.m, token)
	s.mu.Unlock()
}

// clear empties the cache, when the keys change.
func (c *tokenCache) clear() {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}
