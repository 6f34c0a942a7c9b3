package grants

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Token exchange (RFC 8693).
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// Token type identifiers (RFC 8693 §3).
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

// ExchangePolicy says which targets a client may ask token exchange for.
type ExchangePolicy struct {
	// Audiences the client may name with the audience parameter.
	Audiences []string
	// Resources the client may name with the resource parameter.
	Resources []string
}

// exchangedToken is what a verified subject or actor token tells us.
type exchangedToken struct {
	subject string
	scope   []string
	act     map[string]any // the token's own act claim, if any
	mayAct  map[string]any
	// exp is the token's expiry: nothing exchanged from it outlives it.
	exp int64
	// clients are the token's client and those it was derived from:
	// revoking any of them revokes what is exchanged from it.
	clients []string
	// tokens are the ids of the access token and those it was derived
	// from: revoking any of them revokes what is exchanged from it.
	tokens []string
	// grant is the grant id (gid) the token belongs to, carried into the
	// exchanged token so that revoking the grant revokes both.
	grant string
	// extIss and extSub say which external provider asserted the subject.
	extIss, extSub string
	// assertion is a trusted issuer's JWT, spent once the exchange is
	// known to succeed.
	assertion *assertionGrant
}

// tokenExchange is the RFC 8693 grant: the client presents a subject
// token (and optionally an actor token) and gets an access token for the
// same subject, for a target its exchange policy allows, with a scope
// never wider than the subject token's. Only access tokens are issued.
//
// The exchanged token stays inside the rules of the tokens it came from:
// it carries the subject token's grant id (revoking the grant, the
// subject, the user or the client revokes it too), it expires no later
// than the subject and actor tokens (so re-exchanging cannot extend a
// chain), and the subject must still exist. Accepted subject and actor
// tokens: our access tokens; our ID tokens, only from the client they
// were issued to (aud and azp); and JWTs of trusted issuers under exactly
// the jwt-bearer grant's rules (allowed_clients, single-use jti, exp at
// most MaxAssertionLifetime ahead, map_subject).
func (e *Engine) tokenExchange(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	subjTok, subjType := form.Get("subject_token"), form.Get("subject_token_type")
	if subjTok == "" || subjType == "" {
		return nil, errRequest("subject_token and subject_token_type are required")
	}
	actTok, actType := form.Get("actor_token"), form.Get("actor_token_type")
	if (actTok == "") != (actType == "") {
		return nil, errRequest("actor_token and actor_token_type go together")
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != TokenTypeAccessToken {
		return nil, errRequest("only access tokens can be requested")
	}
	aud, oerr := e.exchangeTarget(c, form.Values("audience"), form.Values("resource"))
	if oerr != nil {
		return nil, oerr
	}
	now := time.Now()
	subj, err := e.readExchangedToken(ctx, c, subjTok, subjType, now)
	if oerr := asStorageError(err); oerr != nil {
		return nil, oerr
	}
	var bound *boundTokenError
	if errors.As(err, &bound) {
		return nil, errRequest("the subject_token " + bound.reason)
	}
	if err != nil {
		e.debug(ctx, "token exchange: subject token refused", zap.String("client_id", c.ID), zap.String("reason", err.Error()))
		return nil, errRequest("the subject_token is invalid, expired or of another type")
	}
	act := subj.act
	exp := min(now.Add(e.accessTokenTTL).Unix(), subj.exp)
	var actor *exchangedToken
	if actTok != "" {
		actor, err = e.readExchangedToken(ctx, c, actTok, actType, now)
		if oerr := asStorageError(err); oerr != nil {
			return nil, oerr
		}
		if errors.As(err, &bound) {
			return nil, errRequest("the actor_token " + bound.reason)
		}
		if err != nil {
			e.debug(ctx, "token exchange: actor token refused", zap.String("client_id", c.ID), zap.String("reason", err.Error()))
			return nil, errRequest("the actor_token is invalid, expired or of another type")
		}
		if subj.mayAct != nil && subj.mayAct["sub"] != actor.subject {
			return nil, errRequest("the subject token does not allow this actor (may_act)")
		}
		// The current actor is outermost; earlier ones nest inside.
		act = map[string]any{"sub": actor.subject}
		if subj.act != nil {
			act["act"] = subj.act
		}
		exp = min(exp, actor.exp)
	}
	allowed := slices.DeleteFunc(slices.Clone(c.Scopes), func(s string) bool { return !slices.Contains(subj.scope, s) })
	scope, oerr := grantScope(form.Get("scope"), allowed)
	if oerr != nil {
		return nil, oerr
	}
	for _, t := range []*exchangedToken{subj, actor} {
		if t != nil && t.assertion != nil {
			if oerr := e.spendAssertion(ctx, c, *t.assertion); oerr != nil {
				if oerr.Code == CodeInvalidGrant {
					// RFC 8693 §2.2.2: a bad subject or actor token is
					// invalid_request.
					return nil, errRequest("the subject_token or actor_token was already used")
				}
				return nil, oerr
			}
		}
	}
	at := tokens.NewAccessClaims(e.issuer, subj.subject, c.ID, aud, scope, now, e.accessTokenTTL)
	at.ExpiresAt = exp
	at.Act = act
	at.Grant = subj.grant
	at.ExtIss, at.ExtSub = subj.extIss, subj.extSub
	for _, t := range []*exchangedToken{subj, actor} {
		if t == nil {
			continue
		}
		for _, id := range t.clients {
			if id != c.ID && !slices.Contains(at.FromClients, id) {
				at.FromClients = append(at.FromClients, id)
			}
		}
		for _, id := range t.tokens {
			if !slices.Contains(at.FromTokens, id) {
				at.FromTokens = append(at.FromTokens, id)
			}
		}
	}
	resp, oerr := e.issueAccessToken(ctx, c, at)
	if oerr != nil {
		return nil, oerr
	}
	resp.IssuedTokenType = TokenTypeAccessToken
	return resp, nil
}

// exchangeTarget checks every audience and resource (each may be given
// more than once, RFC 8693 §2.1) against the client's exchange policy
// (invalid_target otherwise) and returns the new token's audience: the
// requested targets, or the client's default audience.
func (e *Engine) exchangeTarget(c *Client, audiences, resources []string) ([]string, *Error) {
	var aud []string
	for _, resource := range resources {
		u, err := url.Parse(resource)
		i := indexResource(c.Exchange.Resources, resource)
		if err != nil || !u.IsAbs() || strings.Contains(resource, "#") || i < 0 {
			return nil, errCode(CodeInvalidTarget, "the requested resource is not allowed for this client")
		}
		// The token's aud is spelt as the policy registers it.
		if r := c.Exchange.Resources[i]; !slices.Contains(aud, r) {
			aud = append(aud, r)
		}
	}
	for _, audience := range audiences {
		if !slices.Contains(c.Exchange.Audiences, audience) {
			return nil, errCode(CodeInvalidTarget, "the requested audience is not allowed for this client")
		}
		if !slices.Contains(aud, audience) {
			aud = append(aud, audience)
		}
	}
	if aud == nil {
		return e.audienceFor(c, "")
	}
	return aud, nil
}

// readExchangedToken verifies a subject or actor token of the declared
// type, presented by client c: our access tokens (with revocation), our
// ID tokens issued to c (with revocation), or JWTs of trusted issuers
// (by the jwt-bearer rules). Our own tokens get no expiry leeway, and a
// local subject must still exist.
func (e *Engine) readExchangedToken(ctx context.Context, c *Client, tok, typ string, now time.Time) (*exchangedToken, error) {
	var raw []byte
	out := &exchangedToken{}
	switch typ {
	case TokenTypeAccessToken:
		a, err := e.verifier.Verify(tok, now)
		if err != nil {
			return nil, err
		}
		out.subject, out.scope, raw = a.Subject, a.Scopes(), a.Raw()
		out.exp, out.grant, out.extIss, out.extSub = a.ExpiresAt, a.Grant, a.ExtIss, a.ExtSub
		out.clients = append(slices.Clone(a.FromClients), a.ClientID)
		out.tokens = append(slices.Clone(a.FromTokens), a.ID)
	case TokenTypeIDToken:
		payload, idc, err := e.verifyOurIDToken(tok, now)
		if err != nil {
			return nil, err
		}
		// An ID token is meant for its relying party alone (OIDC Core
		// §2): only that client may exchange it.
		if idc.Audience != c.ID || (idc.AZP != "" && idc.AZP != c.ID) {
			return nil, errors.New("the ID token was issued to another client")
		}
		if e.revocations.RevokedClaims(&tokens.AccessClaims{Subject: idc.Subject, ClientID: idc.Audience, Grant: idc.Grant, IssuedAt: idc.IssuedAt}) {
			return nil, errors.New("the ID token's grant, user or client was revoked")
		}
		out.subject, out.exp, out.grant, raw = idc.Subject, idc.ExpiresAt, idc.Grant, payload
	case TokenTypeJWT:
		g, err := e.trustedAssertion(ctx, c, tok)
		if err != nil {
			return nil, err
		}
		out.subject, out.scope, raw = g.subject, e.trusted[g.issuer].Scopes, g.raw
		out.exp, out.extIss, out.extSub, out.assertion = g.exp, g.issuer, g.extSub, &g
	default:
		return nil, errors.New("unsupported token type")
	}
	if out.exp <= now.Unix() {
		return nil, errors.New("expired")
	}
	// A sender-constrained token only with proof of possession
	// (exchangebinding.go).
	if err := checkExchangedCnf(ctx, raw); err != nil {
		return nil, err
	}
	if err := e.subjectExists(ctx, out.subject); err != nil {
		return nil, err
	}
	var extra struct {
		Act    map[string]any `json:"act"`
		MayAct map[string]any `json:"may_act"`
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return nil, errors.New("act or may_act is malformed")
	}
	out.act, out.mayAct = extra.Act, extra.MayAct
	return out, nil
}

// subjectExists checks that a token's subject still exists: a local user
// or a client. External subjects have no local record; revocation by
// subject covers them.
func (e *Engine) subjectExists(ctx context.Context, sub string) error {
	if IsExternalSubject(sub) {
		return nil
	}
	_, err := e.users.LookupSubject(ctx, sub)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrUserNotFound) {
		return storageFailure{err}
	}
	cl, err := e.lookupClient(ctx, sub)
	if err != nil {
		return storageFailure{err}
	}
	if cl != nil {
		return nil
	}
	return errors.New("the subject no longer exists")
}

// verifyOurIDToken checks an ID token this server issued: typ JWT, our
// key by kid with its pinned algorithm, our issuer, not expired (no
// leeway: the token is ours). It returns the payload and the claims.
func (e *Engine) verifyOurIDToken(tok string, now time.Time) ([]byte, *IDClaims, error) {
	payload, err := e.keyRing().VerifySignature(tok, "JWT")
	if err != nil {
		return nil, nil, err
	}
	var c IDClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, nil, errors.New("claims are malformed")
	}
	if c.Issuer != e.issuer || c.Subject == "" || c.ExpiresAt <= 0 || c.IssuedAt <= 0 {
		return nil, nil, errors.New("not our ID token")
	}
	if now.Unix() >= c.ExpiresAt {
		return nil, nil, errors.New("expired")
	}
	return payload, &c, nil
}
