package grants

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Token type hints (RFC 7009 §2.1, RFC 7662 §2.1).
const (
	HintAccessToken  = "access_token"
	HintRefreshToken = "refresh_token"
)

// foundToken is a token this server issued and still honours, as the
// revocation and introspection endpoints see it.
type foundToken struct {
	// access is set for an access token.
	access *tokens.AccessClaims
	// For a refresh token: its grant's storage key and record.
	key     string
	family  familyRecord
	expires time.Time
}

// clientID is the client the token was issued to.
func (f *foundToken) clientID() string {
	if f.access != nil {
		return f.access.ClientID
	}
	return f.family.ClientID
}

// lookupToken finds an active token of either kind. The hint only orders
// the search: a wrong or unknown hint never hides a token (RFC 7009
// §2.1, RFC 7662 §2.1). It returns nil, nil when the token is unknown,
// expired, revoked, already rotated, or garbage.
func (e *Engine) lookupToken(ctx context.Context, tok, hint string) (*foundToken, error) {
	if hint == HintRefreshToken {
		f, err := e.lookupRefresh(ctx, tok)
		if f != nil || err != nil {
			return f, err
		}
		return e.lookupAccess(tok)
	}
	if f, err := e.lookupAccess(tok); f != nil || err != nil {
		return f, err
	}
	return e.lookupRefresh(ctx, tok)
}

// lookupAccess finds an access token; its error is a storage failure
// only (an opaque token that could not be looked up), never a refusal.
func (e *Engine) lookupAccess(tok string) (*foundToken, error) {
	c, err := e.verifier.Verify(tok, time.Now())
	if errors.Is(err, storage.ErrUnavailable) {
		return nil, err
	}
	if err != nil {
		return nil, nil
	}
	return &foundToken{access: c}, nil
}

func (e *Engine) lookupRefresh(ctx context.Context, tok string) (*foundToken, error) {
	return e.findRefresh(ctx, tok, false)
}

// findRefresh finds a refresh token's grant. With stale, a token the
// grant has rotated away from finds it too (for revocation only: such a
// token is never active).
func (e *Engine) findRefresh(ctx context.Context, tok string, stale bool) (*foundToken, error) {
	_, key, secret, ok := splitRefreshToken(tok)
	if !ok {
		return nil, nil
	}
	var f *foundToken
	err := e.store.View(ctx, func(tx storage.Tx) error {
		f = nil
		var fam familyRecord
		rec, err := getJSON(tx, storage.KindFamilies, key, &fam)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		// A token still usable in the grace period is active too: a
		// client that lost the rotation's answer must be able to revoke
		// the grant with the token it holds.
		now := time.Now()
		deadline := e.refreshDeadline(&fam, rec.Expires)
		if fam.Revoked || !now.Before(deadline) || !stale && !(fam.isCurrent(secret) || fam.inGrace(secret, e.refreshGrace, now)) {
			return nil
		}
		f = &foundToken{key: key, family: fam, expires: deadline}
		return nil
	})
	return f, err
}

// authenticatedForm reads the form of a client's request to an endpoint
// other than the token endpoint (introspection, revocation, device
// authorization) and authenticates the client exactly as the token
// endpoint does.
func (e *Engine) authenticatedForm(w http.ResponseWriter, r *http.Request) (*Client, Form, *Error) {
	if err := e.requireTLS(r); err != nil {
		return nil, nil, err
	}
	form, oerr := ParseForm(w, r)
	if oerr != nil {
		return nil, nil, oerr
	}
	c, oerr := e.authenticateClient(r, form)
	if oerr != nil {
		return nil, nil, oerr
	}
	return c, form, nil
}

// clientRequest reads the form of an introspection or revocation request
// and authenticates its client exactly as the token endpoint does
// (RFC 7662 §2.1, RFC 7009 §2.1). The token parameter is required.
func (e *Engine) clientRequest(w http.ResponseWriter, r *http.Request) (*Client, Form, *Error) {
	c, form, oerr := e.authenticatedForm(w, r)
	if oerr != nil {
		return nil, nil, oerr
	}
	if form.Get("token") == "" {
		return nil, nil, errRequest("token is required")
	}
	return c, form, nil
}
