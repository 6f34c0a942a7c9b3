package gate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Bounds of RFC 7662 introspection.
const (
	// maxIntrospectBytes caps an introspection answer.
	maxIntrospectBytes = 64 << 10
	// inactiveTTL is the longest an inactive answer is reused: a token
	// just issued elsewhere is not refused for long, and a flood of junk
	// tokens still costs one request each only every so often.
	inactiveTTL = 10 * time.Second
	// maxIntrospectEntries bounds the cache per issuer; when full,
	// expired entries go first, then arbitrary ones.
	maxIntrospectEntries = 10000
)

// introspectCache remembers introspection answers by the SHA-256 of the
// token (never the token itself).
type introspectCache struct {
	ttl     time.Duration
	answers *expiringMap[[sha256.Size]byte, introspectEntry]
}

type introspectEntry struct {
	claims *tokens.AccessClaims // nil: inactive
	until  time.Time
}

func newIntrospectCache(ttl time.Duration) *introspectCache {
	return &introspectCache{ttl: ttl, answers: newExpiringMap[[sha256.Size]byte, introspectEntry](maxIntrospectEntries)}
}

func (c *introspectCache) get(sum [sha256.Size]byte, now time.Time) (introspectEntry, bool) {
	return c.answers.get(sum, now)
}

func (c *introspectCache) put(sum [sha256.Size]byte, e introspectEntry, now time.Time) {
	c.answers.put(sum, e, e.until, now)
}

func (c *introspectCache) len() int { return c.answers.len() }

// introspect checks an opaque token at the issuer's RFC 7662 endpoint,
// or in the cache. The answer must say active; an iss in it must be the
// issuer's; aud must contain the audience; exp, when given, must be in
// the future. An issuer that cannot be asked (down, wrong answer) is
// errIssuerUnavailable, not a refusal.
func (e *external) introspect(client *http.Client, token string, now time.Time) (*tokens.AccessClaims, error) {
	sum := sha256.Sum256([]byte(token))
	entry, ok := e.cache.get(sum, now)
	if !ok {
		var err error
		entry, err = e.askIntrospection(client, token, now)
		if err != nil {
			return nil, err
		}
		e.cache.put(sum, entry, now)
	}
	c := entry.claims
	if c == nil {
		return nil, &tokens.TokenError{Reason: "introspection: inactive"}
	}
	if !c.Audience.Contains(e.audience) {
		return nil, &tokens.TokenError{Reason: "introspection: audience mismatch"}
	}
	return c, e.checkTimes(c, now)
}

// askIntrospection POSTs the token to the introspection endpoint with
// client_secret_basic and turns the answer into a cache entry.
func (e *external) askIntrospection(client *http.Client, token string, now time.Time) (introspectEntry, error) {
	unavailable := func(err error) (introspectEntry, error) {
		return introspectEntry{}, &unavailableError{issuer: e.cfg.Issuer, err: err}
	}
	meta, err := e.keys.metadata(now)
	if err != nil {
		return introspectEntry{}, err
	}
	if meta.IntrospectionEndpoint == "" {
		return unavailable(errors.New("the discovery document has no introspection_endpoint"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), trustFetchTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, meta.IntrospectionEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return unavailable(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: the id and secret are form-encoded inside Basic.
	req.SetBasicAuth(url.QueryEscape(e.clientID), url.QueryEscape(e.secret))
	resp, err := client.Do(req)
	if err != nil {
		// The error names the endpoint, never the token (it is in the body).
		return unavailable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectBytes+1))
	if err != nil {
		return unavailable(fmt.Errorf("introspection: %v", err))
	}
	if resp.StatusCode != http.StatusOK {
		return unavailable(fmt.Errorf("introspection: status %d (check the introspect client id and secret)", resp.StatusCode))
	}
	if len(body) > maxIntrospectBytes {
		return unavailable(errors.New("introspection: answer too large"))
	}
	var head struct {
		Active    *bool           `json:"active"`
		Iss       string          `json:"iss"`
		TokenType json.RawMessage `json:"token_type"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.Active == nil {
		return unavailable(errors.New("introspection: the answer is not RFC 7662 JSON with active"))
	}
	inactive := introspectEntry{until: now.Add(min(inactiveTTL, e.cache.ttl))}
	if !*head.Active {
		return inactive, nil
	}
	if head.Iss != "" && head.Iss != e.cfg.Issuer {
		return inactive, nil
	}
	// The issuer introspects its refresh (and sometimes ID) tokens too:
	// an answer that says it is about another kind of token is no
	// access token, whatever else it says.
	if head.TokenType != nil && !accessTokenType(head.TokenType) {
		return inactive, nil
	}
	if notAnAccessToken(body) != "" {
		return inactive, nil
	}
	c, err := externalAccessClaims(body)
	if err != nil {
		return inactive, nil
	}
	if c.Issuer == "" {
		c.Issuer = e.cfg.Issuer
	}
	until := now.Add(e.cache.ttl)
	if c.ExpiresAt > 0 {
		if exp := time.Unix(c.ExpiresAt, 0); exp.Before(until) {
			until = exp
		}
	}
	if !now.Before(until) {
		return inactive, nil // expired already
	}
	return introspectEntry{claims: c, until: until}, nil
}

// accessTokenType reports whether an introspection answer's token_type
// names an access token: access_token (the RFC 7009 hint's name) or
// Bearer (RFC 6750), in any case.
func accessTokenType(raw json.RawMessage) bool {
	var tt string
	if json.Unmarshal(raw, &tt) != nil {
		return false
	}
	return strings.EqualFold(tt, "access_token") || strings.EqualFold(tt, "bearer")
}
