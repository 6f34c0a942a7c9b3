package grants

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ErrNotIssuerURL is the error of InProcessTransport for a URL that is
// not one of the engine's.
var ErrNotIssuerURL = errors.New("in-process transport: the URL is not one of this authorization server's")

// InProcessTransport returns a RoundTripper that serves requests for the
// engine's URLs (the issuer's scheme and host, and a path the engine
// answers: discovery, JWKS, token, revocation, introspection, userinfo,
// ...) by calling the engine's handlers directly, without a network hop.
// Such a request counts as made over TLS, and it is the only way a login
// client (AddLoginClient) authenticates: it names itself with client_id
// (or HTTP Basic with an empty password) and no secret.
//
// A URL of another scheme or host, or a path the engine does not answer,
// gives an error wrapping ErrNotIssuerURL; before Start every request
// gives an error. The response is complete (status, headers, body) and
// its body needs no network.
func (e *Engine) InProcessTransport() http.RoundTripper { return inProcessTransport{e} }

type inProcessTransport struct{ e *Engine }

func (t inProcessTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	e := t.e
	// A RoundTripper must close the body, whatever happens.
	closeBody := func() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
	}
	iss, _ := url.Parse(e.issuer)
	u := req.URL
	if u == nil || !strings.EqualFold(u.Scheme, iss.Scheme) || !strings.EqualFold(u.Host, iss.Host) || u.User != nil {
		closeBody()
		return nil, fmt.Errorf("%w: %s (issuer %s)", ErrNotIssuerURL, redactedURL(u), e.issuer)
	}
	h, ok := e.Route(u.Path)
	if !ok {
		closeBody()
		return nil, fmt.Errorf("%w: %s (issuer %s)", ErrNotIssuerURL, redactedURL(u), e.issuer)
	}
	if e.verifier == nil {
		closeBody()
		return nil, errors.New("in-process transport: the authorization server is not started")
	}
	ctx := context.WithValue(req.Context(), inProcessKey{}, true)
	r := req.Clone(ctx)
	// Handlers read RequestURI-free requests like a server's: a body
	// that is never nil, TLS (the request never left the process), and
	// the host it was sent to.
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, ServerName: iss.Hostname()}
	r.RemoteAddr = "127.0.0.1:0"
	r.Host = u.Host
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	rec := &responseRecorder{header: http.Header{}}
	h(rec, r)
	closeBody()
	if rec.sent == nil {
		rec.WriteHeader(http.StatusOK)
	}
	body := rec.body.Bytes()
	if req.Method == http.MethodHead {
		body = nil
	}
	resp := &http.Response{
		Status:        strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.sent,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
	return resp, nil
}

// redactedURL is u without its query (which may carry a token), for
// errors.
func redactedURL(u *url.URL) string {
	if u == nil {
		return "(no URL)"
	}
	c := *u
	c.RawQuery, c.Fragment, c.User = "", "", nil
	return c.String()
}

// responseRecorder collects a handler's response in memory.
type responseRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	// sent is the header as it was when the status was written: what a
	// server would have sent.
	sent http.Header
}

func (w *responseRecorder) Header() http.Header { return w.header }

func (w *responseRecorder) WriteHeader(status int) {
	if w.sent != nil {
		return
	}
	w.sent = w.header.Clone()
	w.status = status
}

func (w *responseRecorder) Write(b []byte) (int, error) {
	if w.sent == nil {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(b)
}
