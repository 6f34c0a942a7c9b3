package grants

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// assertionGrant is what an assertion grant (JWT or SAML bearer) learned
// from a verified assertion.
type assertionGrant struct {
	grant, namespace, issuer, id string
	// subject is the token's sub (mapped); extSub what the issuer asserted.
	subject, extSub string
	// exp is the assertion's own expiry (Unix seconds).
	exp int64
	// raw is a JWT assertion's payload, for act and may_act in exchange.
	raw []byte
	// expires is when the assertion id may be forgotten.
	expires time.Time
	// scopes may be granted on the issuer's assertions.
	scopes []string
}

// grantForAssertion finishes an assertion grant: the scope within both
// the client's and the issuer's, the assertion id spent once, an access
// token for the subject and no refresh token.
func (e *Engine) grantForAssertion(ctx context.Context, c *Client, form Form, g assertionGrant) (*TokenResponse, *Error) {
	allowed := slices.DeleteFunc(slices.Clone(c.Scopes), func(s string) bool { return !slices.Contains(g.scopes, s) })
	scope, aud, oerr := e.scopeAndAudience(c, form, allowed)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := e.spendAssertion(ctx, c, g); oerr != nil {
		return nil, oerr
	}
	at := tokens.NewAccessClaims(e.issuer, g.subject, c.ID, aud, scope, time.Now(), e.accessTokenTTL)
	// The token never outlives the assertion it was derived from.
	at.ExpiresAt = min(at.ExpiresAt, g.exp)
	at.ExtIss, at.ExtSub = g.issuer, g.extSub
	return e.issueAccessToken(ctx, c, at)
}

// spendAssertion records the assertion's id as used: invalid_grant when
// it already was.
func (e *Engine) spendAssertion(ctx context.Context, c *Client, g assertionGrant) *Error {
	fresh, err := e.consumeAssertionID(ctx, g.namespace, g.issuer, g.id, g.expires)
	if err != nil {
		return storageError(err)
	}
	if !fresh {
		_, oerr := e.assertionRefused(ctx, c, g.grant, "assertion id already used")
		return oerr
	}
	return nil
}

// errBadAssertion is every refusal of an assertion grant's assertion; the
// reason goes to the debug log only.
var errBadAssertion = errCode(CodeInvalidGrant, "the assertion is invalid, expired, replayed or not trusted")

func (e *Engine) assertionRefused(ctx context.Context, c *Client, grant, reason string) (*TokenResponse, *Error) {
	e.debug(ctx, "assertion refused", zap.String("grant_type", grant), zap.String("client_id", c.ID), zap.String("reason", reason))
	return nil, errBadAssertion
}
