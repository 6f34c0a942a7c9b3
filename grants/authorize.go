package grants

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// authzRequest is a validated authorization request, carried through the
// login and consent forms sealed with the form key.
type authzRequest struct {
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	RedirectGiven bool     `json:"redirect_given,omitempty"`
	Scope         []string `json:"scope"`
	State         string   `json:"state,omitempty"`
	Challenge     string   `json:"code_challenge,omitempty"`
	Nonce         string   `json:"nonce,omitempty"`
	Resource      string   `json:"resource,omitempty"`
	Prompt        []string `json:"prompt,omitempty"`
	MaxAge        int64    `json:"max_age"` // -1: not given
	LoginHint     string   `json:"login_hint,omitempty"`
	// DPoPJKT binds the code to a DPoP key (RFC 9449 §10).
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// Untrusted: the client registered itself, so errors are shown to
	// the user before going back to it (redirectError).
	Untrusted bool `json:"untrusted,omitempty"`
}

// authzParams are the authorization request parameters we read; a
// repeated one is an error, others are ignored.
var authzParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state",
	"code_challenge", "code_challenge_method", "nonce", "prompt", "max_age", "login_hint",
	"response_mode", "request", "request_uri", "resource", "dpop_jkt"}

// redirectError is an error sent back to the client's redirect URI
// (RFC 6749 §4.1.2.1).
type redirectError struct{ code, desc string }

// maxParamLen bounds state, nonce and login_hint so they cannot bloat
// forms and redirects.
const maxParamLen = 2048

// parseAuthorize validates an authorization request. Until the client and
// redirect URI are trusted, errors are shown as a page (page != ""); after
// that they go back to the client (rerr != nil).
func (e *Engine) parseAuthorize(r *http.Request) (ar *authzRequest, page string, rerr *redirectError) {
	var q url.Values
	switch r.Method {
	case http.MethodGet:
		q = r.URL.Query()
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			return nil, e.web.text.RequestUnreadable, nil
		}
		q = r.PostForm
	default:
		return nil, e.web.text.AuthorizeMethods, nil
	}
	p := map[string]string{}
	for _, name := range authzParams {
		if vs := q[name]; len(vs) > 1 {
			return nil, e.web.text.RepeatedParameter, nil
		} else if len(vs) == 1 && vs[0] != "" {
			p[name] = vs[0]
		}
	}
	viaPAR := false
	if strings.HasPrefix(p["request_uri"], RequestURIPrefix) {
		// RFC 9126 §4: the pushed parameters are the request; any others
		// sent beside client_id and request_uri are ignored (as RFC 9101
		// §6.3 does for a request object).
		if p, page = e.spendPushed(r.Context(), p["client_id"], p["request_uri"]); page != "" {
			return nil, page, nil
		}
		viaPAR = true
	}
	return e.checkAuthorize(r.Context(), p, viaPAR)
}

// checkAuthorize validates the parameters of an authorization request,
// sent to the authorization endpoint or pushed (viaPAR: to the PAR
// endpoint, or spent there from a request_uri), with the results of
// parseAuthorize.
func (e *Engine) checkAuthorize(ctx context.Context, p map[string]string, viaPAR bool) (ar *authzRequest, page string, rerr *redirectError) {
	c, err := e.lookupClient(ctx, p["client_id"])
	if err != nil {
		e.logFailure(ctx, "authorize", CodeTemporarilyUnavailable, err)
		// checkAuthorize has logged the cause; the page is a 503.
		return nil, e.web.text.ServiceUnavailable, nil
	}
	if c == nil {
		return nil, e.web.text.ClientUnknown, nil
	}
	ar = &authzRequest{ClientID: c.ID, State: p["state"], MaxAge: -1, Untrusted: c.Registered}
	// An OpenID request must name its redirect URI (OIDC Core §3.1.2.1),
	// and a request without scope gets the client's scopes, openid
	// included. Without it we cannot redirect the error anywhere
	// (RFC 6749 §4.1.2.1), so it is a page.
	openid := slices.Contains(strings.Split(p["scope"], " "), "openid") ||
		(p["scope"] == "" && slices.Contains(c.Scopes, "openid"))
	switch ru := p["redirect_uri"]; {
	case ru != "" && c.MatchRedirectURI(ru):
		ar.RedirectURI, ar.RedirectGiven = ru, true
	case ru == "" && openid:
		return nil, e.web.text.RedirectMissing, nil
	case ru == "" && len(c.RedirectURIs) == 1:
		ar.RedirectURI = c.RedirectURIs[0]
	default:
		return nil, e.web.text.RedirectUnregistered, nil
	}
	fail := func(code, desc string) (*authzRequest, string, *redirectError) {
		return ar, "", &redirectError{code, desc}
	}
	if !viaPAR && e.mustPush(c) {
		return fail(CodeInvalidRequest, "this client must push its authorization requests to the pushed_authorization_request_endpoint (RFC 9126)")
	}
	if len(ar.State) > maxParamLen || len(p["nonce"]) > maxParamLen || len(p["login_hint"]) > maxParamLen {
		ar.State = ""
		return fail(CodeInvalidRequest, "state, nonce or login_hint is too long")
	}
	switch {
	case p["response_type"] == "":
		return fail(CodeInvalidRequest, "response_type is required")
	case p["response_type"] != "code":
		return fail("unsupported_response_type", "only response_type=code is supported")
	case p["response_mode"] != "" && p["response_mode"] != "query":
		return fail(CodeInvalidRequest, "only response_mode=query is supported")
	case p["request"] != "":
		return fail("request_not_supported", "request objects are not supported")
	case p["request_uri"] != "":
		return fail("request_uri_not_supported", "request_uri is not supported")
	case !c.Allows(GrantAuthorizationCode):
		return fail(CodeUnauthorizedClient, "this client may not use the authorization code flow")
	}
	scope, oerr := grantScope(p["scope"], c.Scopes)
	if oerr != nil {
		return fail(CodeInvalidScope, oerr.Description)
	}
	ar.Scope = scope
	if res := p["resource"]; res != "" {
		i := indexResource(c.Audience, res)
		if i < 0 {
			return fail(CodeInvalidTarget, "the requested resource is not allowed for this client")
		}
		ar.Resource = c.Audience[i]
	}
	switch ch, m := p["code_challenge"], p["code_challenge_method"]; {
	case ch == "" && m != "":
		return fail(CodeInvalidRequest, "code_challenge_method without code_challenge")
	case ch == "" && (c.AuthMethod == AuthNone || !c.PKCEOptional):
		return fail(CodeInvalidRequest, "code_challenge is required (PKCE with S256)")
	case ch != "" && m != "S256":
		return fail(CodeInvalidRequest, "code_challenge_method must be S256")
	case ch != "" && !validS256Challenge(ch):
		return fail(CodeInvalidRequest, "code_challenge must be the 43-character base64url SHA-256 of the code_verifier")
	default:
		ar.Challenge = ch
	}
	if jkt := p["dpop_jkt"]; jkt != "" {
		// An RFC 7638 SHA-256 thumbprint: 43 base64url characters, as an
		// S256 code_challenge is.
		if !validS256Challenge(jkt) {
			return fail(CodeInvalidRequest, "dpop_jkt must be the base64url SHA-256 JWK thumbprint (RFC 7638) of the DPoP key")
		}
		ar.DPoPJKT = jkt
	}
	if pr := p["prompt"]; pr != "" {
		ar.Prompt = strings.Split(pr, " ")
		for _, v := range ar.Prompt {
			if v != "none" && v != "login" && v != "consent" && v != "select_account" {
				return fail(CodeInvalidRequest, "prompt has an unknown value")
			}
		}
		if slices.Contains(ar.Prompt, "none") && len(ar.Prompt) > 1 {
			return fail(CodeInvalidRequest, "prompt=none cannot be combined with other values")
		}
	}
	if ma := p["max_age"]; ma != "" {
		n, err := strconv.ParseInt(ma, 10, 64)
		if err != nil || n < 0 {
			return fail(CodeInvalidRequest, "max_age must be a non-negative integer")
		}
		ar.MaxAge = n
	}
	ar.Nonce, ar.LoginHint = p["nonce"], p["login_hint"]
	return ar, "", nil
}

// serveAuthorize is the authorization endpoint (RFC 6749 §3.1, OIDC Core
// §3.1.2).
func (e *Engine) serveAuthorize(rw http.ResponseWriter, r *http.Request) {
	if err := e.requireTLS(r); err != nil {
		e.web.errorPage(rw, http.StatusBadRequest, e.web.text.NeedHTTPS)
		return
	}
	if e.web.refuseDuplicateCookie(rw, r) {
		return
	}
	if r.Method == http.MethodPost && !e.web.parseForm(rw, r) {
		return
	}
	ar, page, rerr := e.parseAuthorize(r)
	switch {
	case page == e.web.text.ServiceUnavailable:
		rw.Header().Set("Retry-After", strconv.Itoa(RetryAfterUnavailable))
		e.web.errorPage(rw, http.StatusServiceUnavailable, page)
	case page != "":
		e.web.errorPage(rw, http.StatusBadRequest, page)
	case rerr != nil:
		e.redirectError(rw, r, ar, rerr)
	default:
		// A challenge a live code already carries is refused before the
		// user signs in for a code that issueCode would refuse anyway.
		if ar.Challenge != "" {
			used, err := e.challengeInUse(r.Context(), ar.Challenge)
			if err != nil {
				e.logFailure(r.Context(), "authorize", CodeTemporarilyUnavailable, err)
				e.redirectError(rw, r, ar, &redirectError{CodeTemporarilyUnavailable, "try again shortly"})
				return
			}
			if used {
				e.redirectError(rw, r, ar, errChallengeReused)
				return
			}
		}
		e.continueAuthorize(rw, r, ar, nil)
	}
}

// continueAuthorize moves a valid request on: sign-in if needed, then
// consent if needed, then a code. fresh is the session the user just
// started on our login form (which satisfies prompt=login and max_age);
// nil means: use the browser's session cookie.
func (e *Engine) continueAuthorize(rw http.ResponseWriter, r *http.Request, ar *authzRequest, fresh *sessionRecord) {
	ctx := r.Context()
	sess, freshLogin := fresh, fresh != nil
	if sess == nil {
		var err error
		if sess, _, err = e.web.session(ctx, r); err != nil {
			e.unavailable(rw, r, "authorize", e.web.text.SignInUnavailable, err)
			return
		}
	}
	none := slices.Contains(ar.Prompt, "none")
	needLogin := sess == nil ||
		(!freshLogin && slices.Contains(ar.Prompt, "login")) ||
		(!freshLogin && ar.MaxAge >= 0 && time.Since(time.Unix(sess.AuthTime, 0)) > time.Duration(ar.MaxAge)*time.Second)
	if needLogin && none {
		e.redirectError(rw, r, ar, &redirectError{"login_required", "the user is not signed in"})
		return
	}
	c, err := e.lookupClient(ctx, ar.ClientID)
	if err != nil {
		e.unavailable(rw, r, "authorize", e.web.text.SignInUnavailable, err)
		return
	}
	if c == nil {
		e.web.errorPage(rw, http.StatusBadRequest, e.web.text.ClientGone)
		return
	}
	if needLogin {
		// The user a login_hint or the session names is filled in, with
		// "Not alice?" beside it. A hint that cannot be a user name is
		// not shown (the page would echo any text a link carries).
		known := ar.LoginHint
		if !plausibleUserName(known) {
			known = ""
		}
		if known == "" && sess != nil {
			known = sess.User
		}
		e.loginPage(rw, r, c, loginState{Request: *ar, Known: known}, known, "")
		return
	}
	// RFC 8252 §8.6: any program on the machine can claim a public
	// client's loopback or custom-scheme redirect, so a public client gets
	// a code only after the user acted in this request (typed the password
	// just now, or allows on the consent page), trusted or not, whatever
	// was allowed before.
	public := c.AuthMethod == AuthNone
	needConsent := !c.Trusted || (public && !freshLogin)
	// A client that registered itself is asked about every time: what
	// the user allowed once is no reason to trust it later.
	if needConsent && !public && !c.Registered && !slices.Contains(ar.Prompt, "consent") {
		ok, err := e.web.hasConsent(ctx, sess.Sub, c.ID, ar.Scope)
		if err != nil {
			e.unavailable(rw, r, "authorize", e.web.text.SignInUnavailable, err)
			return
		}
		needConsent = !ok
	}
	if needConsent {
		if none && public {
			e.redirectError(rw, r, ar, &redirectError{"interaction_required", "a public client needs the user to allow it each time"})
			return
		}
		if none {
			e.redirectError(rw, r, ar, &redirectError{"consent_required", "the user has not allowed this application"})
			return
		}
		csrf := e.web.csrfToken(rw, r)
		d := pageData{Title: e.web.text.ConsentTitle, Scopes: ar.Scope, ScopeItems: e.web.describeScopes(ar.Scope),
			User: sess.User, State: e.web.seal(consentState{Request: *ar, User: sess.Sub}, csrf), CSRF: csrf,
			Action: e.basePath + AuthorizePath + "/consent"}
		d.setClient(c)
		if c.Registered {
			d.ReturnHost = returnTarget(ar.RedirectURI)
		}
		e.web.render(rw, http.StatusOK, "consent.html", d)
		return
	}
	e.issueCode(rw, r, ar, sess)
}

// plausibleUserName reports whether s could be a user name (the rule of
// ValidateUser) and is text the pages may show (displayText).
func plausibleUserName(s string) bool {
	return checkName(s) && len(s) <= 200 && displayText(s)
}

// loginState and consentState are sealed into the forms.
type loginState struct {
	Request authzRequest `json:"r"`
	// Known is the user a login_hint or the session named, until the
	// user picks "Sign in as someone else".
	Known string `json:"k,omitempty"`
	// Device is the user code when the sign-in is for the device grant's
	// verification page (devicepage.go), which it returns to; Request
	// then names only the client.
	Device string `json:"d,omitempty"`
}

// loginPage shows the login form: name fills in the user name field (and
// moves the focus to the password), msg is the error of a failed attempt.
// c may be nil (the page then names the client by its id).
func (e *Engine) loginPage(rw http.ResponseWriter, r *http.Request, c *Client, st loginState, name, msg string) {
	w := e.web
	csrf := w.csrfToken(rw, r)
	d := pageData{Title: w.text.SignInTitle, Client: st.Request.ClientID, Error: msg, LoginHint: name,
		State: w.seal(st, csrf), CSRF: csrf, Action: e.basePath + AuthorizePath + "/login"}
	if st.Known != "" && st.Known == name {
		d.KnownUser = st.Known
	}
	if c != nil {
		d.setClient(c)
		// The login page never shows the logo: its CSP does not allow it.
		d.ClientLogo, d.imgSrc = "", ""
	}
	w.render(rw, http.StatusOK, "login.html", d)
}

type consentState struct {
	Request authzRequest `json:"r"`
	User    string       `json:"u"`
}

// serveLogin handles the login form.
func (e *Engine) serveLogin(rw http.ResponseWriter, r *http.Request) {
	w := e.web
	var st loginState
	if !e.postedForm(rw, r, &st) {
		return
	}
	ar := &st.Request
	name, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	// A failed sign-in shows the form again with 200: a 401 would need a
	// WWW-Authenticate challenge (RFC 9110 §15.5.2), and a form has none.
	again := func(msg string) {
		c, _ := e.lookupClient(r.Context(), ar.ClientID) // postedForm found it
		e.loginPage(rw, r, c, st, name, msg)
	}
	if r.PostForm.Get("switch") != "" {
		// "Sign in as someone else": the same form, empty.
		st.Known, name = "", ""
		again("")
		return
	}
	if name == "" || password == "" {
		again(w.text.MissingCredentials)
		return
	}
	if len(name) > maxSignInName || len(password) > maxSignInPassword {
		e.oversizedSignIn(r.Context(), signInViaLogin, ar.ClientID, name, ClientIP(r))
		again(w.text.WrongCredentials)
		return
	}
	u, err := e.signIn(r.Context(), signInViaLogin, ar.ClientID, name, password, ClientIP(r))
	switch {
	case errors.Is(err, errSignInLocked):
		again(w.text.LockedOut)
		return
	case errors.Is(err, ErrUserNotFound):
		again(w.text.WrongCredentials)
		return
	case err != nil:
		e.unavailable(rw, r, "login", e.web.text.SignInUnavailable, err)
		return
	}
	sess, err := w.startSession(r.Context(), rw, r, u)
	if err != nil {
		e.unavailable(rw, r, "login", e.web.text.SignInUnavailable, err)
		return
	}
	if st.Device != "" {
		e.continueDevice(rw, r, st.Device, sess)
		return
	}
	e.continueAuthorize(rw, r, ar, sess)
}

// serveConsent handles the consent form.
func (e *Engine) serveConsent(rw http.ResponseWriter, r *http.Request) {
	w := e.web
	var st consentState
	if !e.postedForm(rw, r, &st) {
		return
	}
	ar := &st.Request
	sess, _, err := w.session(r.Context(), r)
	if err != nil {
		e.unavailable(rw, r, "consent", e.web.text.SignInUnavailable, err)
		return
	}
	if sess == nil || sess.Sub != st.User {
		w.errorPage(rw, http.StatusBadRequest, w.text.SessionEnded)
		return
	}
	if r.PostForm.Get("decision") != "allow" {
		e.redirectError(rw, r, ar, &redirectError{"access_denied", "the user denied access"})
		return
	}
	if err := w.rememberConsent(r.Context(), sess.Sub, ar.ClientID, ar.Scope); err != nil {
		e.unavailable(rw, r, "consent", e.web.text.SignInUnavailable, err)
		return
	}
	e.issueCode(rw, r, ar, sess)
}

// checkPost checks any of our form posts: HTTPS (see requireTLS), POST, a
// bounded body, the CSRF
// field matching the cookie, and the sealed state intact and recent,
// decoded into st.
func (e *Engine) checkPost(rw http.ResponseWriter, r *http.Request, st any) bool {
	if err := e.requireTLS(r); err != nil {
		e.web.errorPage(rw, http.StatusBadRequest, e.web.text.NeedHTTPS)
		return false
	}
	if e.web.refuseDuplicateCookie(rw, r) {
		return false
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		e.web.errorPage(rw, http.StatusMethodNotAllowed, e.web.text.FormPostsOnly)
		return false
	}
	if !e.web.parseForm(rw, r) {
		return false
	}
	csrf := r.PostForm.Get("csrf")
	if !e.web.checkCSRF(r, csrf) || !e.web.unseal(r.PostForm.Get("state"), csrf, st) {
		e.web.errorPage(rw, http.StatusForbidden, e.web.text.FormExpired)
		return false
	}
	return true
}

// postedForm checks a sign-in form post (checkPost) and that its client is
// still registered with that redirect URI.
func (e *Engine) postedForm(rw http.ResponseWriter, r *http.Request, st any) bool {
	if !e.checkPost(rw, r, st) {
		return false
	}
	var (
		ar       *authzRequest
		endpoint string
		device   bool
	)
	switch s := st.(type) {
	case *loginState:
		ar, endpoint, device = &s.Request, "login", s.Device != ""
	case *consentState:
		ar, endpoint = &s.Request, "consent"
	}
	c, err := e.lookupClient(r.Context(), ar.ClientID)
	if err != nil {
		e.unavailable(rw, r, endpoint, e.web.text.SignInUnavailable, err)
		return false
	}
	// A device sign-in has no redirect URI: nothing is sent to the
	// browser but the verification page.
	if c == nil || !device && !c.MatchRedirectURI(ar.RedirectURI) {
		e.web.errorPage(rw, http.StatusBadRequest, e.web.text.ClientGone)
		return false
	}
	return true
}

// issueCode stores a code for the signed-in user and sends it to the
// client.
func (e *Engine) issueCode(rw http.ResponseWriter, r *http.Request, ar *authzRequest, sess *sessionRecord) {
	code := newSecretToken()
	cr := codeRecord{ClientID: ar.ClientID, RedirectURI: ar.RedirectURI, RedirectGiven: ar.RedirectGiven,
		Challenge: ar.Challenge, Nonce: ar.Nonce, Scope: ar.Scope, Resource: ar.Resource, Subject: sess.Sub, AuthTime: sess.AuthTime, DPoPJKT: ar.DPoPJKT}
	expires := time.Now().Add(CodeTTL)
	var reused bool
	err := e.store.Batch(r.Context(), func(tx storage.Tx) error {
		reused = false
		// The challenge is bound to this code for the code's lifetime, in
		// the transaction that stores the code: of two transactions with
		// one challenge, only the first gets a code (RFC 9700 §2.1.1).
		if ar.Challenge != "" {
			key := challengeKey(ar.Challenge)
			if _, err := tx.Get(storage.KindAssertions, key); err == nil {
				reused = true
				return nil
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			if err := tx.Put(storage.KindAssertions, key, storage.Record{Value: []byte{1}, Expires: expires}); err != nil {
				return err
			}
		}
		return putJSON(tx, storage.KindCodes, hashToken(code), &cr, expires)
	})
	if err != nil {
		e.logFailure(r.Context(), "authorize", CodeTemporarilyUnavailable, err)
		e.redirectError(rw, r, ar, &redirectError{CodeTemporarilyUnavailable, "try again shortly"})
		return
	}
	if reused {
		e.redirectError(rw, r, ar, errChallengeReused)
		return
	}
	e.redirect(rw, r, ar, url.Values{"code": {code}})
}

// redirectError sends an error to the client's (validated) redirect URI.
// For a client that registered itself the error is shown on a page with
// a link back instead (RFC 9700 §4.11.2): anyone can register a client
// whose redirect URI is theirs, and an automatic redirect would make
// this server a redirector to it.
func (e *Engine) redirectError(rw http.ResponseWriter, r *http.Request, ar *authzRequest, rerr *redirectError) {
	params := url.Values{"error": {rerr.code}, "error_description": {rerr.desc}}
	if ar.Untrusted {
		t := e.web.text
		e.web.render(rw, http.StatusBadRequest, "error.html", pageData{Title: t.ErrorTitle, Error: t.UntrustedError + " " + rerr.code,
			Return: template.URL(e.redirectTarget(ar, params))}) // #nosec G203 -- a redirect URI checked at registration
		return
	}
	e.redirect(rw, r, ar, params)
}

// redirect appends params, state and iss (RFC 9207) to the redirect URI,
// keeping its own query as it was.
func (e *Engine) redirect(rw http.ResponseWriter, r *http.Request, ar *authzRequest, params url.Values) {
	h := rw.Header()
	noStore(h)
	h.Set("Location", e.redirectTarget(ar, params))
	rw.WriteHeader(http.StatusFound)
}

// redirectTarget is the redirect URI with params, state and iss.
func (e *Engine) redirectTarget(ar *authzRequest, params url.Values) string {
	if ar.State != "" {
		params.Set("state", ar.State)
	}
	params.Set("iss", e.issuer)
	sep := "?"
	if strings.Contains(ar.RedirectURI, "?") {
		sep = "&"
	}
	return ar.RedirectURI + sep + params.Encode()
}

// parseForm parses a posted form, bounded like the token endpoint: a real
// one is a few hundred bytes, and ParseForm would otherwise read 10 MB. A
// larger body is 413, another unreadable one 400, each on an error page;
// it reports whether to go on.
func (w *web) parseForm(rw http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(rw, r.Body, MaxBodyBytes)
	var tooLarge *http.MaxBytesError
	err := r.ParseForm()
	switch {
	case r.ContentLength > MaxBodyBytes || errors.As(err, &tooLarge):
		w.errorPage(rw, http.StatusRequestEntityTooLarge, w.text.RequestTooLarge)
		return false
	case err != nil:
		w.errorPage(rw, http.StatusBadRequest, w.text.RequestUnreadable)
		return false
	}
	return true
}
