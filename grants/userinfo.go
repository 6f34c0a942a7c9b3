package grants

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// serveUserinfo is the OIDC UserInfo endpoint: a bearer-protected resource
// that answers per RFC 6750 and releases the claims the token's scopes
// allow.
func (e *Engine) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	if e.cors(w, r, corsAppOrigins, "GET, POST") {
		return
	}
	bearer := `Bearer realm="` + e.realm + `"`
	base := bearer
	// The token is in the header; a body (of a POST) is never read, and
	// is discarded so that any answer reaches the client (DiscardBody).
	DiscardBody(r)
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		tokens.WriteBearerError(w, base, http.StatusMethodNotAllowed, "invalid_request", "")
		return
	}
	tok, dpopScheme, status, code := tokens.ResourceToken(r)
	// Every answer to a token uses the scheme it came with (RFC 9449
	// §7.1); with no token at all, both schemes are offered.
	dpopBase := tokens.DPoPChallenge(e.realm, e.dpop.Algs(), "")
	if dpopScheme {
		base = dpopBase
	}
	if status == http.StatusUnauthorized {
		tokens.WriteBearerErrorAlso(w, bearer, dpopBase, status, code, "")
		return
	}
	if status != 0 {
		tokens.WriteBearerError(w, base, status, code, "")
		return
	}
	c, err := e.verifier.Verify(tok, time.Now())
	if errors.Is(err, storage.ErrUnavailable) {
		e.logFailure(r.Context(), "userinfo", CodeTemporarilyUnavailable, err)
		WriteError(w, storageError(err))
		return
	}
	if err != nil {
		tokens.WriteBearerError(w, base, http.StatusUnauthorized, "invalid_token", "")
		return
	}
	// As at the gate: a certificate-bound token only over a connection
	// with that certificate (RFC 8705 §3; a trusted proxy's header was
	// taken before the engine), then the DPoP proof; a token bound both
	// ways needs both.
	if !c.CertBound(r) {
		if dpopScheme {
			e.writeUserinfoDPoPError(w, bearer, tokens.ErrDPoPTokenScheme)
		} else {
			tokens.WriteBearerError(w, base, http.StatusUnauthorized, "invalid_token", "")
		}
		return
	}
	if err := e.userinfoDPoP(r, tok, c, dpopScheme); err != nil {
		e.writeUserinfoDPoPError(w, bearer, err)
		return
	}
	scopes := c.Scopes()
	if !slices.Contains(scopes, "openid") {
		tokens.WriteBearerError(w, base, http.StatusForbidden, "insufficient_scope", "openid")
		return
	}
	if IsExternalSubject(c.Subject) {
		// An external subject is never looked up as a local user: the
		// answer is what the token itself says of its origin.
		claims := map[string]any{"sub": c.Subject}
		if c.ExtIss != "" {
			claims["ext_iss"], claims["ext_sub"] = c.ExtIss, c.ExtSub
		}
		writeJSON(w, http.StatusOK, claims)
		return
	}
	u, err := e.users.LookupSubject(r.Context(), c.Subject)
	if errors.Is(err, ErrUserNotFound) {
		tokens.WriteBearerError(w, base, http.StatusUnauthorized, "invalid_token", "")
		return
	}
	if err != nil {
		e.logFailure(r.Context(), "userinfo", CodeTemporarilyUnavailable, err)
		WriteError(w, storageError(err))
		return
	}
	claims := userClaims(u, scopes)
	claims["sub"] = u.Subject()
	writeJSON(w, http.StatusOK, claims)
}
