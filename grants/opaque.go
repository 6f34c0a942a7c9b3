package grants

import (
	"context"
	"errors"

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
		return nil, &tokens.TokenError{Reason: "unknown or expired opaque token", Unknown: true}
	case errors.Is(err, storage.ErrUnavailable):
		// The token may well be good: the gate and the endpoints answer
		// 503 (tokens.ErrUnavailable is in the chain) and log the cause
		// with their request's id, never "invalid" (a client would drop a
		// good token) nor, at revocation, 200 for a token that stays valid.
		return nil, storageFailure{err}
	case err != nil:
		return nil, &tokens.TokenError{Reason: "opaque token record is malformed"}
	}
	return c, nil
}
