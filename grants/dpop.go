package grants

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// DPoP at the token endpoint (RFC 9449 §5): a token request with a valid
// proof gets a DPoP-bound access token (cnf.jkt, token_type DPoP) from
// every grant, since issueAccessToken binds whatever token it issues to
// the proof of the request.

// DPoP error codes (RFC 9449 §12.2).
const (
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	CodeUseDPoPNonce     = "use_dpop_nonce"
)

// DPoPConfig configures DPoP proofs at the token endpoint.
type DPoPConfig struct {
	// Nonce makes every proof carry a server nonce (RFC 9449 §8),
	// handed out in the DPoP-Nonce header. The nonces are stateless,
	// derived from the signing key, so every node of a cluster accepts
	// those of the others. Default false.
	Nonce bool
	// Algs are the proof algorithms accepted; tokens.DefaultDPoPAlgs
	// (every registered asymmetric one) when empty.
	Algs []string
}

// newDPoP makes the token endpoint's proof verifier.
func newDPoP(cfg DPoPConfig, keys *tokens.Keys) (*tokens.DPoPVerifier, error) {
	o := tokens.DPoPOptions{Algs: cfg.Algs}
	if cfg.Nonce {
		o.Nonces = keys.DPoPNonces(0)
	}
	return tokens.NewDPoPVerifier(o)
}

// DPoPAlgs are the proof algorithms the token endpoint accepts, for a
// resource server of this issuer (oauth_protect).
func (e *Engine) DPoPAlgs() []string { return e.dpop.Algs() }

// DPoPNonces are the token endpoint's server nonces, nil unless
// DPoPConfig.Nonce: stateless, so a resource server of this issuer
// hands out and accepts the same ones.
func (e *Engine) DPoPNonces() *tokens.DPoPNonces { return e.dpop.Nonces() }

// dpopKey is the context key of a token request's verified proof.
type dpopKey struct{}

// dpopJKT is the thumbprint of the request's verified proof key, or "".
func dpopJKT(ctx context.Context) string {
	if p, ok := ctx.Value(dpopKey{}).(*tokens.DPoPProof); ok {
		return p.JKT
	}
	return ""
}

// refreshBinding is the key a new grant's refresh tokens are bound to:
// a public client's proof key (RFC 9449 §5); a confidential client's
// refresh tokens are bound to its authentication instead.
func refreshBinding(ctx context.Context, c *Client) string {
	if c.AuthMethod != AuthNone {
		return ""
	}
	return dpopJKT(ctx)
}

// tokenDPoP checks the token request's proof, if any, against the token
// endpoint's URL built from the configured issuer. A client registered
// with dpop_bound_access_tokens must send one. With nonces on, every
// answer to a request with a proof carries a fresh DPoP-Nonce.
func (e *Engine) tokenDPoP(w http.ResponseWriter, r *http.Request, c *Client) (*tokens.DPoPProof, *Error) {
	if !tokens.HasDPoPProof(r.Header) {
		if c.DPoPBoundAccessTokens {
			return nil, errCode(CodeInvalidDPoPProof, "this client must send a DPoP proof (it is registered with dpop_bound_access_tokens)")
		}
		return nil, nil
	}
	return e.verifyDPoP(w, r, e.issuer+TokenPath)
}

// verifyDPoP checks the request's DPoP proof for the endpoint at url
// (built from the configured issuer, never from Host). With nonces on,
// the answer carries a fresh DPoP-Nonce.
func (e *Engine) verifyDPoP(w http.ResponseWriter, r *http.Request, url string) (*tokens.DPoPProof, *Error) {
	if n := e.dpop.Nonces(); n != nil {
		if v := n.Current(time.Now()); v != "" {
			w.Header().Set(tokens.DPoPNonceHeader, v)
		}
	}
	p, err := e.dpop.Verify(r.Header, tokens.DPoPCheck{Method: r.Method, URL: url})
	if err == nil {
		return p, nil
	}
	var de *tokens.DPoPError
	switch {
	case errors.Is(err, tokens.ErrUseDPoPNonce):
		return nil, errCode(CodeUseDPoPNonce, "send a DPoP proof with the nonce from the DPoP-Nonce header")
	case errors.Is(err, tokens.ErrDPoPBusy):
		return nil, &Error{Code: CodeTemporarilyUnavailable, Description: "too many DPoP proofs at once; retry", Status: http.StatusServiceUnavailable, RetryAfter: 1}
	case errors.As(err, &de):
		return nil, errCode(CodeInvalidDPoPProof, de.Reason)
	}
	return nil, errServer.withCause(err)
}

// bindDPoP binds an access token to the request's proof key, if any,
// and returns its token type.
func bindDPoP(ctx context.Context, claims *tokens.AccessClaims) string {
	jkt := dpopJKT(ctx)
	if jkt == "" {
		return "Bearer"
	}
	if claims.Cnf == nil {
		claims.Cnf = &tokens.Cnf{}
	}
	claims.Cnf.JKT = jkt
	return "DPoP"
}

// errDPoPBound refuses a refresh of a grant bound to another DPoP key,
// or without a proof (RFC 9449 §5).
var errDPoPBound = errCode(CodeInvalidGrant, "this refresh token is bound to a DPoP key: send a DPoP proof signed with that key")

// errDPoPCode refuses the redemption of a code bound by dpop_jkt with a
// proof of another key, or without one (RFC 9449 §10).
var errDPoPCode = errCode(CodeInvalidGrant, "this authorization code is bound to a DPoP key (dpop_jkt): send a DPoP proof signed with that key")

// userinfoDPoP applies RFC 9449 §7 at the userinfo endpoint, a resource
// server of this issuer: a bound token needs the DPoP scheme and a proof
// for the userinfo URL built from the configured issuer (never from
// Host), on every request.
func (e *Engine) userinfoDPoP(r *http.Request, tok string, c *tokens.AccessClaims, dpopScheme bool) error {
	jkt := ""
	if c.Cnf != nil {
		jkt = c.Cnf.JKT
	}
	return e.dpop.CheckResource(r.Header, tokens.DPoPCheck{Method: r.Method, URL: e.issuer + UserinfoPath, AccessToken: tok}, jkt, dpopScheme)
}

// writeUserinfoDPoPError answers a DPoP refusal at userinfo: the DPoP
// challenge with the error beside the Bearer one, and a fresh nonce
// when nonces are on.
func (e *Engine) writeUserinfoDPoPError(w http.ResponseWriter, bearer string, err error) {
	nonce := ""
	if n := e.dpop.Nonces(); n != nil {
		nonce = n.Current(time.Now())
	}
	tokens.WriteDPoPError(w, bearer, tokens.DPoPChallenge(e.realm, e.dpop.Algs(), ""), err, nonce)
}
