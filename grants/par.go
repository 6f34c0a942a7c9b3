package grants

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Pushed authorization requests (RFC 9126): a client posts its
// authorization request to the PAR endpoint, authenticated as at the
// token endpoint, and gets a single-use request_uri for the browser, so
// that nothing of the request rides in the browser's URL and a request
// an attacker changed in the browser is not accepted.

// PARPath is the pushed authorization request endpoint below the
// issuer's path.
const PARPath = "/oauth/par"

// RequestURIPrefix starts every request_uri the PAR endpoint hands out
// (RFC 9126 §2.2).
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// DefaultPushedRequestTTL is how long a request_uri stays usable unless
// PARConfig.TTL says otherwise: long enough for the browser to get there,
// short enough that a leaked one is soon useless (RFC 9126 §2.2 suggests
// 5 to 600 seconds).
const DefaultPushedRequestTTL = 60 * time.Second

// MaxPushedRequestTTL bounds PARConfig.TTL (RFC 9126 §2.2).
const MaxPushedRequestTTL = 10 * time.Minute

// PARConfig configures pushed authorization requests.
type PARConfig struct {
	// Require makes every client push its authorization requests: a
	// plain one to the authorization endpoint is refused with
	// invalid_request (RFC 9126 §5). The sign-in clients of oauth_protect
	// are exempt. Default false (per client: RequirePushedAuthorizationRequests).
	Require bool
	// TTL is the lifetime of a request_uri, 1s to 10m.
	// Default DefaultPushedRequestTTL (60s).
	TTL time.Duration
}

// publicPushLimit is how many requests that store something (pushed
// authorization requests, device authorizations) public clients may make
// from one client address in a minute, each kind counted apart; more are
// answered 429 (RFC 9126 §2.3). A public client authenticates nothing, so
// without a limit anyone could fill storage (conformance A-36);
// confidential clients are not limited. A NAT with many busy browsers
// stays below it.
const publicPushLimit = 120

// limitPublic counts one storing request of kind by a public client from
// r's address (an IPv6 client by its /64: addrKey) and refuses it past
// publicPushLimit a minute. The request that reaches the limit goes
// through and locks the address, as the login throttle counts failures.
func (e *Engine) limitPublic(r *http.Request, kind string) *Error {
	now, key := time.Now(), kind+"|"+addrKey(ClientIP(r))
	if e.parLimit.locked(now, key) {
		return &Error{Code: CodeInvalidRequest, Description: "too many requests from this address; try again later",
			Status: http.StatusTooManyRequests, RetryAfter: 60}
	}
	e.parLimit.failLimit(now, publicPushLimit, key)
	return nil
}

// setPAR checks and applies the PAR configuration.
func (e *Engine) setPAR(cfg PARConfig) error {
	e.parLimit = newThrottle(ThrottleConfig{MaxFailures: publicPushLimit, Window: time.Minute, BaseLock: time.Minute})
	switch {
	case cfg.TTL == 0:
		cfg.TTL = DefaultPushedRequestTTL
	case cfg.TTL < time.Second || cfg.TTL > MaxPushedRequestTTL:
		return fmt.Errorf("pushed_request_ttl must be between 1s and %s, not %s", MaxPushedRequestTTL, cfg.TTL)
	}
	e.par = cfg
	return nil
}

// mustPush reports whether the client may send authorization requests
// only through the PAR endpoint. The gates' sign-in clients make plain
// requests in process and are never made to push.
func (e *Engine) mustPush(c *Client) bool {
	return c.RequirePushedAuthorizationRequests || e.par.Require && !isLoginClientID(c.ID)
}

// parParams are the parameters a push may carry: client authentication
// and the authorization request's; others are ignored.
var parParams = func() map[string]bool {
	m := maps.Clone(knownParams)
	for _, p := range authzParams {
		m[p] = true
	}
	return m
}()

// pushedRecord is a pushed request at rest: the client that pushed it
// and its parameters, checked again when the request_uri is used.
type pushedRecord struct {
	ClientID string            `json:"client_id"`
	Params   map[string]string `json:"params"`
}

// parResponse is the RFC 9126 §2.2 answer.
type parResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int    `json:"expires_in"`
}

// servePAR is the pushed authorization request endpoint (RFC 9126 §2).
// Every refusal is JSON, never a redirect: the client, not a browser,
// called.
func (e *Engine) servePAR(w http.ResponseWriter, r *http.Request) {
	if e.cors(w, r, corsAppOrigins, http.MethodPost) {
		return
	}
	resp, oerr := e.push(w, r)
	if oerr != nil {
		e.refused(r.Context(), "par", "pushed authorization request refused", oerr)
		WriteError(w, oerr)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (e *Engine) push(w http.ResponseWriter, r *http.Request) (*parResponse, *Error) {
	if err := e.requireTLS(r); err != nil {
		return nil, err
	}
	if oerr := checkFormRequest(r); oerr != nil {
		DiscardBody(r)
		return nil, oerr
	}
	form, oerr := readFormBody(w, r, parParams)
	if oerr != nil {
		return nil, oerr
	}
	c, oerr := e.authenticateClient(r, form)
	if oerr != nil {
		return nil, oerr
	}
	if !c.Allows(GrantAuthorizationCode) {
		// Before the redirect URI is looked at: such a client has none.
		return nil, errCode(CodeUnauthorizedClient, "this client may not use the authorization code flow")
	}
	if c.AuthMethod == AuthNone {
		if oerr := e.limitPublic(r, "par"); oerr != nil {
			return nil, oerr
		}
	}
	if form.Get("request_uri") != "" {
		return nil, errRequest("a pushed authorization request must not contain request_uri (RFC 9126 section 2.1)")
	}
	p := make(map[string]string, len(authzParams))
	for _, name := range authzParams {
		if v := form.Get(name); v != "" {
			p[name] = v
		}
	}
	// The authenticated client is the request's client (authenticateClient
	// refused a client_id naming another).
	p["client_id"] = c.ID
	// RFC 9449 §10.1: a DPoP proof sent with the push binds the code as
	// dpop_jkt would; with both, they must name the same key.
	if tokens.HasDPoPProof(r.Header) {
		proof, oerr := e.verifyDPoP(w, r, e.issuer+PARPath)
		if oerr != nil {
			return nil, oerr
		}
		if jkt := p["dpop_jkt"]; jkt != "" && jkt != proof.JKT {
			return nil, errCode(CodeInvalidDPoPProof, "dpop_jkt is not the thumbprint of the DPoP proof's key")
		}
		p["dpop_jkt"] = proof.JKT
	}
	if _, page, rerr := e.checkAuthorize(r.Context(), p, true); page != "" || rerr != nil {
		return nil, e.pushRefusal(page, rerr)
	}
	uri := RequestURIPrefix + newSecretToken()
	err := e.store.Update(r.Context(), func(tx storage.Tx) error {
		return putJSON(tx, storage.KindPushed, hashToken(uri), &pushedRecord{ClientID: c.ID, Params: p}, time.Now().Add(e.par.TTL))
	})
	if err != nil {
		return nil, storageError(err)
	}
	return &parResponse{RequestURI: uri, ExpiresIn: int(e.par.TTL / time.Second)}, nil
}

// pushRefusal turns a refusal of checkAuthorize, made for the browser,
// into the JSON error of the PAR endpoint (RFC 9126 §2.3).
func (e *Engine) pushRefusal(page string, rerr *redirectError) *Error {
	if rerr != nil {
		return errCode(rerr.code, rerr.desc)
	}
	t := e.web.text
	switch page {
	case t.ServiceUnavailable:
		// checkAuthorize has logged the cause.
		return &Error{Code: CodeTemporarilyUnavailable, Description: "try again shortly",
			Status: http.StatusServiceUnavailable, RetryAfter: RetryAfterUnavailable}
	case t.RedirectMissing:
		return errRequest("redirect_uri is required (an OpenID Connect request must name it)")
	case t.RedirectUnregistered:
		return errRequest("redirect_uri is not registered for this client")
	}
	return errRequest(page)
}

// spendPushed takes the pushed request a request_uri names, for the
// client_id the browser brought: found, unexpired and pushed by that
// client, it is deleted in the same transaction (single use, RFC 9126
// §4) and its parameters returned; otherwise page says why not. A
// request_uri presented with another client's id is left for its client.
func (e *Engine) spendPushed(ctx context.Context, clientID, uri string) (map[string]string, string) {
	var (
		rec   pushedRecord
		found bool
	)
	key := hashToken(uri)
	err := e.store.Update(ctx, func(tx storage.Tx) error {
		found = false
		_, err := getJSON(tx, storage.KindPushed, key, &rec)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil
		case err != nil:
			return err
		case rec.ClientID != clientID:
			return nil
		}
		found = true
		return tx.Delete(storage.KindPushed, key)
	})
	if err != nil {
		e.logFailure(ctx, "authorize", CodeTemporarilyUnavailable, err)
		return nil, e.web.text.ServiceUnavailable
	}
	if !found {
		return nil, e.web.text.RequestURIInvalid
	}
	return rec.Params, ""
}
