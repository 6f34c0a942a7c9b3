package grants

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// RevokeSubject revokes every grant of a user (or of a client acting for
// itself, whose subject is its id) and every access token issued for it
// until now. It returns the number of grants revoked.
//
// It ends the user's sign-in sessions at the server too: a gate that
// signs browsers in through this server would otherwise get a new grant
// at once, without a sign-in, from the session the user still has.
func (e *Engine) RevokeSubject(ctx context.Context, sub string) (int, error) {
	return e.revokeAllThen(ctx, tokens.BeforeKey("sub", sub), func(f *familyRecord) bool { return f.Subject == sub },
		func(tx storage.Tx) error { return endSessionsTx(tx, sub) })
}

// RevokeSubjectOrUser is RevokeSubject for what an operator names as a
// subject (caddy oauth revoke --subject, the admin API): the subject
// itself and, when it is a local user's name whose subject differs (a
// non-ASCII name, a name used before), that user's subject too, so
// revoking "jürgen" or a re-created "carol" never silently misses.
func (e *Engine) RevokeSubjectOrUser(ctx context.Context, s string) (n int, err error) {
	defer func() {
		if err == nil {
			e.revokedAll(ctx, zap.String("subject", s), n)
		}
	}()
	return e.revokeSubjectOrUser(ctx, s)
}

func (e *Engine) revokeSubjectOrUser(ctx context.Context, s string) (int, error) {
	n, err := e.RevokeSubject(ctx, s)
	if err != nil || IsExternalSubject(s) {
		return n, err
	}
	u, err := e.users.Lookup(ctx, s)
	if errors.Is(err, ErrUserNotFound) {
		return n, nil
	}
	if err != nil {
		return n, err
	}
	if sub := u.Subject(); sub != s {
		m, err := e.RevokeSubject(ctx, sub)
		return n + m, err
	}
	return n, nil
}

// RevokeUser revokes every grant and access token of the user with this
// name, by the user's subject (which differs from the name for non-ASCII
// names and for names used before). Code that starts from a user name
// (password changes, removal) uses this, not RevokeSubject(name).
func (e *Engine) RevokeUser(ctx context.Context, name string) (int, error) {
	u, err := e.users.Lookup(ctx, name)
	if err != nil {
		return 0, err
	}
	return e.RevokeSubject(ctx, u.Subject())
}

// RevokeClient revokes every grant and every access token issued to a
// client until now. It returns the number of grants revoked.
func (e *Engine) RevokeClient(ctx context.Context, clientID string) (int, error) {
	n, err := e.revokeClient(ctx, clientID)
	if err == nil {
		e.revokedAll(ctx, zap.String("client_id", clientID), n)
	}
	return n, err
}

func (e *Engine) revokeClient(ctx context.Context, clientID string) (int, error) {
	return e.revokeAll(ctx, tokens.BeforeKey("client", clientID), func(f *familyRecord) bool { return f.ClientID == clientID })
}

// revokedAll writes the audit line of a revoke-all: whose (the subject or
// client as the operator named it) and how many grants it ended; the
// access tokens issued until now are all refused, however many.
func (e *Engine) revokedAll(ctx context.Context, whose zap.Field, n int) {
	e.observer.AdminChange(changeGrants, actionRevoked)
	e.auditLine(ctx, zapcore.InfoLevel, auditGrantsRevoked, whose, zap.Int("grants_revoked", n))
}

// revokeAll revokes the families that match and, through a "revoked
// before now" entry, the access tokens (which are not stored). Access
// tokens issued in the same second as the revocation are refused too.
func (e *Engine) revokeAll(ctx context.Context, key string, match func(*familyRecord) bool) (int, error) {
	return e.revokeAllThen(ctx, key, match, nil)
}

// revokeAllThen is revokeAll with more work (also) done in its
// transaction.
func (e *Engine) revokeAllThen(ctx context.Context, key string, match func(*familyRecord) bool, also func(storage.Tx) error) (int, error) {
	return e.revokeAllOf(ctx, func(storage.Tx) (string, func(*familyRecord) bool, error) { return key, match, nil }, also)
}

// revokeAllOf is revokeAllThen for a subject or client that first is
// found (and removed) in the same transaction: which returns the key and
// the match. Removing something and revoking what it was issued are one
// transaction, so a failure (a full disk) leaves both undone, and a
// retry does both.
func (e *Engine) revokeAllOf(ctx context.Context, which func(storage.Tx) (string, func(*familyRecord) bool, error), also func(storage.Tx) error) (int, error) {
	if e.store == nil {
		return 0, errors.New("the engine is not started")
	}
	now := time.Now()
	var (
		n       int
		key     string
		revoked map[string]int64
		b       tokens.Before
	)
	err := e.store.Update(ctx, func(tx storage.Tx) error {
		k, match, err := which(tx)
		if err != nil {
			return err
		}
		// Every node's tokens are covered, whatever this one's TTL.
		horizon, err := e.revocationHorizonTx(tx, now)
		if err != nil {
			return err
		}
		key = k
		n, revoked, b, err = revokeAllTx(tx, key, match, now, horizon)
		if err == nil && also != nil {
			err = also(tx)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	e.revocations.Add(revoked)
	e.revocations.AddBefore(key, b)
	return n, nil
}

// revokeAllTx is revokeAll's transaction: access tokens that verify until
// horizon at the latest are covered.
func revokeAllTx(tx storage.Tx, key string, match func(*familyRecord) bool, now, horizon time.Time) (int, map[string]int64, tokens.Before, error) {
	b := tokens.Before{At: now.Unix(), Exp: horizon.Unix()}
	revoked := map[string]int64{}
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
		return 0, nil, b, err
	}
	for _, id := range ids {
		jtis, err := revokeFamilyTx(tx, id, horizon)
		if err != nil {
			return 0, nil, b, err
		}
		for k, v := range jtis {
			revoked[k] = v
		}
	}
	return len(ids), revoked, b, tokens.PersistBefore(tx, key, b)
}

// endSessionsTx deletes every sign-in session of the user whose subject
// is sub (sessions stored before subjects were have the name's).
func endSessionsTx(tx storage.Tx, sub string) error {
	var keys []string
	err := tx.ForEach(storage.KindSessions, func(k string, rec storage.Record) error {
		var s sessionRecord
		if json.Unmarshal(rec.Value, &s) == nil && cmp.Or(s.Sub, nameSubject(s.User)) == sub {
			keys = append(keys, k)
		}
		return nil
	})
	for _, k := range keys {
		if err == nil {
			err = tx.Delete(storage.KindSessions, k)
		}
	}
	return err
}

// UpdateUser changes a run-time user, keeping what u does not give (see
// Users.Update). A new password ends everything the old one opened (RFC
// 9700 §4.14.2): the user's grants (refresh tokens), the access tokens
// issued until now, and the user's sign-in sessions.
func (e *Engine) UpdateUser(ctx context.Context, u *User) error {
	ch, err := e.users.update(ctx, u)
	if err != nil {
		return err
	}
	n := 0
	if ch.password {
		n, err = e.endUser(ctx, u.Subject())
	}
	// The change is stored, so it is logged, even when ending the old
	// password's grants failed (the error says what to run).
	e.observer.AdminChange(changeUser, actionUpdated)
	e.auditLine(ctx, zapcore.InfoLevel, auditUserUpdated, zap.String("user", u.Name), zap.String("subject", u.Subject()),
		zap.Strings("changed", ch.fields()), zap.Strings("claims", ch.claims), zap.Int("grants_revoked", n))
	if err != nil {
		return fmt.Errorf("the password of %q was changed, but %w", u.Name, err)
	}
	return nil
}

// RemoveUser deletes a run-time user and ends everything the user had:
// grants, access tokens and sign-in sessions.
func (e *Engine) RemoveUser(ctx context.Context, name string) error {
	if _, ok := e.users.config[name]; ok {
		return ErrConfigUser
	}
	var sub string
	n, err := e.revokeAllOf(ctx, func(tx storage.Tx) (string, func(*familyRecord) bool, error) {
		var err error
		if sub, err = e.users.removeTx(tx, name); err != nil {
			return "", nil, err
		}
		return tokens.BeforeKey("sub", sub), func(f *familyRecord) bool { return f.Subject == sub }, nil
	}, func(tx storage.Tx) error { return endSessionsTx(tx, sub) })
	if err != nil {
		return err
	}
	e.observer.AdminChange(changeUser, actionRemoved)
	e.auditLine(ctx, zapcore.InfoLevel, auditUserRemoved, zap.String("user", name), zap.String("subject", sub),
		zap.Int("grants_revoked", n))
	return nil
}

// endUser revokes every grant and access token of the subject and ends
// its sessions. It returns the number of grants revoked.
func (e *Engine) endUser(ctx context.Context, sub string) (int, error) {
	n, err := e.revokeAllThen(ctx, tokens.BeforeKey("sub", sub), func(f *familyRecord) bool { return f.Subject == sub },
		func(tx storage.Tx) error { return endSessionsTx(tx, sub) })
	if err != nil {
		return 0, fmt.Errorf("revoking the user's grants failed (run `caddy oauth revoke --subject %s` again): %w", sub, err)
	}
	return n, nil
}

// OfflineRevocationHorizon is how long the access tokens issued before a
// password change made with the server stopped (UpdateStoredUser) are
// refused: the access_token_ttl is not known then.
const OfflineRevocationHorizon = 24 * time.Hour

// UpdateStoredUser is UpdateUser on a storage file while no server runs:
// the revocations it stores take effect when the server starts.
func UpdateStoredUser(ctx context.Context, st storage.Store, u *User) error {
	changed, err := StoredUsers(st).Update(ctx, u)
	if err != nil || !changed {
		return err
	}
	return endStoredUser(ctx, st, u.Subject())
}

// RemoveStoredUser is RemoveUser on a storage file while no server runs.
func RemoveStoredUser(ctx context.Context, st storage.Store, name string) error {
	us := StoredUsers(st)
	now := time.Now()
	return st.Update(ctx, func(tx storage.Tx) error {
		sub, err := us.removeTx(tx, name)
		if err != nil {
			return err
		}
		return endStoredUserTx(tx, sub, now)
	})
}

// endStoredUser is endUser on a storage file while no server runs.
func endStoredUser(ctx context.Context, st storage.Store, sub string) error {
	now := time.Now()
	return st.Update(ctx, func(tx storage.Tx) error { return endStoredUserTx(tx, sub, now) })
}

// endStoredUserTx is endStoredUser's transaction.
func endStoredUserTx(tx storage.Tx, sub string, now time.Time) error {
	// The longest TTL the nodes recorded, if longer than the default.
	d, err := storedLifetimeTx(tx)
	if err != nil {
		return err
	}
	_, _, _, err = revokeAllTx(tx, tokens.BeforeKey("sub", sub), func(f *familyRecord) bool { return f.Subject == sub },
		now, now.Add(max(OfflineRevocationHorizon, d+verifierLeeway)))
	if err != nil {
		return err
	}
	return endSessionsTx(tx, sub)
}
