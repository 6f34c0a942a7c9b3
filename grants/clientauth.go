package grants

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// dummyHash is compared against when the client is unknown, so an unknown
// client_id costs the same as a wrong secret (so that timing tells nothing).
var dummyHash = sha256.Sum256([]byte("caddy-oauthgate: no such client"))

// authErrors are the refusals of client authentication, made once per
// engine: every failed authentication answers one of them, and errors are
// never changed once made (withCause copies).
type authErrors struct {
	failed, failedBasic, required *Error
}

func newAuthErrors(realm string) authErrors {
	return authErrors{
		failed: &Error{Code: CodeInvalidClient, Description: "client authentication failed", Status: http.StatusUnauthorized},
		failedBasic: &Error{Code: CodeInvalidClient, Description: "client authentication failed", Status: http.StatusUnauthorized,
			Challenge: `Basic realm="` + realm + `"`},
		required: &Error{Code: CodeInvalidClient, Description: "client authentication is required", Status: http.StatusUnauthorized},
	}
}

// parseBasic decodes an RFC 6749 §2.3.1 Basic credential: base64 of
// form-urlencoded id, ':', form-urlencoded secret. net/http's BasicAuth
// does not form-decode, so it cannot be used here.
func parseBasic(h string) (id, secret string, ok bool) {
	scheme, cred, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", false
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil || id == "" {
		return "", "", false
	}
	return id, secret, true
}

// authenticateClient identifies and authenticates the client of a token,
// introspection or revocation request. Exactly one method may be used;
// the client must use the one it registered.
func (e *Engine) authenticateClient(r *http.Request, form Form) (*Client, *Error) {
	failed := e.authErrs.failed
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return nil, errRequest("the Authorization header is repeated")
	}
	if c, ok := e.authenticateInProcess(r.Context(), authz, form); ok {
		return c, nil
	}
	if len(authz) == 1 {
		// RFC 6749 §5.2: a 401 after the client tried the Authorization
		// header must carry WWW-Authenticate, whatever else failed.
		failed = e.authErrs.failedBasic
	}
	if form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
		if len(authz) == 1 || form.Get("client_secret") != "" {
			// More than one method (RFC 6749 §2.3): refused as a failed
			// authentication, whichever would have succeeded.
			return nil, failed
		}
		return e.authenticateAssertion(r.Context(), form, failed)
	}
	var id, secret, method string
	switch {
	case len(authz) == 1:
		var ok bool
		if id, secret, ok = parseBasic(authz[0]); !ok {
			return nil, failed
		}
		if form.Get("client_secret") != "" {
			return nil, errRequest("use only one client authentication method per request")
		}
		if cid := form.Get("client_id"); cid != "" && cid != id {
			return nil, errRequest("client_id does not match the authenticated client")
		}
		method = AuthSecretBasic
	case form.Get("client_secret") != "":
		id, secret, method = form.Get("client_id"), form.Get("client_secret"), AuthSecretPost
		if id == "" {
			return nil, failed
		}
	default:
		// A public client names itself and has nothing to prove; PKCE
		// protects its codes instead (RFC 6749 §2.1, RFC 7636).
		c, err := e.lookupClient(r.Context(), form.Get("client_id"))
		if err != nil {
			return nil, storageError(err)
		}
		if c != nil && c.AuthMethod == AuthNone {
			return c, nil
		}
		if tokens.ClientCert(r) != nil {
			// RFC 8705 §2: the certificate of the TLS connection is the
			// credential; an unknown client_id fails as a wrong one does.
			return e.authenticateCert(r.Context(), r, c, failed)
		}
		return nil, e.authErrs.required
	}
	c, err := e.lookupClient(r.Context(), id)
	if err != nil {
		return nil, storageError(err)
	}
	known := c != nil
	want := &dummyHash
	if known {
		want = &c.SecretHash
	}
	got := HashSecret(secret)
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	if !known || !match || c.AuthMethod != method {
		return nil, failed
	}
	return c, nil
}
