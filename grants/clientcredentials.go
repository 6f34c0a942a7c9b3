package grants

import (
	"context"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// clientCredentials is the RFC 6749 §4.4 grant: the client acts on its
// own behalf, so the token's subject is the client itself and no refresh
// token is issued.
func (e *Engine) clientCredentials(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	scope, aud, oerr := e.scopeAndAudience(c, form, c.Scopes)
	if oerr != nil {
		return nil, oerr
	}
	return e.issueAccessToken(ctx, c, tokens.NewAccessClaims(e.issuer, c.ID, c.ID, aud, scope, time.Now(), e.accessTokenTTL))
}

// scopeAndAudience decides a new token's scope, within allowed, and its
// audience, from the request's scope and resource parameters.
func (e *Engine) scopeAndAudience(c *Client, form Form, allowed []string) (scope, aud []string, oerr *Error) {
	if scope, oerr = grantScope(form.Get("scope"), allowed); oerr != nil {
		return nil, nil, oerr
	}
	if aud, oerr = e.audienceFor(c, form.Get("resource")); oerr != nil {
		return nil, nil, oerr
	}
	return scope, aud, nil
}

// audienceFor picks the token audience: the requested resource (RFC 8707),
// which must be one the client is registered for (compared as
// canonResource does, and then spelt as registered), or else the client's
// registered audience, or else the issuer itself.
func (e *Engine) audienceFor(c *Client, resource string) ([]string, *Error) {
	if resource != "" {
		i := indexResource(c.Audience, resource)
		if i < 0 {
			return nil, errCode(CodeInvalidTarget, "the requested resource is not allowed for this client")
		}
		return []string{c.Audience[i]}, nil
	}
	if len(c.Audience) > 0 {
		return c.Audience, nil
	}
	return []string{e.issuer}, nil
}
