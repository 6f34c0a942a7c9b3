package tokens

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
	// before holds revocations of everything a subject or a client was
	// issued up to a time, by beforeKey.
	before map[string]Before
}

// Before revokes the tokens issued at or before At (Unix seconds);
// it is kept until Exp, when no such token can verify any more.
type Before struct{ At, Exp int64 }

// GrantRevocationKey names a whole grant in the revocation set. Access
// tokens carry their grant's id (the gid claim), so revoking a grant
// revokes every access token it issued with one entry, however many
// rotations it went through. The "." keeps it apart from jtis (base64url)
// and from the subject and client entries (beforeKey, with ":").
func GrantRevocationKey(family string) string { return "g." + family }

// BeforeKey names a subject's or a client's revocation. A jti never
// contains ':', so the two kinds of key cannot collide in storage.
func BeforeKey(kind, id string) string { return kind + ":" + id }

// LoadRevocations reads the stored revocations.
func LoadRevocations(ctx context.Context, st storage.Store) (*Revocations, error) {
	r := NewRevocations()
	return r, r.Load(ctx, st)
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{jti: map[string]int64{}, before: map[string]Before{}}
}

// Load applies the stored revocations to r (which may already hold some,
// reported by a watch started first).
func (r *Revocations) Load(ctx context.Context, st storage.Store) error {
	return st.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(storage.KindRevoked, r.Apply)
	})
}

// Apply makes one stored revocation (a KindRevoked record) effective:
// LoadRevocations applies each at start, and a store shared by several
// nodes (storage.Watcher) reports those the other nodes commit. Applying
// one again, or an older one after a newer, changes nothing: a
// subject's or a client's entry only ever moves later.
func (r *Revocations) Apply(key string, rec storage.Record) error {
	if strings.Contains(key, ":") {
		at, err := strconv.ParseInt(string(rec.Value), 10, 64)
		if err != nil {
			return fmt.Errorf("revocation %q is malformed", key)
		}
		b := Before{At: at, Exp: rec.Expires.Unix()}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.before == nil {
			r.before = map[string]Before{}
		}
		if old, ok := r.before[key]; ok {
			b = Before{At: max(b.At, old.At), Exp: max(b.Exp, old.Exp)}
		}
		r.before[key] = b
		return nil
	}
	exp := rec.Expires.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jti == nil {
		r.jti = map[string]int64{}
	}
	if old, ok := r.jti[key]; !ok || old < exp {
		r.jti[key] = exp
	}
	return nil
}

// RevokedClaims reports whether a verified token was revoked: by its jti,
// or with everything its subject or client was issued until then.
func (r *Revocations) RevokedClaims(c *AccessClaims) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.jti[c.ID]; ok {
		return true
	}
	for _, id := range c.FromTokens {
		if _, ok := r.jti[id]; ok {
			return true
		}
	}
	if c.Grant != "" {
		if _, ok := r.jti[GrantRevocationKey(c.Grant)]; ok {
			return true
		}
	}
	if len(r.before) == 0 {
		return false
	}
	// A token whose subject is a client (client_credentials, or a token
	// exchanged from one) dies with that client as well.
	for _, k := range [...]string{BeforeKey("sub", c.Subject), BeforeKey("client", c.ClientID), BeforeKey("client", c.Subject)} {
		if b, ok := r.before[k]; ok && c.IssuedAt <= b.At {
			return true
		}
	}
	// An exchanged token dies with the clients of the tokens it came from.
	for _, id := range c.FromClients {
		if b, ok := r.before[BeforeKey("client", id)]; ok && c.IssuedAt <= b.At {
			return true
		}
	}
	return false
}

// PersistBefore records in tx that everything issued under key up to at
// is revoked, for as long as such a token can verify (until exp).
func PersistBefore(tx storage.Tx, key string, b Before) error {
	return tx.Put(storage.KindRevoked, key, storage.Record{Value: []byte(strconv.FormatInt(b.At, 10)),
		Expires: time.Unix(b.Exp, 0).Add(revokedSlack)})
}

// AddBefore makes a committed persistBefore effective.
func (r *Revocations) AddBefore(key string, b Before) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.before == nil {
		r.before = map[string]Before{}
	}
	r.before[key] = b
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

// PersistRevoked records revoked ids in tx; call add after the commit.
func PersistRevoked(tx storage.Tx, ids map[string]int64) error {
	for jti, exp := range ids {
		if err := tx.Put(storage.KindRevoked, jti, storage.Record{Expires: time.Unix(exp, 0).Add(revokedSlack)}); err != nil {
			return err
		}
	}
	return nil
}

// Add makes committed revocations effective. It only inserts: the gate's
// readers wait on this lock, so forgetting expired revocations (a walk of
// the whole map) is the sweeper's job (prune), not every revocation's.
func (r *Revocations) Add(ids map[string]int64) {
	if r == nil || len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for jti, exp := range ids {
		r.jti[jti] = exp
	}
}

// Prune forgets the revocations of tokens that expired long enough ago
// that they can no longer verify. The sweeper calls it.
func (r *Revocations) Prune(now time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := now.Add(-revokedSlack).Unix()
	for jti, exp := range r.jti {
		if exp < cutoff {
			delete(r.jti, jti)
		}
	}
	for k, b := range r.before {
		if b.Exp < cutoff {
			delete(r.before, k)
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
	return len(r.jti) + len(r.before)
}
