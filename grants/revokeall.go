package grants

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// RevokeSubject revokes every grant of a user (or of a client acting for
// itself, whose subject is its id) and every access token issued for it
// until now. It returns the number of grants revoked.
func (e *Engine) RevokeSubject(ctx context.Context, sub string) (int, error) {
	return e.revokeAll(ctx, beforeKey("sub", sub), func(f *familyRecord) bool { return f.Subject == sub })
}

// RevokeUser revokes every grant and access token of the user with this
// name, by the user's subject (which differs from the name for non-ASCII
// names and for names used before). Code that starts from a user name
// (password changes, removal) uses this, not RevokeSubject(name).
func (e *Engine) RevokeUser(ctx context.Context, name string) (int, error) {
	u, err := e.Users.Lookup(ctx, name)
	if err != nil {
		return 0, err
	}
	return e.RevokeSubject(ctx, u.Subject())
}

// RevokeClient revokes every grant and every access token issued to a
// client until now. It returns the number of grants revoked.
func (e *Engine) RevokeClient(ctx context.Context, clientID string) (int, error) {
	return e.revokeAll(ctx, beforeKey("client", clientID), func(f *familyRecord) bool { return f.ClientID == clientID })
}

// revokeAll revokes the families that match and, through a "revoked
// before now" entry, the access tokens (which are not stored). Access
// tokens issued in the same second as the revocation are refused too.
func (e *Engine) revokeAll(ctx context.Context, key string, match func(*familyRecord) bool) (int, error) {
	if e.store == nil {
		return 0, errors.New("the engine is not started")
	}
	now := time.Now()
	b := beforeEntry{At: now.Unix(), Exp: now.Add(e.AccessTokenTTL + e.Verifier.Leeway).Unix()}
	var (
		n       int
		revoked map[string]int64
	)
	err := e.store.Update(ctx, func(tx storage.Tx) error {
		n, revoked = 0, map[string]int64{}
		var ids []string
		err := tx.ForEach(storage.KindFamilies, func(id string, rec storage.Record) error {
			var f familyRecord
			if err := json.Unmarshal(rec.Value, &f); err != nil {
				return err
			}
			if !f.Revoked && match(&f) {
				ids = append(ids, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			jtis, err := e.revokeFamily(tx, id)
			if err != nil {
				return err
			}
			for k, v := range jtis {
				revoked[k] = v
			}
		}
		n = len(ids)
		return persistBefore(tx, key, b)
	})
	if err != nil {
		return 0, err
	}
	e.Revocations.add(revoked)
	e.Revocations.addBefore(key, b)
	return n, nil
}
