package grants

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes caps a token request body. Real requests are a few hundred
// bytes; even a large JWT assertion fits well inside this.
const MaxBodyBytes = 64 << 10

// Form is a parsed token-endpoint request body: one value per parameter,
// empty values removed (RFC 6749 §3.1: a parameter sent without a value is
// treated as omitted).
type Form map[string]string

// Get returns the parameter's value, or "" when it was absent or empty.
func (f Form) Get(name string) string { return f[name] }

// parameters defined by the specifications this server implements. A
// repeated defined parameter makes the request invalid (RFC 6749 §3.1);
// undefined ones are ignored, however often they appear.
var knownParams = map[string]bool{
	"grant_type": true, "scope": true, "client_id": true, "client_secret": true,
	"client_assertion": true, "client_assertion_type": true, "code": true,
	"redirect_uri": true, "code_verifier": true, "refresh_token": true,
	"username": true, "password": true, "resource": true, "audience": true,
	"subject_token": true, "subject_token_type": true, "actor_token": true,
	"actor_token_type": true, "requested_token_type": true, "assertion": true,
	"device_code": true, "token": true, "token_type_hint": true,
}

// ParseForm reads a token-style request: a POST whose body alone carries
// the parameters as application/x-www-form-urlencoded. It enforces the
// request rules of RFC 6749 §3.2 and our stricter ones: no parameters in
// the URL, no repeated parameters, valid UTF-8, a capped body.
func ParseForm(w http.ResponseWriter, r *http.Request) (Form, *Error) {
	if r.Method != http.MethodPost {
		return nil, &Error{Code: CodeInvalidRequest, Description: "this endpoint accepts only POST",
			Status: http.StatusMethodNotAllowed, Allow: http.MethodPost}
	}
	if r.URL.RawQuery != "" {
		return nil, errRequest("parameters must be sent in the request body, not in the URL")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, errWithStatus(CodeInvalidRequest, http.StatusUnsupportedMediaType,
			"the request body must not be compressed")
	}
	if len(r.Header.Values("Content-Type")) > 1 {
		return nil, errRequest("the Content-Type header is repeated")
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errRequest("the request body must be application/x-www-form-urlencoded")
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return nil, errRequest("the request body must be application/x-www-form-urlencoded in UTF-8")
		}
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, errWithStatus(CodeInvalidRequest, http.StatusRequestEntityTooLarge, "the request body is too large")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errWithStatus(CodeInvalidRequest, http.StatusRequestEntityTooLarge, "the request body is too large")
		}
		return nil, errRequest("the request body could not be read")
	}
	return parseFormBody(string(body))
}

func parseFormBody(body string) (Form, *Error) {
	values, err := url.ParseQuery(body)
	if err != nil {
		return nil, errRequest("the request body is not valid form encoding")
	}
	form := make(Form, len(values))
	for name, vs := range values {
		if !knownParams[name] {
			continue
		}
		if len(vs) > 1 {
			return nil, errRequest("parameter " + name + " is repeated")
		}
		if !utf8.ValidString(vs[0]) {
			return nil, errRequest("parameter " + name + " is not valid UTF-8")
		}
		if vs[0] != "" {
			form[name] = vs[0]
		}
	}
	return form, nil
}

// resolvedIPKey carries the client address the front end resolved.
type resolvedIPKey struct{}

// WithClientIP records the client address the front end resolved from
// the connection and its trusted proxies (Caddy's client IP, which
// honours trusted_proxies), so IsLoopback sees through a local proxy.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, resolvedIPKey{}, ip)
}

// IsLoopback reports whether a request came from this machine, the only
// place plain HTTP is allowed to reach endpoints that carry credentials:
// the peer is a loopback address and so is the client address a trusted
// local proxy reported (WithClientIP), when there is one.
func IsLoopback(r *http.Request) bool {
	if !isLoopbackAddr(r.RemoteAddr) {
		return false
	}
	ip, ok := r.Context().Value(resolvedIPKey{}).(string)
	return !ok || isLoopbackAddr(ip)
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// TransportOK is the one TLS rule for requests that carry credentials,
// at the authorization server and at the gate: TLS, or TLS ended in a
// proxy the operator declared (behindTLSProxy), or plain HTTP from this
// machine (RFC 6749 §3.2, RFC 6750 §5.3).
func TransportOK(r *http.Request, behindTLSProxy bool) bool {
	return r.TLS != nil || behindTLSProxy || IsLoopback(r)
}
