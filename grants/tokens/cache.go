package tokens

import (
	"crypto/sha256"
	"hash/maphash"
	"sync"
)

// tokenCache remembers access tokens that verified, so that a token seen
// again costs a map lookup instead of a signature check. It is
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

// mintedCache holds the claims of access tokens this process signed, by
// the SHA-256 of the token, until the gate first meets them: the issuer
// knows what it signed, so a fresh token costs the gate a hash instead of
// a signature check. It is bounded (the oldest entry of a full shard
// makes room) and its entries move to the token cache on first use, so
// tokens minted and never presented (client_credentials for other
// resource servers) cannot push out tokens in use.
type mintedCache struct {
	shards [cacheShards]mintedShard
}

// mintedMaxShard bounds each shard: 16k fresh tokens, about 10 MB.
const mintedMaxShard = 1024

type mintedShard struct {
	mu   sync.Mutex
	m    map[[32]byte]*AccessClaims
	ring [][32]byte // insertion order, for eviction
	next int
}

func newMintedCache() *mintedCache {
	c := &mintedCache{}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*AccessClaims)
	}
	return c
}

func (c *mintedCache) shard(sum *[32]byte) *mintedShard {
	return &c.shards[sum[0]%cacheShards]
}

func (c *mintedCache) put(token string, claims *AccessClaims) {
	if c == nil {
		return
	}
	sum := sha256.Sum256([]byte(token))
	s := c.shard(&sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) < mintedMaxShard {
		s.ring = append(s.ring, sum)
	} else {
		delete(s.m, s.ring[s.next])
		s.ring[s.next] = sum
		s.next = (s.next + 1) % mintedMaxShard
	}
	s.m[sum] = claims
}

// take returns and forgets the claims of a token this process minted.
func (c *mintedCache) take(token string) *AccessClaims {
	if c == nil {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	s := c.shard(&sum)
	s.mu.Lock()
	claims, ok := s.m[sum]
	if ok {
		// The ring keeps the slot: it is overwritten in turn, and
		// deleting a key twice is harmless.
		delete(s.m, sum)
	}
	s.mu.Unlock()
	return claims
}

func (c *mintedCache) clear() {
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
