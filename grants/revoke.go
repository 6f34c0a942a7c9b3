package grants

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// serveRevoke is the RFC 7009 revocation endpoint. Revoking a refresh
// token (also one rotated away from) revokes its whole grant: every
// refresh token of the family and every access token issued from it. Revoking an access token revokes
// that token only (its refresh token stays usable). Unknown, expired and
// already-revoked tokens get 200 like any other; a token of another
// client is refused with unauthorized_client and stays valid.
func (e *Engine) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if e.cors(w, r, corsAppOrigins, http.MethodPost) {
		return
	}
	if oerr := e.revoke(w, r); oerr != nil {
		e.refused(r.Context(), "revoke", "revocation refused", oerr)
		WriteError(w, oerr)
		return
	}
	noStore(w.Header())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

func (e *Engine) revoke(w http.ResponseWriter, r *http.Request) *Error {
	c, form, oerr := e.clientRequest(w, r)
	if oerr != nil {
		return oerr
	}
	f, err := e.lookupToken(r.Context(), form.Get("token"), form.Get("token_type_hint"))
	if err != nil {
		return storageError(err)
	}
	stale := false
	if f == nil {
		// A refresh token the grant has rotated away from still names
		// the grant: revoking it ends the grant, as presenting it at the
		// token endpoint would (reuse detection). A client that signs
		// out with the token it holds must not leave the newer tokens of
		// its grant alive.
		if f, err = e.findRefresh(r.Context(), form.Get("token"), true); err != nil {
			return storageError(err)
		}
		stale = f != nil
	}
	if f == nil {
		return nil
	}
	if f.clientID() != c.ID && stale {
		// Another client's grant, named by a token that is not active:
		// answered like an unknown token, so that the answer does not
		// confirm the grant exists.
		return nil
	}
	if f.clientID() != c.ID {
		return errCode(CodeUnauthorizedClient, "the token was not issued to this client")
	}
	var revoked map[string]int64
	if f.access != nil {
		revoked = map[string]int64{f.access.ID: f.access.ExpiresAt}
	}
	err = e.store.Batch(r.Context(), func(tx storage.Tx) error {
		if f.access != nil {
			return tokens.PersistRevoked(tx, revoked)
		}
		var err error
		revoked, err = e.revokeFamily(tx, f.key)
		return err
	})
	if err != nil {
		return storageError(err)
	}
	e.revocations.Add(revoked)
	e.debug(r.Context(), "token revoked", zap.String("client_id", c.ID), zap.Bool("grant", f.access == nil))
	return nil
}
