package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
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
	// MapSubject says what the asserted subject becomes. MapSubjectExternal
	// (the default, "external"): the namespaced subject ext#…, never a
	// local user or client, with the asserted issuer and subject in the
	// ext_iss and ext_sub claims. MapSubjectLocalUsers ("local_users"):
	// the asserted subject names a local user, whose sub the token gets;
	// a subject that is not an existing local user is refused.
	MapSubject string
}

// validateTrustedIssuer checks a trusted issuer against the clients.
func validateTrustedIssuer(ti *TrustedIssuer, clients map[string]*Client) error {
	if ti.Issuer == "" {
		return errors.New("trust_issuer needs an issuer")
	}
	if err := checkProviderID("trust_issuer", ti.Issuer); err != nil {
		return err
	}
	if ti.Keys == nil {
		return fmt.Errorf("trust_issuer %q: jwks, jwks_file or jwks_uri is required", ti.Issuer)
	}
	if err := checkAllowedClients(fmt.Sprintf("trust_issuer %q", ti.Issuer), ti.AllowedClients, GrantJWTBearer, clients); err != nil {
		return err
	}
	if ti.SubjectClaim == "" {
		ti.SubjectClaim = "sub"
	}
	var err error
	ti.MapSubject, err = validateMapSubject(fmt.Sprintf("trust_issuer %q", ti.Issuer), ti.MapSubject)
	return err
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
	g, err := e.trustedAssertion(ctx, c, tok)
	if oerr := asStorageError(err); oerr != nil {
		return nil, oerr
	}
	if err != nil {
		return e.assertionRefused(ctx, c, GrantJWTBearer, err.Error())
	}
	return e.grantForAssertion(ctx, c, form, g)
}

// trustedAssertion checks a trusted issuer's JWT presented by client c,
// by the rules of the JWT bearer grant: the issuer's keys, aud, exp
// within MaxAssertionLifetime, a jti, a client in allowed_clients, and
// the subject mapped by the issuer's map_subject. The jwt-bearer grant
// and token exchange (a JWT subject or actor token) both use it, so the
// two cannot drift apart. The caller spends the jti (spendAssertion)
// once the rest of its request is known to be good.
func (e *Engine) trustedAssertion(ctx context.Context, c *Client, tok string) (assertionGrant, error) {
	ti, claims, subject, err := e.verifyTrustedJWT(ctx, tok, MaxAssertionLifetime)
	if err != nil {
		return assertionGrant{}, err
	}
	if !slices.Contains(ti.AllowedClients, c.ID) {
		return assertionGrant{}, errors.New("this client may not present this issuer's assertions")
	}
	if claims.ID == "" || len(claims.ID) > maxJTIBytes {
		return assertionGrant{}, errors.New("jti is required")
	}
	sub, err := e.mapSubject(ctx, ti.Issuer, subject, ti.MapSubject)
	if err != nil {
		return assertionGrant{}, err
	}
	return assertionGrant{
		grant: GrantJWTBearer, namespace: "grant", issuer: ti.Issuer, id: claims.ID,
		subject: sub, extSub: subject, exp: *claims.ExpiresAt,
		expires: time.Unix(*claims.ExpiresAt, 0).Add(assertionSkew), scopes: ti.Scopes, raw: claims.raw,
	}, nil
}

// mapSubject turns a subject asserted by an external issuer into the
// token's sub, by the issuer's map_subject (see the identity namespace in
// subject.go).
func (e *Engine) mapSubject(ctx context.Context, issuer, asserted, mapping string) (string, error) {
	// The subject travels in ext_sub, headers, logs and audit records,
	// where a newline or a 0 byte could forge or cut entries, and an
	// invisible or direction-changing character could disguise one.
	if strings.ContainsFunc(asserted, invisibleRune) || strings.TrimSpace(asserted) != asserted {
		return "", errors.New("the asserted subject contains control, format or separator characters")
	}
	if mapping != MapSubjectLocalUsers {
		return externalSubject(issuer, asserted), nil
	}
	u, err := e.users.Lookup(ctx, asserted)
	if errors.Is(err, ErrUserNotFound) {
		return "", errors.New("the asserted subject is not a local user (map_subject local_users)")
	}
	if err != nil {
		return "", storageFailure{fmt.Errorf("looking up the asserted user: %w", err)}
	}
	return u.Subject(), nil
}

// checkAllowedClients checks that an assertion issuer's allowed clients
// exist and are registered for its grant.
func checkAllowedClients(owner string, ids []string, grant string, clients map[string]*Client) error {
	if len(ids) == 0 {
		return fmt.Errorf("%s: allowed_clients is required", owner)
	}
	for _, id := range ids {
		c, ok := clients[id]
		if !ok {
			return fmt.Errorf("%s: allowed client %q is not defined", owner, id)
		}
		if !c.Allows(grant) {
			return fmt.Errorf("%s: client %q must list %s in grant_types", owner, id, grant)
		}
	}
	return nil
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
	if err := claims.checkTimes([]string{e.issuer, e.issuer + TokenPath}, now, life); err != nil {
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

// invisibleRune reports control characters, format characters (zero-width,
// bidi overrides, BOM) and line or paragraph separators.
func invisibleRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
