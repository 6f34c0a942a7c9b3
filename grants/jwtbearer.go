package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// GrantJWTBearer is the JWT bearer authorization grant (RFC 7523 §2.1).
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// TrustedIssuer is an identity provider whose signed JWTs the JWT bearer
// grant exchanges for access tokens.
type TrustedIssuer struct {
	// Issuer is the exact iss of the issuer's assertions.
	Issuer string
	// Keys verify the issuer's assertions, and nobody else's.
	Keys *JWKS
	// SubjectClaim names the claim that becomes the token's subject.
	// Default: sub.
	SubjectClaim string
	// AllowedClients may present this issuer's assertions.
	AllowedClients []string
	// Scopes may be granted on this issuer's assertions (further limited
	// by the client's scopes).
	Scopes []string
}

// validateTrustedIssuer checks a trusted issuer against the clients.
func validateTrustedIssuer(ti *TrustedIssuer, clients map[string]*Client) error {
	if ti.Issuer == "" {
		return errors.New("trust_issuer needs an issuer")
	}
	if ti.Keys == nil {
		return fmt.Errorf("trust_issuer %q: jwks, jwks_file or jwks_uri is required", ti.Issuer)
	}
	if len(ti.AllowedClients) == 0 {
		return fmt.Errorf("trust_issuer %q: allowed_clients is required", ti.Issuer)
	}
	for _, id := range ti.AllowedClients {
		c, ok := clients[id]
		if !ok {
			return fmt.Errorf("trust_issuer %q: allowed client %q is not defined", ti.Issuer, id)
		}
		if !c.Allows(GrantJWTBearer) {
			return fmt.Errorf("trust_issuer %q: client %q must list %s in grant_types", ti.Issuer, id, GrantJWTBearer)
		}
	}
	if ti.SubjectClaim == "" {
		ti.SubjectClaim = "sub"
	}
	return nil
}

// jwtBearer is the RFC 7523 §2.1 grant: a client presents a JWT signed by
// a trusted issuer and gets an access token for the JWT's subject. Every
// failure of the assertion is invalid_grant (RFC 7523 §3.1). No refresh
// token is issued: the client presents a fresh assertion instead.
func (e *Engine) jwtBearer(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	tok := form.Get("assertion")
	if tok == "" {
		return nil, errRequest("assertion is required")
	}
	bad := errCode(CodeInvalidGrant, "the assertion is invalid, expired, replayed or not trusted")
	fail := func(reason string) (*TokenResponse, *Error) {
		e.debug(ctx, "jwt-bearer assertion refused", zap.String("client_id", c.ID), zap.String("reason", reason))
		return nil, bad
	}
	ti, claims, subject, err := e.verifyTrustedJWT(ctx, tok, MaxAssertionLifetime)
	if err != nil {
		return fail(err.Error())
	}
	if !slices.Contains(ti.AllowedClients, c.ID) {
		return fail("this client may not present this issuer's assertions")
	}
	if claims.ID == "" || len(claims.ID) > maxJTIBytes {
		return fail("jti is required")
	}
	allowed := slices.DeleteFunc(slices.Clone(c.Scopes), func(s string) bool { return !slices.Contains(ti.Scopes, s) })
	scope, aud, oerr := e.scopeAndAudience(c, form, allowed)
	if oerr != nil {
		return nil, oerr
	}
	fresh, err := e.consumeAssertionID(ctx, "grant", ti.Issuer, claims.ID, time.Unix(*claims.ExpiresAt, 0).Add(assertionSkew))
	if err != nil {
		return nil, storageError(err)
	}
	if !fresh {
		return fail("jti already used")
	}
	return e.issueAccessToken(ctx, c, newAccessClaims(e.Issuer, subject, c.ID, aud, scope, time.Now(), e.AccessTokenTTL))
}

// verifyTrustedJWT verifies a JWT of a trusted issuer with that issuer's
// keys only, checks its claims (aud our issuer or token endpoint, exp
// within life when life is not zero) and maps its subject.
func (e *Engine) verifyTrustedJWT(ctx context.Context, tok string, life time.Duration) (*TrustedIssuer, *assertionClaims, string, error) {
	h, pb, err := splitAssertion(tok)
	if err != nil {
		return nil, nil, "", err
	}
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") {
		return nil, nil, "", errors.New("typ is not JWT")
	}
	var named struct {
		Issuer string `json:"iss"`
	}
	_ = json.Unmarshal(pb, &named)
	ti, ok := e.trusted[named.Issuer]
	if !ok {
		return nil, nil, "", errors.New("iss is not a trusted issuer")
	}
	now := time.Now()
	keys, err := ti.Keys.candidates(ctx, h.Kid, h.Alg, now)
	if err != nil {
		return nil, nil, "", err
	}
	payload, err := verifyAssertionWith(tok, keys)
	if err != nil {
		return nil, nil, "", err
	}
	claims, err := decodeAssertionClaims(payload)
	if err != nil {
		return nil, nil, "", err
	}
	if claims.Issuer != ti.Issuer {
		return nil, nil, "", errors.New("iss changed")
	}
	// The token endpoint URL is accepted besides the issuer: RFC 7523 §3
	// names it as an audience identifying the AS, and identity providers
	// configured for a token URL send it. An assertion is bound to its
	// client (allowed_clients) and single-use, so it cannot be replayed
	// to us from another server.
	if err := claims.checkTimes([]string{e.Issuer, e.Issuer + TokenPath}, now, life); err != nil {
		return nil, nil, "", err
	}
	subject := claims.Subject
	if ti.SubjectClaim != "sub" {
		var all map[string]any
		_ = json.Unmarshal(claims.raw, &all)
		subject, _ = all[ti.SubjectClaim].(string)
	}
	if subject == "" || len(subject) > 255 {
		return nil, nil, "", errors.New("no usable subject claim")
	}
	return ti, claims, subject, nil
}
