package grants

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

var errBadPassword = errCode(CodeInvalidGrant, "the user name or password is wrong")

// password is the resource owner password credentials grant (RFC 6749
// §4.3), offered only to clients registered for it. It checks the same
// users with the same bcrypt comparison as the login page and shares its
// throttle: failures count per user name and per client address, and an
// unknown user fails exactly like a wrong password.
func (e *Engine) password(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	name, pw := form.Get("username"), form.Get("password")
	if name == "" || pw == "" {
		return nil, errRequest("username and password are required")
	}
	scope, aud, oerr := e.scopeAndAudience(c, form, c.Scopes)
	if oerr != nil {
		return nil, oerr
	}
	ip := clientIPOf(ctx)
	if len(name) > maxSignInName || len(pw) > maxSignInPassword {
		e.oversizedSignIn(ctx, signInViaPassword, c.ID, name, ip)
		return nil, errBadPassword
	}
	u, err := e.signIn(ctx, signInViaPassword, c.ID, name, pw, ip)
	switch {
	case errors.Is(err, errSignInLocked):
		// 429 with Retry-After tells a client when to try again.
		oerr := errWithStatus(CodeInvalidGrant, http.StatusTooManyRequests, "too many failed sign-ins; try again later")
		oerr.RetryAfter = retryAfter(err, time.Now())
		return nil, oerr
	case errors.Is(err, ErrUserNotFound):
		return nil, errBadPassword
	case err != nil:
		return nil, storageError(err)
	}
	now := time.Now()
	var (
		at *tokens.AccessClaims
		rt string
	)
	err = e.store.Batch(ctx, func(tx storage.Tx) error {
		var err error
		at, rt, err = e.startGrant(tx, c, tokens.RandomID(16), u.Subject(), scope, aud, now.Unix(), now, refreshBinding(ctx, c), refreshCertBinding(ctx, c))
		return err
	})
	if err != nil {
		return nil, storageError(err)
	}
	return e.userTokens(ctx, c, at, rt, "", now.Unix())
}
