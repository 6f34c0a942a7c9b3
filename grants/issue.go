package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// issueAccessToken makes the client's access token: a JWT signed with
// the current key, or an opaque token whose claims are stored first.
func (e *Engine) issueAccessToken(ctx context.Context, c *Client, claims *tokens.AccessClaims) (*TokenResponse, *Error) {
	var tok string
	tokenType := bindDPoP(ctx, claims)
	bindToCert(ctx, claims)
	if c.AccessTokenFormat == FormatOpaque {
		b, err := json.Marshal(claims)
		if err != nil {
			return nil, errServer.withCause(err)
		}
		tok = tokens.OpaquePrefix + newSecretToken()
		rec := storage.Record{Value: b, Expires: time.Unix(claims.ExpiresAt, 0).Add(verifierLeeway)}
		if err := e.store.Batch(ctx, func(tx storage.Tx) error { return tx.Put(storage.KindAccess, hashToken(tok), rec) }); err != nil {
			return nil, storageError(err)
		}
	} else {
		var err error
		if tok, err = e.keyRing().Current.MintAccessToken(claims); err != nil {
			return nil, errServer.withCause(fmt.Errorf("signing the access token: %w", err))
		}
		e.verifier.Remember(tok, claims)
	}
	return &TokenResponse{
		AccessToken: tok,
		TokenType:   tokenType,
		ExpiresIn:   claims.ExpiresAt - claims.IssuedAt,
		Scope:       claims.Scope,
	}, nil
}

// userTokens signs the access token (and an ID token when openid was
// granted) for a grant that storage has already committed.
// With the groups scope the access token carries the user's groups too
// (RFC 9068 §2.2.3.1), as the ID token does: a gate's allow_groups reads
// them from bearer tokens.
func (e *Engine) userTokens(ctx context.Context, c *Client, at *tokens.AccessClaims, rt, nonce string, authTime int64) (*TokenResponse, *Error) {
	scopes := at.Scopes()
	openid := slices.Contains(scopes, "openid")
	var u *User
	var err error
	if openid || slices.Contains(scopes, ScopeGroups) {
		u, err = e.users.LookupSubject(ctx, at.Subject)
		switch {
		case errors.Is(err, ErrUserNotFound) && openid:
			return nil, errUserGone
		case errors.Is(err, ErrUserNotFound):
			u = nil // no local user (an external subject): no groups to add
		case err != nil:
			return nil, storageError(err)
		}
	}
	if u != nil && slices.Contains(scopes, ScopeGroups) {
		if v, ok := u.Claims["groups"]; ok {
			at.Groups = splitGroups(v)
		}
	}
	resp, oerr := e.issueAccessToken(ctx, c, at)
	if oerr != nil {
		return nil, oerr
	}
	resp.RefreshToken = rt
	if openid {
		k, oerr := e.idTokenKey(c)
		if oerr != nil {
			return nil, oerr
		}
		idc := newIDClaims(e.issuer, u, c.ID, nonce, at.Scopes(), time.Unix(authTime, 0), time.Now(), e.accessTokenTTL)
		idc.ATHash = atHash(k, resp.AccessToken)
		idc.Grant = at.Grant
		if resp.IDToken, err = k.MintIDToken(idc); err != nil {
			return nil, errServer.withCause(fmt.Errorf("signing the ID token: %w", err))
		}
	}
	return resp, nil
}
