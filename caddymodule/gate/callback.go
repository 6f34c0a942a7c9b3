package gate

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// loginData is what a sign-in cookie holds, sealed: the values the
// callback checks the provider's answer against, and where to go after.
type loginData struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Created  int64  `json:"t"`
}

// startLogin sends a browser to the provider's authorization endpoint
// with PKCE (S256), state and nonce, which a sign-in cookie (one of
// maxLoginCookies slots, for parallel tabs) keeps for the callback.
func (p *Protect) startLogin(w http.ResponseWriter, r *http.Request, loginCookies map[int]string) error {
	ls := p.login
	drainBody(r)
	rp, err := ls.relyingParty(r.Context())
	if err != nil {
		countGate(gateUnavailable)
		return writeUnavailable(w, r)
	}
	now := ls.now()
	d := loginData{State: tokens.RandomID(24), Nonce: tokens.RandomID(24), Verifier: oauth2.GenerateVerifier(),
		Return: ls.returnPath(r), Created: now.Unix()}
	// A free slot, else the oldest sign-in's (one that does not open
	// counts as oldest).
	slot, oldest := -1, int64(0)
	for i := range maxLoginCookies {
		v, ok := loginCookies[i]
		if !ok {
			slot = i
			break
		}
		var ld loginData
		created := int64(0)
		if b, err := rp.sealer.Open(rp.loginAAD, v); err == nil && json.Unmarshal(b, &ld) == nil {
			created = ld.Created
		}
		if slot < 0 || created < oldest {
			slot, oldest = i, created
		}
	}
	b, _ := json.Marshal(d)
	ls.setCookie(w, r, ls.loginCookieName(r, slot), rp.sealer.Seal(rp.loginAAD, b), int(loginTTL/time.Second))
	target := rp.oauth.AuthCodeURL(d.State, oauth2.S256ChallengeOption(d.Verifier), oidc.Nonce(d.Nonce))
	countGate(gateLogin)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusFound)
	return nil
}

// Bounds of the callback's parameters.
const (
	maxCallbackQuery = 8 << 10
	maxStateLen      = 128
	maxCodeLen       = 2048
)

// serveCallback takes the provider's answer: the state must match a
// sign-in cookie of this browser (else 400 and nothing is set: a forged
// callback cannot sign a browser in), the code is redeemed with its PKCE
// verifier, the ID token is verified (issuer, audience, algorithm,
// expiry, nonce), and a fresh session cookie replaces whatever the
// browser had.
func (p *Protect) serveCallback(w http.ResponseWriter, r *http.Request, loginCookies map[int]string) error {
	ls := p.login
	drainBody(r)
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		countGate(gateBadRequest)
		w.Header().Set("Allow", "GET")
		writePage(w, http.StatusMethodNotAllowed, "Sign-in failed", "The sign-in answer must come as a GET request.")
		return nil
	}
	bad := func() error {
		countGate(gateBadRequest)
		writePage(w, http.StatusBadRequest, "Sign-in failed",
			`This sign-in link is not valid, was used already or has expired. <a href="/">Start again</a>.`)
		return nil
	}
	if len(r.URL.RawQuery) > maxCallbackQuery {
		return bad()
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q["state"]) != 1 || len(q["state"][0]) > maxStateLen || len(q["code"]) > 1 || len(q["error"]) > 1 {
		return bad()
	}
	rp, err := ls.relyingParty(r.Context())
	if err != nil {
		countGate(gateUnavailable)
		return writeUnavailable(w, r)
	}
	now := ls.now()
	state := q.Get("state")
	slot, d := -1, loginData{}
	for i, v := range loginCookies {
		b, err := rp.sealer.Open(rp.loginAAD, v)
		var ld loginData
		if err != nil || json.Unmarshal(b, &ld) != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(ld.State), []byte(state)) == 1 && now.Unix()-ld.Created < int64(loginTTL/time.Second) {
			slot, d = i, ld
			break
		}
	}
	if slot < 0 {
		return bad()
	}
	if e := q.Get("error"); e != "" {
		ls.clearCookie(w, r, ls.loginCookieName(r, slot))
		countGate(gateForbidden)
		msg := "The sign-in provider did not sign you in."
		if errorCode(e) {
			msg += " It answered: " + html.EscapeString(e) + "."
		}
		writePage(w, http.StatusForbidden, "Sign-in failed", msg+` <a href="/">Start again</a>.`)
		return nil
	}
	code := q.Get("code")
	if code == "" || len(code) > maxCodeLen {
		return bad()
	}
	ctx := rp.ctx(r.Context())
	tok, err := rp.oauth.Exchange(ctx, code, oauth2.VerifierOption(d.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			ls.clearCookie(w, r, ls.loginCookieName(r, slot))
			return bad()
		}
		ls.logger.Error("oauth_protect: redeeming the sign-in code failed", zapIssuer(ls.issuerURL), zapErr(err))
		countGate(gateUnavailable)
		return writeUnavailable(w, r)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return p.signInBroken(w, "the provider sent no ID token (is openid among the scopes?)", nil)
	}
	idt, err := rp.idVerifier.Verify(ctx, raw)
	if err != nil {
		return p.signInBroken(w, "the ID token does not verify", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(d.Nonce)) != 1 {
		return bad()
	}
	var idClaims map[string]any
	if err := idt.Claims(&idClaims); err != nil {
		return p.signInBroken(w, "the ID token's claims do not decode", err)
	}
	sd := sessionData{RefreshToken: tok.RefreshToken, IDToken: raw, SID: tokens.RandomID(16)}
	scope, _ := tok.Extra("scope").(string)
	sd.Expiry, sd.Issued = tokenTimes(tok)
	if ls.external {
		sd.End = now.Add(ls.sessionTTL).Unix()
	} else {
		v, err := p.issuer.Verifier()
		if err != nil {
			countGate(gateUnavailable)
			return writeUnavailable(w, r)
		}
		c, err := v.Verify(tok.AccessToken, now)
		if err != nil || !p.anyAudience && !c.Audience.Contains(p.Audience) || c.Subject != idt.Subject {
			return p.signInBroken(w, "the access token is not for this gate", err)
		}
		sd.AccessToken, sd.Expiry, sd.Issued, scope = tok.AccessToken, c.ExpiresAt, c.IssuedAt, c.Scope
	}
	if scope == "" {
		// RFC 6749 §5.1: no scope in the answer means the scope asked for.
		scope = strings.Join(ls.scopes, " ")
	}
	sd.Identity = p.identityJSON(idClaims, rp.clientID, scope)
	value, ok := rp.sealSession(sd)
	if !ok {
		return p.signInBroken(w, "the session does not fit in a cookie (too many claims or groups)", nil)
	}
	// Always a new value: a cookie planted before sign-in never becomes
	// the session (session fixation).
	ls.setCookie(w, r, ls.sessionCookieName(r), value, ls.cookieMaxAge(&session{data: sd}, now))
	ls.clearCookie(w, r, ls.loginCookieName(r, slot))
	countGate(gateAllowed)
	w.Header().Set("Location", safeReturnPath(d.Return, ls.callbackPath, ls.logoutPath))
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// signInBroken answers a provider answer the gate cannot use: a
// misconfiguration to fix at the provider or in the gate, logged with
// its reason, shown without details.
func (p *Protect) signInBroken(w http.ResponseWriter, reason string, err error) error {
	fields := []zap.Field{zapIssuer(p.login.issuerURL), zap.String("reason", reason)}
	if err != nil {
		fields = append(fields, zapErr(err))
	}
	p.login.logger.Error("oauth_protect: sign-in refused", fields...)
	countGate(gateInvalid)
	writePage(w, http.StatusBadGateway, "Sign-in failed",
		`The sign-in provider's answer could not be used. The administrator will find the reason in the log. <a href="/">Start again</a>.`)
	return nil
}

// errorCode reports whether e is shaped like an OAuth error code (RFC
// 6749 §4.1.2.1: %x20-21 / %x23-5B / %x5D-7E, here letters, digits and _),
// which alone is shown back.
func errorCode(e string) bool {
	if len(e) > 64 {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return e != ""
}
