package grants

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

var errBadRefresh = errCode(CodeInvalidGrant, "the refresh token is invalid, expired or revoked")

// refreshToken is the RFC 6749 §6 grant with rotation: every use returns a
// new refresh token, and presenting one that was already rotated revokes
// the whole family (RFC 9700 §4.14.2). A narrower scope may be asked for
// the new access token; the family keeps the original grant.
func (e *Engine) refreshToken(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	old := form.Get("refresh_token")
	if old == "" {
		return nil, errRequest("refresh_token is required")
	}
	var want []string
	if s := form.Get("scope"); s != "" {
		var oerr *Error
		if want, oerr = parseScope(s); oerr != nil {
			return nil, oerr
		}
	}
	aud, oerr := e.audienceFor(c, form.Get("resource"))
	if oerr != nil {
		return nil, oerr
	}
	key := hashToken(old)
	now := time.Now()
	if resp, oerr, done := e.rotateFast(ctx, c, key, want, aud, now); done {
		return resp, oerr
	}
	var (
		fam     familyRecord
		at      *AccessClaims
		next    string
		revoked map[string]int64
	)
	err := e.store.Batch(ctx, func(tx storage.Tx) error {
		fam, at, next, revoked, oerr = familyRecord{}, nil, "", nil, nil
		var r refreshRecord
		rec, err := getJSON(tx, storage.KindRefresh, key, &r)
		if errors.Is(err, storage.ErrNotFound) {
			oerr = errBadRefresh
			return nil
		}
		if err != nil {
			return err
		}
		famRec, err := getJSON(tx, storage.KindFamilies, r.Family, &fam)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (fam.Revoked || fam.ClientID != c.ID)) {
			oerr = errBadRefresh
			return nil
		}
		if err != nil {
			return err
		}
		scope := fam.Scope
		if want != nil {
			for _, s := range want {
				if !slices.Contains(fam.Scope, s) {
					oerr = errCode(CodeInvalidScope, "the requested scope exceeds the original grant")
					return nil
				}
			}
			scope = want
		}
		if _, err := e.Users.lookupTx(tx, fam.Subject); err != nil {
			if !errors.Is(err, ErrUserNotFound) {
				return err
			}
			// The user was removed: the grant dies with them.
			oerr = errBadRefresh
			revoked, err = e.revokeFamily(tx, r.Family)
			return err
		}
		if r.Used {
			var succ refreshRecord
			_, serr := getJSON(tx, storage.KindRefresh, r.Next, &succ)
			lost := e.RefreshGrace > 0 && now.Sub(time.Unix(r.UsedAt, 0)) <= e.RefreshGrace && serr == nil && !succ.Used
			if !lost {
				oerr = errCode(CodeInvalidGrant, "the refresh token was already used; the grant is revoked")
				revoked, err = e.revokeFamily(tx, r.Family)
				return err
			}
			// The client never received (or never used) the successor:
			// replace it rather than revoke an honest client's grant.
			if err := tx.Delete(storage.KindRefresh, r.Next); err != nil {
				return err
			}
		}
		at = newAccessClaims(e.Issuer, fam.Subject, c.ID, aud, scope, now, e.AccessTokenTTL)
		at.Grant = r.Family
		next = newSecretToken()
		r.Used, r.UsedAt, r.Next = true, now.Unix(), hashToken(next)
		if err := putJSON(tx, storage.KindRefresh, key, &r, rec.Expires); err != nil {
			return err
		}
		if err := putJSON(tx, storage.KindRefresh, r.Next, &refreshRecord{Family: r.Family}, famRec.Expires); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, storageError(err)
	}
	e.Revocations.add(revoked)
	if oerr != nil {
		return nil, oerr
	}
	return e.userTokens(ctx, c, at, next, "", fam.AuthTime)
}

// rotateFast is the common case of a rotation, arranged so that the write
// transaction, which every durable grant on the server queues for, holds
// the writer as briefly as possible: the records are read and checked and
// the new tokens signed outside it, and the transaction only confirms
// that both records are still byte for byte what was read before writing
// the prepared ones. Anything else (a token unknown, used or revoked, a
// scope that may be refused, a user gone, a record changed in between:
// a concurrent replay) returns done=false, and refreshToken decides it in
// one transaction instead.
func (e *Engine) rotateFast(ctx context.Context, c *Client, key string, want, aud []string, now time.Time) (resp *TokenResponse, oerr *Error, done bool) {
	var (
		rRec, famRec storage.Record
		r            refreshRecord
		fam          familyRecord
	)
	err := e.store.View(ctx, func(tx storage.Tx) error {
		var err error
		if rRec, err = getJSON(tx, storage.KindRefresh, key, &r); err != nil {
			return err
		}
		famRec, err = getJSON(tx, storage.KindFamilies, r.Family, &fam)
		return err
	})
	if err != nil || r.Used || fam.Revoked || fam.ClientID != c.ID {
		return nil, nil, false
	}
	scope := fam.Scope
	if want != nil {
		for _, s := range want {
			if !slices.Contains(fam.Scope, s) {
				return nil, nil, false
			}
		}
		scope = want
	}
	at := newAccessClaims(e.Issuer, fam.Subject, c.ID, aud, scope, now, e.AccessTokenTTL)
	at.Grant = r.Family
	next := newSecretToken()
	if resp, oerr = e.userTokens(ctx, c, at, next, "", fam.AuthTime); oerr != nil {
		return nil, nil, false
	}
	used := r
	used.Used, used.UsedAt, used.Next = true, now.Unix(), hashToken(next)
	usedJSON, err := json.Marshal(&used)
	if err != nil {
		return nil, errServer, true
	}
	nextJSON, err := json.Marshal(&refreshRecord{Family: r.Family})
	if err != nil {
		return nil, errServer, true
	}
	unchanged := false
	err = e.store.Batch(ctx, func(tx storage.Tx) error {
		unchanged = false
		for _, want := range []struct {
			kind storage.Kind
			key  string
			rec  storage.Record
		}{{storage.KindRefresh, key, rRec}, {storage.KindFamilies, r.Family, famRec}} {
			got, err := tx.Get(want.kind, want.key)
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(got.Value, want.rec.Value) || !got.Expires.Equal(want.rec.Expires) {
				return nil
			}
		}
		if _, err := e.Users.lookupTx(tx, fam.Subject); err != nil {
			if errors.Is(err, ErrUserNotFound) {
				return nil
			}
			return err
		}
		unchanged = true
		if err := tx.Put(storage.KindRefresh, key, storage.Record{Value: usedJSON, Expires: rRec.Expires}); err != nil {
			return err
		}
		return tx.Put(storage.KindRefresh, used.Next, storage.Record{Value: nextJSON, Expires: famRec.Expires})
	})
	if err != nil {
		return nil, storageError(err), true
	}
	if !unchanged {
		return nil, nil, false
	}
	return resp, nil, true
}
