package grants

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TokenResponse is the RFC 6749 §5.1 success body.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IssuedTokenType is set by token exchange (RFC 8693 §2.2.1).
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// requireTLS refuses plain-HTTP requests that carry credentials unless
// they come from this machine or the operator said TLS ends in front of
// Caddy (RFC 6749 §3.2). The refusal comes before anything reads the
// body, so it discards the body first (see DiscardBody).
func (e *Engine) requireTLS(r *http.Request) *Error {
	if TransportOK(r, e.behindTLSProxy) {
		return nil
	}
	DiscardBody(r)
	return errRequest("this endpoint must be reached over HTTPS")
}

// serveToken is the token endpoint (RFC 6749 §3.2).
func (e *Engine) serveToken(w http.ResponseWriter, r *http.Request) {
	if e.cors(w, r, corsAppOrigins, http.MethodPost) {
		return
	}
	start := time.Now()
	defer func() { e.observer.TokenDuration(time.Since(start)) }()
	resp, oerr := e.token(w, r)
	if oerr != nil {
		e.observer.TokenRefused(oerr.Code)
		e.refused(r.Context(), "token", "token request refused", oerr)
		WriteError(w, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (e *Engine) token(w http.ResponseWriter, r *http.Request) (*TokenResponse, *Error) {
	if err := e.requireTLS(r); err != nil {
		return nil, err
	}
	form, oerr := ParseForm(w, r)
	if oerr != nil {
		return nil, oerr
	}
	gt := form.Get("grant_type")
	if gt == "" {
		return nil, errRequest("grant_type is required")
	}
	handle, ok := e.grants[gt]
	if !ok {
		return nil, errCode(CodeUnsupportedGrantType, "this grant type is not supported")
	}
	client, oerr := e.authenticateClient(r, form)
	if oerr != nil {
		return nil, oerr
	}
	if !client.Allows(gt) {
		return nil, errCode(CodeUnauthorizedClient, "this client may not use this grant type")
	}
	proof, oerr := e.tokenDPoP(w, r, client)
	if oerr != nil {
		return nil, oerr
	}
	ctx := r.Context()
	if proof != nil {
		ctx = context.WithValue(ctx, dpopKey{}, proof)
	}
	if frontOf(ctx) == nil {
		// No front end said who the client is (a plain net/http server):
		// the grants count the connection's peer.
		ctx = WithFront(ctx, &Front{ClientIP: ClientIP(r)})
	}
	ctx = withCertBinding(ctx, r)
	resp, oerr := handle(ctx, client, form)
	if oerr != nil {
		return nil, oerr
	}
	e.observer.TokenIssued(gt, client.ID)
	e.markClientUsed(ctx, client)
	if e.logger.Core().Enabled(zapcore.DebugLevel) {
		// Checked first: the fields would be built (and escape to the
		// heap) on every token even when debug logging is off.
		e.debug(r.Context(), "token issued", zap.String("client_id", client.ID), zap.String("grant_type", gt))
	}
	return resp, nil
}
