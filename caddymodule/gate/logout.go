package gate

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// revokeTimeout bounds the revocation of the refresh token at logout.
const revokeTimeout = 3 * time.Second

// serveLogout ends the session: the cookie is cleared, its refresh token
// revoked (RFC 7009, best effort: the grant ends at the provider too),
// and the browser sent to the provider's end_session_endpoint (OpenID
// Connect RP-Initiated Logout) with id_token_hint (when the session kept
// it) or client_id, and the configured post_logout_redirect_uri. No
// request parameter chooses where the browser goes.
func (p *Protect) serveLogout(w http.ResponseWriter, r *http.Request, value string) error {
	ls := p.login
	drainBody(r)
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		countGate(gateBadRequest)
		w.Header().Set("Allow", "GET, HEAD, POST")
		writePage(w, http.StatusMethodNotAllowed, "Sign-out", "Sign out with a link (GET) or a form (POST).")
		return nil
	}
	ls.clearCookie(w, r, ls.sessionCookieName(r))
	target := ls.postLogoutURI
	rp, err := ls.relyingParty(r.Context())
	if err == nil {
		var idToken string
		if value != "" && len(value) <= maxCookieValue+200 {
			key := cookieHash(value)
			s := ls.sessions.get(key)
			if s == nil {
				s = rp.openCookie(value)
			}
			ls.sessions.remove(key)
			if s != nil {
				idToken = s.data.IDToken
				if s.data.RefreshToken != "" && r.Method != http.MethodHead {
					rp.revoke(r.Context(), s.data.RefreshToken, ls.clientSecret)
				}
			}
		}
		if rp.endSession != "" {
			if u, err := url.Parse(rp.endSession); err == nil {
				q := u.Query()
				if idToken != "" {
					q.Set("id_token_hint", idToken)
				}
				q.Set("client_id", rp.clientID)
				q.Set("post_logout_redirect_uri", ls.postLogoutURI)
				u.RawQuery = q.Encode()
				target = u.String()
			}
		}
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// revoke revokes a refresh token at the provider's revocation endpoint
// (RFC 7009). Failures are logged, not shown: the cookie is gone anyway.
func (rp *relyingParty) revoke(ctx context.Context, token, secret string) {
	if rp.revocation == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	if secret == "" {
		form.Set("client_id", rp.clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rp.revocation, strings.NewReader(form.Encode()))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		// RFC 6749 §2.3.1: the id and secret are form-encoded first.
		req.SetBasicAuth(url.QueryEscape(rp.clientID), url.QueryEscape(secret))
	}
	resp, err := rp.client.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
