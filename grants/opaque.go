package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Access token formats a client can be given.
const (
	// FormatJWT is the default: an RFC 9068 JWT, verified in memory.
	FormatJWT = "jwt"
	// FormatOpaque is a random reference whose claims stay in storage:
	// the token says nothing to whoever holds it, and each check reads
	// storage.
	FormatOpaque = "opaque"
)

// issueAccessToken makes the client's access token: a JWT signed with
// the current key, or an opaque token whose claims are stored first.
func (e *Engine) issueAccessToken(ctx context.Context, c *Client, claims *tokens.AccessClaims) (*TokenResponse, *Error) {
	var tok string
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
		TokenType:   "Bearer",
		ExpiresIn:   claims.ExpiresAt - claims.IssuedAt,
		Scope:       claims.Scope,
	}, nil
}

// lookupOpaque finds an opaque access token's claims; the verifier then
// checks them like a JWT's.
func (e *Engine) lookupOpaque(token string) (*tokens.AccessClaims, error) {
	var c *tokens.AccessClaims
	err := e.store.View(context.Background(), func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindAccess, hashToken(token))
		if err != nil {
			return err
		}
		c, err = tokens.ParseAccessClaims(rec.Value)
		return err
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, &tokens.TokenError{Reason: "unknown or expired opaque token"}
	case err != nil:
		// The verifier has no request to name (no context), so the line
		// has no request id; the gate or endpoint answers the token as
		// invalid.
		e.logFailure(context.Background(), "verify opaque token", CodeTemporarilyUnavailable, err)
		return nil, &tokens.TokenError{Reason: "opaque token lookup failed"}
	}
	return c, nil
}
