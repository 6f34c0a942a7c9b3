package tokens

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// DPoP at a resource server (RFC 9449 §7), shared by oauth_protect and
// the userinfo endpoint: which scheme a token came with, the binding
// rules, and the challenges.

// ErrDPoPTokenScheme is the class of a token presented with the wrong
// scheme: a DPoP-bound token as Bearer (a downgrade, §7.2), or an unbound
// token as DPoP. It answers invalid_token.
var ErrDPoPTokenScheme = errors.New("invalid_token")

// ResourceToken is BearerToken that also takes the DPoP scheme (RFC 9449
// §7.1): dpop reports which scheme the token came with. Both schemes
// carry a b64token (RFC 9449 §7.1 uses token68, the same characters).
func ResourceToken(r *http.Request) (token string, dpop bool, status int, code string) {
	if authz := r.Header["Authorization"]; len(authz) == 1 {
		scheme, tok, _ := strings.Cut(authz[0], " ")
		if strings.EqualFold(scheme, "DPoP") {
			if HasTokenParam(r.URL.RawQuery) || !isB64Token(tok) {
				return "", true, http.StatusBadRequest, "invalid_request"
			}
			return tok, true, 0, ""
		}
	}
	token, status, code = BearerToken(r)
	return token, false, status, code
}

// CheckResource applies RFC 9449 §7 to a verified token: jkt is its
// cnf.jkt ("" for an unbound token) and dpopScheme whether it came as
// `Authorization: DPoP`. A bound token needs the DPoP scheme and one
// proof for c (c.AccessToken set, so ath is checked) signed by the key
// it is bound to; an unbound token must come as Bearer. The proof is
// checked on every request, whatever caches the token. A refusal is a
// *DPoPError whose Code is ErrDPoPTokenScheme, ErrInvalidDPoPProof,
// ErrUseDPoPNonce or ErrDPoPBusy.
func (v *DPoPVerifier) CheckResource(h http.Header, c DPoPCheck, jkt string, dpopScheme bool) error {
	switch {
	case !dpopScheme && jkt != "":
		return &DPoPError{Code: ErrDPoPTokenScheme, Reason: "this access token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof"}
	case !dpopScheme:
		return nil
	case jkt == "":
		return &DPoPError{Code: ErrDPoPTokenScheme, Reason: "this access token is not DPoP-bound: send it as Authorization: Bearer"}
	}
	if c.AccessToken == "" {
		return errors.New("tokens: CheckResource needs the access token for the ath check")
	}
	p, err := v.Verify(h, c)
	if err != nil {
		return err
	}
	if p.JKT != jkt {
		return badProof("signed with another key than the one the access token is bound to")
	}
	return nil
}

// DPoPChallenge is the DPoP scheme's challenge (RFC 9449 §7.1): realm,
// the accepted algorithms, and any fixed parameters (such as
// resource_metadata) in extra, which starts with ", " when not empty.
func DPoPChallenge(realm string, algs []string, extra string) string {
	return `DPoP realm="` + realm + `", algs="` + strings.Join(algs, " ") + `"` + extra
}

// dpopDescriptions are the fixed error_description of each DPoP
// refusal in a challenge, which never echoes the request.
var dpopDescriptions = map[string]string{
	"invalid_token":      "the access token was sent with the wrong scheme for its binding",
	"invalid_dpop_proof": "the DPoP proof is missing or invalid",
	"use_dpop_nonce":     "send a DPoP proof with the nonce from the DPoP-Nonce header",
}

// WriteDPoPError answers a resource request the DPoP rules refused
// (err from CheckResource or Verify): 401 with the DPoP challenge
// carrying the error and, when bearer is not empty, the Bearer challenge
// offered too (RFC 9449 §7.1: both schemes are acceptable), in one
// WWW-Authenticate field; with nonce set (a use_dpop_nonce refusal, or
// any refusal while nonces are on) a DPoP-Nonce header. The reason is
// in the JSON body only (JSON-encoded), never in the header. A full
// replay cache answers 503 with Retry-After.
func WriteDPoPError(w http.ResponseWriter, bearer, dpop string, err error, nonce string) {
	h := w.Header()
	if nonce != "" {
		h.Set(DPoPNonceHeader, nonce)
	}
	if errors.Is(err, ErrDPoPBusy) {
		h.Set("Retry-After", "1")
		writeBearer(w, http.StatusServiceUnavailable, dpop, `{"error":"temporarily_unavailable","error_description":"too many DPoP proofs at once; retry"}`)
		return
	}
	code := "invalid_dpop_proof"
	switch {
	case errors.Is(err, ErrUseDPoPNonce):
		code = "use_dpop_nonce"
	case errors.Is(err, ErrDPoPTokenScheme):
		code = "invalid_token"
	}
	reason := dpopDescriptions[code]
	var de *DPoPError
	if errors.As(err, &de) {
		reason = de.Reason
	}
	ch := dpop + `, error="` + code + `", error_description="` + dpopDescriptions[code] + `"`
	if bearer != "" {
		ch = bearer + ", " + ch
	}
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": reason})
	writeBearer(w, http.StatusUnauthorized, ch, string(body))
}

// WriteBearerErrorAlso is WriteBearerError with a second challenge, also
// (such as DPoP's), offered after the Bearer one in the same field.
func WriteBearerErrorAlso(w http.ResponseWriter, base, also string, status int, code, scope string) {
	ch, body := BearerChallenge(base, code, scope)
	writeBearer(w, status, ch+", "+also, body)
}
