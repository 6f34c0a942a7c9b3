package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// LoginClient registers the sign-in client of a browser-mode
// oauth_protect (grants.Engine.AddLoginClient: idempotent by redirectURI,
// in memory, registered again by every config load) and returns its
// client id and the RoundTripper that carries the gate's requests for the
// issuer's URLs (discovery, JWKS, token, revocation, userinfo) to this
// server in process, authenticated as that client. The RoundTripper opens
// the storage on first use; while it is unavailable it answers 503
// temporarily_unavailable, as the network endpoints do.
func (a *App) LoginClient(redirectURI, postLogoutURI, name, audience string, scopes []string) (clientID string, rt http.RoundTripper, err error) {
	clientID, err = a.engine.AddLoginClient(redirectURI, postLogoutURI, name, audience, scopes)
	if err != nil {
		return "", nil, err
	}
	return clientID, appTransport{a: a, next: a.engine.InProcessTransport()}, nil
}

// SessionSealer seals the session cookies of browser-mode gates with keys
// derived from the signing key ring; it opens the storage on first use.
func (a *App) SessionSealer() (*tokens.Sealer, error) {
	eng, err := a.ready()
	if err != nil {
		return nil, err
	}
	return eng.SessionSealer(), nil
}

// appTransport starts the app before a request goes to the engine.
type appTransport struct {
	a    *App
	next http.RoundTripper
}

func (t appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, err := t.a.ready(); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return unavailableResponse(req), nil
	}
	return t.next.RoundTrip(req)
}

// unavailableResponse is the 503 an oauth_server answers while the
// storage cannot be opened.
func unavailableResponse(req *http.Request) *http.Response {
	rec := &bufferedResponse{header: http.Header{}}
	grants.WriteError(rec, &grants.Error{Code: grants.CodeTemporarilyUnavailable,
		Description: "the authorization server is starting or its storage is unavailable; retry later",
		Status:      http.StatusServiceUnavailable, RetryAfter: grants.RetryAfterUnavailable})
	return &http.Response{
		Status:     strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		StatusCode: rec.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()), Request: req,
	}
}

// bufferedResponse collects a response written by grants.WriteError.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferedResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}
