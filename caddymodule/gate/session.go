package gate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// sessionData is what a session cookie holds, sealed (JSON, short keys
// to keep the cookie small).
type sessionData struct {
	// AccessToken is the built-in provider's access token (a JWT the
	// gate verifies on every request: revoking the grant, user or client
	// ends the session at once). Empty in external mode.
	AccessToken string `json:"at,omitempty"`
	// RefreshToken renews the session (both modes, when given).
	RefreshToken string `json:"rt,omitempty"`
	// Identity is the subset of the ID token's claims the gate needs
	// (sub, preferred_username, name, email, the groups claim, the claims
	// forward_header names) plus iss, client_id and scope.
	Identity json.RawMessage `json:"id"`
	// IDToken is the raw ID token, for id_token_hint at logout, kept only
	// when the cookie stays within maxCookieValue with it.
	IDToken string `json:"idt,omitempty"`
	// Expiry is when the access token expires (unix seconds); 0 if the
	// provider said nothing.
	Expiry int64 `json:"exp,omitempty"`
	// End is when an external session ends (unix seconds): sign-in time
	// plus session_ttl. 0 in built-in mode, where the grant decides.
	End int64 `json:"end,omitempty"`
	// Issued is when the access token was obtained (unix seconds), so a
	// short-lived one is refreshed within its lifetime, not on every
	// request.
	Issued int64 `json:"iat,omitempty"`
	// SID names the sign-in: every cookie of it carries the same through
	// its refreshes, so signing out with any of them ends all of them on
	// this node.
	SID string `json:"sid,omitempty"`
}

// session is an opened session cookie, cached by the cookie's hash.
type session struct {
	data      sessionData
	claims    *tokens.AccessClaims // the identity, as a token's claims
	chainOnce sync.Once            // makes chainHash (loggedout.go)
	chainHash [32]byte
}

// maxCookieValue bounds a sealed session cookie's value: browsers keep
// at least 4096 bytes per cookie, name and attributes included.
const maxCookieValue = 3800

// refreshBefore is how long before its access token expires a session
// is refreshed (at most half the token's lifetime).
const refreshBefore = time.Minute

// tokenTimes are when a provider's access token expires and was issued
// (unix seconds, 0 if unknown), both on the clock that read expires_in.
func tokenTimes(tok *oauth2.Token) (expiry, issued int64) {
	if tok.Expiry.IsZero() {
		return 0, 0
	}
	expiry = tok.Expiry.Unix()
	if tok.ExpiresIn > 0 {
		issued = expiry - tok.ExpiresIn
	}
	return expiry, issued
}

// refreshDue reports whether the session's access token expires within
// refreshBefore, or within half its lifetime when that is shorter: a
// token of 10 s is refreshed after 5 s, not on every request.
func (d *sessionData) refreshDue(now time.Time) bool {
	if d.Expiry == 0 {
		return false
	}
	before := int64(refreshBefore / time.Second)
	if d.Issued != 0 && d.Expiry > d.Issued {
		before = min(before, (d.Expiry-d.Issued)/2)
	}
	return now.Unix()+before >= d.Expiry
}

// sessionCacheSize bounds the cache of opened sessions.
const sessionCacheSize = 10000

// sessionCache holds opened sessions by the hash of their cookie, so
// that the hot path neither opens nor parses the cookie.
type sessionCache struct {
	mu sync.RWMutex
	m  map[[32]byte]*session
}

func newSessionCache() *sessionCache { return &sessionCache{m: map[[32]byte]*session{}} }

func (c *sessionCache) get(k [32]byte) *session {
	c.mu.RLock()
	s := c.m[k]
	c.mu.RUnlock()
	return s
}

func (c *sessionCache) put(k [32]byte, s *session) {
	c.mu.Lock()
	if len(c.m) >= sessionCacheSize {
		for old := range c.m { // an arbitrary one: map order is random
			delete(c.m, old)
			break
		}
	}
	c.m[k] = s
	c.mu.Unlock()
}

func (c *sessionCache) remove(k [32]byte) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// refresher makes one refresh per session at a time and remembers, for a
// short while, which cookie replaced which: the other requests of a page
// that carried the old cookie get the new session instead of presenting
// the rotated refresh token again, which the provider would take for
// reuse and answer by revoking the grant.
type refresher struct {
	group   singleflight.Group
	rotated *expiringMap[[32]byte, rotation]
}

type rotation struct {
	value string
	s     *session
}

// rotatedFor is how long an old cookie is answered with its successor.
const rotatedFor = 30 * time.Second

// maxRotated bounds the old→new map.
const maxRotated = 10000

func (f *refresher) init() { f.rotated = newExpiringMap[[32]byte, rotation](maxRotated) }

func (f *refresher) successor(k [32]byte, now time.Time) (rotation, bool) {
	return f.rotated.get(k, now)
}

func (f *refresher) remember(k [32]byte, r rotation, now time.Time) {
	f.rotated.put(k, r, now.Add(rotatedFor), now)
}

// sessionCookieName is the session cookie's name for this request:
// __Host- prefixed over TLS, so that no other host (a sibling subdomain)
// and no plain-HTTP answer can set it.
func (ls *loginState) sessionCookieName(r *http.Request) string {
	if ls.overTLS(r) {
		return "__Host-" + ls.cookieName
	}
	return ls.cookieName
}

// loginCookieName is the name of sign-in slot i.
func (ls *loginState) loginCookieName(r *http.Request, i int) string {
	return ls.sessionCookieName(r) + "_login" + strconv.Itoa(i)
}

// setCookie sets one of the gate's cookies; maxAge 0 makes a cookie of
// the browser session.
func (ls *loginState) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	// One answer sets a cookie once: a later value (a session refreshed
	// after its successor was adopted, or cleared) replaces an earlier.
	if set := w.Header()["Set-Cookie"]; len(set) > 0 {
		kept := set[:0]
		for _, c := range set {
			if !strings.HasPrefix(c, name+"=") {
				kept = append(kept, c)
			}
		}
		w.Header()["Set-Cookie"] = kept
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: ls.overTLS(r), SameSite: http.SameSiteLaxMode})
}

func (ls *loginState) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	ls.setCookie(w, r, name, "", -1)
}

// openSession checks the session cookie's value: from the cache, or
// opened and parsed once. It refreshes a session whose access token
// expires soon and sets the new cookie. A nil session with status 0
// means no valid session; 503 means the provider or storage is down.
func (p *Protect) openSession(w http.ResponseWriter, r *http.Request, value string) (*session, int) {
	return p.checkSession(w, r, value, false)
}

// checkSession is openSession; an adopted session (the successor of a
// replaced cookie, minted moments ago) is checked but not refreshed
// again, so parallel requests never start a chain of refreshes.
func (p *Protect) checkSession(w http.ResponseWriter, r *http.Request, value string, adopted bool) (*session, int) {
	ls := p.login
	if len(value) > maxCookieValue+200 {
		return nil, 0
	}
	now := ls.now()
	key := cookieHash(value)
	s := ls.sessions.get(key)
	if s == nil {
		rp, err := ls.relyingParty(r.Context())
		if err != nil {
			return nil, http.StatusServiceUnavailable
		}
		if s = rp.openCookie(value); s == nil {
			return nil, 0
		}
		ls.sessions.put(key, s)
	}
	if signedOut(key, s, now) {
		ls.sessions.remove(key)
		return nil, 0
	}
	if s.data.End != 0 && now.Unix() >= s.data.End {
		ls.sessions.remove(key)
		return nil, 0
	}
	if !adopted && s.data.refreshDue(now) &&
		(s.data.RefreshToken != "" || !ls.external) {
		return p.refreshSession(w, r, key, s)
	}
	if !ls.external {
		if st := p.checkAccessToken(s.data.AccessToken, now); st != 0 {
			if st != http.StatusServiceUnavailable {
				ls.sessions.remove(key)
				return nil, 0
			}
			return nil, st
		}
	}
	return s, 0
}

// checkAccessToken verifies a built-in session's access token with the
// app's verifier (cached: this is a map lookup and the revocation check)
// and the gate's audience. It answers 0 when it holds.
func (p *Protect) checkAccessToken(at string, now time.Time) int {
	v, err := p.issuer.Verifier()
	if err != nil {
		return http.StatusServiceUnavailable
	}
	c, err := v.Verify(at, now)
	if err != nil || !p.anyAudience && !c.Audience.Contains(p.Audience) {
		return http.StatusUnauthorized
	}
	return 0
}

// openCookie opens and parses a session cookie; nil if it does not open
// (tampered, forged, sealed for another provider or gate, or with a key
// no longer in the ring).
func (rp *relyingParty) openCookie(value string) *session {
	plain, err := rp.sealer.Open(rp.sessionAAD, value)
	if err != nil {
		return nil
	}
	var d sessionData
	if json.Unmarshal(plain, &d) != nil || len(d.Identity) == 0 {
		return nil
	}
	c, err := tokens.ParseAccessClaims(d.Identity)
	if err != nil || c.Subject == "" {
		return nil
	}
	return &session{data: d, claims: c}
}

// sealSession seals a session, with its ID token only if the cookie stays
// within maxCookieValue with it. ok is false if it does not fit even
// without.
func (rp *relyingParty) sealSession(d sessionData) (string, bool) {
	b, _ := json.Marshal(d)
	v := rp.sealer.Seal(rp.sessionAAD, b)
	if len(v) <= maxCookieValue {
		return v, true
	}
	d.IDToken = ""
	b, _ = json.Marshal(d)
	v = rp.sealer.Seal(rp.sessionAAD, b)
	return v, len(v) <= maxCookieValue
}

// refreshSession renews a session with its refresh token, once for all
// the parallel requests that carry the same cookie, and sets the new
// cookie. A refused refresh ends the session; an unreachable provider
// keeps a session whose token is still valid and answers 503 otherwise.
func (p *Protect) refreshSession(w http.ResponseWriter, r *http.Request, key [32]byte, s *session) (*session, int) {
	ls := p.login
	now := ls.now()
	if next, ok := ls.refresh.successor(key, now); ok {
		return p.adoptSuccessor(w, r, next)
	}
	type result struct {
		value string
		s     *session
		// adopted: another request refreshed this session first.
		adopted bool
	}
	v, err, _ := ls.refresh.group.Do(string(key[:]), func() (any, error) {
		if next, ok := ls.refresh.successor(key, now); ok {
			return result{next.value, next.s, true}, nil
		}
		rp, err := ls.relyingParty(r.Context())
		if err != nil {
			return nil, err
		}
		ns, err := p.redeemRefresh(context.WithoutCancel(r.Context()), rp, s)
		if err != nil {
			return nil, err
		}
		value, ok := rp.sealSession(ns.data)
		if !ok {
			return nil, errRefused
		}
		ls.sessions.put(cookieHash(value), ns)
		ls.sessions.remove(key)
		ls.refresh.remember(key, rotation{value: value, s: ns}, now)
		return result{value, ns, false}, nil
	})
	if err != nil {
		if errors.Is(err, errRefused) {
			// The provider ended the grant: every cookie of this sign-in
			// is refused on this node, also the replaced ones that would
			// otherwise be answered with a successor for a while.
			recordLogout(key, s, now)
			ls.sessions.remove(key)
			return nil, 0
		}
		// The provider could not be asked: the session holds while its
		// access token does.
		if s.data.Expiry > now.Unix() && (ls.external || p.checkAccessToken(s.data.AccessToken, now) == 0) {
			return s, 0
		}
		return nil, http.StatusServiceUnavailable
	}
	res := v.(result)
	if res.adopted {
		return p.adoptSuccessor(w, r, rotation{value: res.value, s: res.s})
	}
	ls.setCookie(w, r, ls.sessionCookieName(r), res.value, ls.cookieMaxAge(res.s, now))
	return res.s, 0
}

// adoptSuccessor answers a cookie that a refresh has replaced with the
// session that replaced it, checked like any session cookie the browser
// sends (signed out, ended, revoked):
// the old cookie is never a way around those checks.
func (p *Protect) adoptSuccessor(w http.ResponseWriter, r *http.Request, next rotation) (*session, int) {
	ls := p.login
	// Set first: a refresh of the successor, or the end of the session,
	// replaces it in this answer (setCookie keeps the last value).
	ls.setCookie(w, r, ls.sessionCookieName(r), next.value, ls.cookieMaxAge(next.s, ls.now()))
	return p.checkSession(w, r, next.value, true)
}

// errRefused is a refresh the provider refused: the session ends.
var errRefused = errors.New("refresh refused")

// redeemRefresh asks the provider for new tokens and makes the new
// session: a fresh access token (verified, built-in mode), the rotated
// refresh token, and the identity of the new ID token when one came.
func (p *Protect) redeemRefresh(ctx context.Context, rp *relyingParty, s *session) (*session, error) {
	ls := p.login
	if s.data.RefreshToken == "" {
		return nil, errRefused
	}
	ctx = rp.ctx(ctx)
	tok, err := rp.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: s.data.RefreshToken,
		Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, errRefused
		}
		return nil, err
	}
	d := s.data
	d.RefreshToken = tok.RefreshToken
	if d.RefreshToken == "" {
		d.RefreshToken = s.data.RefreshToken
	}
	d.AccessToken = ""
	d.Expiry, d.Issued = tokenTimes(tok)
	var idClaims map[string]any
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if idt, err := rp.idVerifier.Verify(ctx, raw); err == nil && idt.Subject == s.claims.Subject {
			_ = idt.Claims(&idClaims)
			d.IDToken = raw
		}
	}
	scope, _ := tok.Extra("scope").(string)
	if !ls.external {
		d.AccessToken = tok.AccessToken
		v, err := p.issuer.Verifier()
		if err != nil {
			return nil, err
		}
		c, err := v.Verify(tok.AccessToken, ls.now())
		if err != nil || !p.anyAudience && !c.Audience.Contains(p.Audience) || c.Subject != s.claims.Subject {
			return nil, errRefused
		}
		scope = c.Scope
		d.Expiry, d.Issued = c.ExpiresAt, c.IssuedAt
	}
	if idClaims == nil {
		idClaims = map[string]any{}
		_ = json.Unmarshal(s.data.Identity, &idClaims)
	}
	if scope == "" {
		scope = s.claims.Scope
	}
	d.Identity = p.identityJSON(idClaims, rp.clientID, scope)
	c, err := tokens.ParseAccessClaims(d.Identity)
	if err != nil {
		return nil, errRefused
	}
	return &session{data: d, claims: c}, nil
}

// cookieMaxAge is the session cookie's Max-Age: the rest of an external
// session; a built-in session's cookie lives with the browser session
// and the grant decides how long it holds.
func (ls *loginState) cookieMaxAge(s *session, now time.Time) int {
	if s.data.End == 0 {
		return 0
	}
	return max(int(s.data.End-now.Unix()), 1)
}

// identityJSON keeps the identity claims the gate needs, as the JSON the
// session's AccessClaims are parsed from.
func (p *Protect) identityJSON(idClaims map[string]any, clientID, scope string) json.RawMessage {
	keep := map[string]any{}
	for _, name := range []string{"sub", "iss", "preferred_username", "name", "email", p.groupsClaim()} {
		if v, ok := idClaims[name]; ok {
			keep[name] = v
		}
	}
	for _, fh := range p.ForwardHeaders {
		if v, ok := idClaims[fh.Claim]; ok {
			keep[fh.Claim] = v
		}
	}
	keep["client_id"] = clientID
	if scope != "" {
		keep["scope"] = scope
	}
	b, _ := json.Marshal(keep)
	return b
}
