package grants

import (
	"context"
	"sync"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Revocations is the in-memory set of revoked access-token ids, fed from
// storage, so the gate refuses a revoked token without touching disk.
// One set is shared by every config that uses the same storage file.
type Revocations struct {
	mu  sync.RWMutex
	jti map[string]int64 // jti -> exp (Unix seconds)
}

// LoadRevocations reads the stored revocations.
func LoadRevocations(ctx context.Context, st storage.Store) (*Revocations, error) {
	r := &Revocations{jti: map[string]int64{}}
	err := st.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(storage.KindRevoked, func(k string, rec storage.Record) error {
			r.jti[k] = rec.Expires.Unix()
			return nil
		})
	})
	return r, err
}

// Revoked reports whether the access token with this id was revoked.
func (r *Revocations) Revoked(jti string) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	_, ok := r.jti[jti]
	r.mu.RUnlock()
	return ok
}

// revokedSlack keeps a stored revocation a little past the token's exp,
// beyond the verifier's leeway, so a token that still verifies is never
// forgotten early by the sweeper or by a restart.
const revokedSlack = time.Minute

// persistRevoked records revoked ids in tx; call add after the commit.
func persistRevoked(tx storage.Tx, ids map[string]int64) error {
	for jti, exp := range ids {
		if err := tx.Put(storage.KindRevoked, jti, storage.Record{Expires: time.Unix(exp, 0).Add(revokedSlack)}); err != nil {
			return err
		}
	}
	return nil
}

// add makes committed revocations effective, and forgets expired ones.
func (r *Revocations) add(ids map[string]int64) {
	if r == nil || len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for jti, exp := range ids {
		r.jti[jti] = exp
	}
	r.pruneLocked(time.Now())
}

// prune forgets the revocations of tokens that expired long enough ago
// that they can no longer verify.
func (r *Revocations) prune(now time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(now)
}

func (r *Revocations) pruneLocked(now time.Time) {
	cutoff := now.Add(-revokedSlack).Unix()
	for jti, exp := range r.jti {
		if exp < cutoff {
			delete(r.jti, jti)
		}
	}
}

// Len is the number of revocations held in memory.
func (r *Revocations) Len() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.jti)
}
