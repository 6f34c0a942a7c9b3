package grants

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
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
	resource := form.Get("resource")
	handle, key, secret, ok := splitRefreshToken(old)
	if !ok {
		return nil, errBadRefresh
	}
	now := time.Now()
	if resp, oerr, done := e.rotateFast(ctx, c, handle, key, secret, want, resource, now); done {
		return resp, oerr
	}
	var (
		fam     familyRecord
		at      *tokens.AccessClaims
		next    string
		revoked map[string]int64
		oerr    *Error
		reused  bool
	)
	err := e.store.Batch(ctx, func(tx storage.Tx) error {
		fam, at, next, revoked, oerr, reused = familyRecord{}, nil, "", nil, nil, false
		famRec, err := getJSON(tx, storage.KindFamilies, key, &fam)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (fam.Revoked || fam.ClientID != c.ID || fam.Current == "")) {
			oerr = errBadRefresh
			return nil
		}
		if err != nil {
			return err
		}
		// Reuse first: a rotated or forged secret learns nothing more
		// about the grant (not even whether a scope would be allowed).
		if !fam.isCurrent(secret) && !fam.inGrace(secret, e.refreshGrace, now) {
			oerr = errCode(CodeInvalidGrant, "the refresh token was already used; the grant is revoked")
			reused = true
			revoked, err = e.revokeFamily(tx, key)
			return err
		}
		if fam.DPoPJKT != "" && fam.DPoPJKT != dpopJKT(ctx) {
			oerr = errDPoPBound
			return nil
		}
		if !fam.certHeld(ctx) {
			oerr = errCertBound
			return nil
		}
		if !now.Before(e.refreshDeadline(&fam, famRec.Expires)) {
			// Unused for refresh_token_idle_ttl: refused, and nothing
			// written; the record goes at its absolute expiry.
			oerr = errCode(CodeInvalidGrant, "the refresh token expired unused (refresh_token_idle_ttl); sign in again")
			return nil
		}
		if _, err := e.users.lookupSubjectTx(tx, fam.Subject); err != nil {
			if !errors.Is(err, ErrUserNotFound) {
				return err
			}
			// The user was removed: the grant dies with them.
			oerr = errBadRefresh
			revoked, err = e.revokeFamily(tx, key)
			return err
		}
		scope, ok := narrowScope(fam.Scope, want)
		if !ok {
			oerr = errCode(CodeInvalidScope, "the requested scope exceeds the original grant")
			return nil
		}
		var aud []string
		if aud, oerr = e.refreshAudience(c, &fam, resource); oerr != nil {
			return nil
		}
		next = fam.rotate(handle, secret, now)
		at = tokens.NewAccessClaims(e.issuer, fam.Subject, c.ID, aud, scope, now, e.accessTokenTTL)
		at.Grant = fam.GrantID
		return putJSON(tx, storage.KindFamilies, key, &fam, famRec.Expires)
	})
	if err != nil {
		return nil, storageError(err)
	}
	e.revocations.Add(revoked)
	if reused {
		// Logged once the revocation is committed (Batch may run the
		// function more than once). Either the client or an attacker holds
		// a stolen token; both are now signed out.
		e.observer.RefreshReuse()
		e.auditLine(ctx, zapcore.WarnLevel, auditRefreshReuse, zap.String("client_id", c.ID),
			zap.String("subject", fam.Subject), zap.String("grant_id", fam.GrantID))
	}
	if oerr != nil {
		return nil, oerr
	}
	return e.userTokens(ctx, c, at, next, "", fam.AuthTime)
}

// refreshAudience is the audience of a refreshed access token (RFC 8707
// §2.2): the grant's resources, or the one of them asked for, and only
// those the client is still registered for (an operator who removes an
// API from a client ends its grants' access to it). A resource outside
// the grant is invalid_target, never a wider token.
func (e *Engine) refreshAudience(c *Client, fam *familyRecord, resource string) ([]string, *Error) {
	allowed, _ := e.audienceFor(c, "")
	granted := fam.Resources
	if granted == nil {
		// A grant stored by an earlier build, which gave every refresh
		// the client's registered audience: it keeps exactly that, no
		// more, until its refresh_token_ttl ends. What its code request
		// named is not known, so nothing narrower can be enforced.
		granted = allowed
	}
	if resource != "" {
		i := indexResource(granted, resource)
		if i < 0 {
			return nil, errCode(CodeInvalidTarget, "the requested resource is not part of the original grant")
		}
		granted = granted[i : i+1]
	}
	var aud []string
	for _, r := range granted {
		if j := indexResource(allowed, r); j >= 0 {
			aud = append(aud, allowed[j])
		}
	}
	switch {
	case aud != nil:
		return aud, nil
	case resource != "":
		return nil, errCode(CodeInvalidTarget, "the requested resource is not allowed for this client")
	default:
		return nil, errCode(CodeInvalidGrant, "the resources of this grant are no longer allowed for this client")
	}
}

// narrowScope is the scope of a refreshed access token: the grant's, or
// the subset of it that was asked for; ok is false if want exceeds it.
func narrowScope(granted, want []string) (scope []string, ok bool) {
	for _, s := range want {
		if !slices.Contains(granted, s) {
			return nil, false
		}
	}
	if want == nil {
		return granted, true
	}
	return want, true
}

// rotateFast is the common case of a rotation, arranged so that the write
// transaction, which every durable grant on the server queues for, holds
// the writer as briefly as possible: the grant is read and checked and the
// new tokens signed outside it, and the transaction only confirms that the
// record is still byte for byte what was read before writing the prepared
// one. Anything else (a token unknown, rotated or revoked, a scope to
// refuse, a user gone, the record changed in between by a concurrent
// replay) returns done=false, and refreshToken decides it in one
// transaction instead. Clients with opaque access tokens take that path
// too: storing their token is a write of its own.
func (e *Engine) rotateFast(ctx context.Context, c *Client, handle, key, secret string, want []string, resource string, now time.Time) (resp *TokenResponse, oerr *Error, done bool) {
	if c.AccessTokenFormat == FormatOpaque {
		return nil, nil, false
	}
	var (
		famRec storage.Record
		fam    familyRecord
	)
	err := e.store.View(ctx, func(tx storage.Tx) error {
		var err error
		famRec, err = getJSON(tx, storage.KindFamilies, key, &fam)
		return err
	})
	if err != nil || fam.Revoked || fam.ClientID != c.ID || !fam.isCurrent(secret) || (fam.DPoPJKT != "" && fam.DPoPJKT != dpopJKT(ctx)) || !fam.certHeld(ctx) || !now.Before(e.refreshDeadline(&fam, famRec.Expires)) {
		return nil, nil, false
	}
	scope, ok := narrowScope(fam.Scope, want)
	if !ok {
		return nil, nil, false
	}
	aud, aerr := e.refreshAudience(c, &fam, resource)
	if aerr != nil {
		return nil, nil, false
	}
	next := fam.rotate(handle, secret, now)
	at := tokens.NewAccessClaims(e.issuer, fam.Subject, c.ID, aud, scope, now, e.accessTokenTTL)
	at.Grant = fam.GrantID
	if resp, oerr = e.userTokens(ctx, c, at, next, "", fam.AuthTime); oerr != nil {
		if oerr == errUserGone {
			return nil, nil, false // the one-transaction path revokes the grant
		}
		return nil, oerr, true
	}
	rotated, err := json.Marshal(&fam)
	if err != nil {
		return nil, errServer.withCause(err), true
	}
	unchanged := false
	err = e.store.Batch(ctx, func(tx storage.Tx) error {
		unchanged = false
		got, err := tx.Get(storage.KindFamilies, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(got.Value, famRec.Value) || !got.Expires.Equal(famRec.Expires) {
			return nil
		}
		if _, err := e.users.lookupSubjectTx(tx, fam.Subject); err != nil {
			if errors.Is(err, ErrUserNotFound) {
				return nil
			}
			return err
		}
		unchanged = true
		return tx.Put(storage.KindFamilies, key, storage.Record{Value: rotated, Expires: famRec.Expires})
	})
	if err != nil {
		return nil, storageError(err), true
	}
	if !unchanged {
		return nil, nil, false
	}
	return resp, nil, true
}
