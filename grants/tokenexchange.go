package grants

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
	"go.uber.org/zap"
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
}

// tokenExchange is the RFC 8693 grant: the client presents a subject
// token (and optionally an actor token) and gets an access token for the
// same subject, for a target its exchange policy allows, with a scope
// never wider than the subject token's. Only access tokens are issued.
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
	aud, oerr := e.exchangeTarget(c, form.Get("audience"), form.Get("resource"))
	if oerr != nil {
		return nil, oerr
	}
	now := time.Now()
	subj, err := e.readExchangedToken(ctx, subjTok, subjType, now)
	if err != nil {
		e.debug(ctx, "token exchange: subject token refused", zap.String("client_id", c.ID), zap.String("reason", err.Error()))
		return nil, errRequest("the subject_token is invalid, expired or of another type")
	}
	act := subj.act
	if actTok != "" {
		actor, err := e.readExchangedToken(ctx, actTok, actType, now)
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
	}
	allowed := slices.DeleteFunc(slices.Clone(c.Scopes), func(s string) bool { return !slices.Contains(subj.scope, s) })
	scope, oerr := grantScope(form.Get("scope"), allowed)
	if oerr != nil {
		return nil, oerr
	}
	at := newAccessClaims(e.Issuer, subj.subject, c.ID, aud, scope, now, e.AccessTokenTTL)
	at.Act = act
	resp, oerr := e.issueAccessToken(ctx, c, at)
	if oerr != nil {
		return nil, oerr
	}
	resp.IssuedTokenType = TokenTypeAccessToken
	return resp, nil
}

// exchangeTarget checks audience and resource against the client's
// exchange policy (invalid_target otherwise) and returns the new token's
// audience: the requested targets, or the client's default audience.
func (e *Engine) exchangeTarget(c *Client, audience, resource string) ([]string, *Error) {
	var aud []string
	if resource != "" {
		u, err := url.Parse(resource)
		if err != nil || !u.IsAbs() || strings.Contains(resource, "#") || !slices.Contains(c.Exchange.Resources, resource) {
			return nil, errCode(CodeInvalidTarget, "the requested resource is not allowed for this client")
		}
		aud = append(aud, resource)
	}
	if audience != "" {
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
// type: our access tokens (with revocation), our ID tokens, or JWTs of
// trusted issuers.
func (e *Engine) readExchangedToken(ctx context.Context, tok, typ string, now time.Time) (*exchangedToken, error) {
	var raw []byte
	out := &exchangedToken{}
	switch typ {
	case TokenTypeAccessToken:
		c, err := e.Verifier.Verify(tok, now)
		if err != nil {
			return nil, err
		}
		out.subject, out.scope, raw = c.Subject, c.Scopes(), c.raw
	case TokenTypeIDToken:
		payload, sub, err := e.verifyOurIDToken(tok, now)
		if err != nil {
			return nil, err
		}
		out.subject, raw = sub, payload
	case TokenTypeJWT:
		ti, claims, sub, err := e.verifyTrustedJWT(ctx, tok, 0)
		if err != nil {
			return nil, err
		}
		out.subject, out.scope, raw = sub, ti.Scopes, claims.raw
	default:
		return nil, errors.New("unsupported token type")
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

// verifyOurIDToken checks an ID token this server issued: typ JWT, our
// key by kid with its pinned algorithm, our issuer, not expired. It
// returns the payload and the subject.
func (e *Engine) verifyOurIDToken(tok string, now time.Time) ([]byte, string, error) {
	h, _, err := splitAssertion(tok)
	if err != nil {
		return nil, "", err
	}
	if h.Typ != "JWT" {
		return nil, "", errors.New("typ is not JWT")
	}
	key, ok := e.keyRing().Lookup(h.Kid)
	if !ok {
		return nil, "", errors.New("unknown kid")
	}
	payload, err := jws.VerifyCompactFast(key.public, []byte(tok), key.Alg)
	if err != nil {
		return nil, "", errors.New("signature does not verify")
	}
	var c IDClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, "", errors.New("claims are malformed")
	}
	if c.Issuer != e.Issuer || c.Subject == "" || c.ExpiresAt <= 0 {
		return nil, "", errors.New("not our ID token")
	}
	if now.Unix()-int64(e.Verifier.Leeway/time.Second) > c.ExpiresAt {
		return nil, "", errors.New("expired")
	}
	return payload, c.Subject, nil
}
