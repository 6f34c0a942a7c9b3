package grants

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// logoutState is sealed into the sign-out confirmation form.
type logoutState struct {
	RedirectURI string `json:"redirect_uri,omitempty"`
	State       string `json:"state,omitempty"`
}

// serveLogout is OpenID Connect RP-Initiated Logout. A valid id_token_hint
// for the signed-in user signs out at once; otherwise the user confirms
// on a form, so that no third party can sign a user out. The
// post_logout_redirect_uri must be registered for the client, compared
// exactly; an unregistered one is ignored, never followed.
func (e *Engine) serveLogout(rw http.ResponseWriter, r *http.Request) {
	w := e.web
	ctx := r.Context()
	if w.refuseDuplicateCookie(rw, r) {
		return
	}
	sess, key, err := w.session(ctx, r)
	if err != nil {
		e.unavailable(rw, r, "logout", w.text.SignOutUnavailable, err)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == e.basePath+LogoutPath+"/confirm" {
		var st logoutState
		if !e.checkPost(rw, r, &st) {
			return
		}
		if r.PostForm.Get("decision") == "cancel" {
			// Nothing changes, and the application is not told that
			// the user signed out: it would believe it.
			w.render(rw, http.StatusOK, "loggedout.html", pageData{Title: w.text.StillSignedInTitle, Message: w.text.StillSignedIn})
			return
		}
		if err := w.endSession(ctx, rw, r, key); err != nil {
			e.unavailable(rw, r, "logout", w.text.SignOutUnavailable, err)
			return
		}
		e.afterLogout(rw, r, st)
		return
	}
	var q url.Values
	switch r.Method {
	case http.MethodGet:
		q = r.URL.Query()
	case http.MethodPost:
		if !w.parseForm(rw, r) {
			return
		}
		q = r.PostForm
	default:
		w.errorPage(rw, http.StatusMethodNotAllowed, w.text.SignOutMethods)
		return
	}
	for _, p := range []string{"id_token_hint", "post_logout_redirect_uri", "state", "client_id"} {
		if len(q[p]) > 1 {
			w.errorPage(rw, http.StatusBadRequest, w.text.SignOutRepeated)
			return
		}
	}
	hintSub, hintAud := e.idTokenHint(q.Get("id_token_hint"))
	clientID := q.Get("client_id")
	if clientID == "" {
		clientID = hintAud
	}
	st := logoutState{State: q.Get("state")}
	if len(st.State) > maxParamLen {
		st.State = ""
	}
	if pl := q.Get("post_logout_redirect_uri"); pl != "" {
		c, err := e.lookupClient(r.Context(), clientID)
		if err != nil {
			// Not a silent sign-out without the redirect the app asked for.
			e.unavailable(rw, r, "logout", w.text.SignOutUnavailable, err)
			return
		}
		if c != nil && (hintAud == "" || hintAud == clientID) && slices.Contains(c.PostLogoutRedirectURIs, pl) {
			st.RedirectURI = pl
		}
	}
	if sess == nil || (hintSub != "" && hintSub == sess.Sub) {
		if err := w.endSession(ctx, rw, r, key); err != nil {
			e.unavailable(rw, r, "logout", w.text.SignOutUnavailable, err)
			return
		}
		e.afterLogout(rw, r, st)
		return
	}
	csrf := w.csrfToken(rw, r)
	w.render(rw, http.StatusOK, "logout.html", pageData{Title: w.text.SignOutTitle, User: sess.User,
		State: w.seal(st, csrf), CSRF: csrf, Action: e.basePath + LogoutPath + "/confirm"})
}

func (e *Engine) afterLogout(rw http.ResponseWriter, r *http.Request, st logoutState) {
	if st.RedirectURI == "" {
		e.web.render(rw, http.StatusOK, "loggedout.html", pageData{Title: e.web.text.SignedOutTitle, Message: e.web.text.SignedOut})
		return
	}
	target := st.RedirectURI
	if st.State != "" {
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + url.Values{"state": {st.State}}.Encode()
	}
	noStore(rw.Header())
	rw.Header().Set("Location", target)
	rw.WriteHeader(http.StatusFound)
}

// idTokenHint returns the subject and audience of an ID token we issued.
// It may have expired (OIDC RP-Initiated Logout §2), but its signature
// must verify with one of our keys under that key's own algorithm.
func (e *Engine) idTokenHint(tok string) (sub, aud string) {
	if tok == "" || len(tok) > tokens.MaxTokenBytes {
		return "", ""
	}
	payload, err := e.keyRing().VerifySignature(tok, "JWT")
	if err != nil {
		return "", ""
	}
	var c IDClaims
	if json.Unmarshal(payload, &c) != nil || c.Issuer != e.issuer {
		return "", ""
	}
	return c.Subject, c.Audience
}
