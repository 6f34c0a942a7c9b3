package grants

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
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

// Values returns every value of a parameter that may repeat (see
// exchangeRepeatable), or the one value of any other; nil when absent.
func (f Form) Values(name string) []string {
	if all, ok := f[multiKey(name)]; ok {
		return strings.Split(all, "\x00")
	}
	if v := f[name]; v != "" {
		return []string{v}
	}
	return nil
}

// multiKey is where a repeated parameter's values are kept, joined by 0
// bytes: no parameter name starts with one.
func multiKey(name string) string { return "\x00" + name }

// exchangeRepeatable are the parameters token exchange allows more than
// once (RFC 8693 §2.1: audience and resource may be repeated). Every
// other grant still refuses a repeated one.
var exchangeRepeatable = map[string]bool{"audience": true, "resource": true}

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

// DiscardBody reads and drops what is left of a request body, up to
// MaxBodyBytes, before a refusal that did not need the body is sent.
// net/http does not drain the body of a request that asked for
// Connection: close; closing with unread bytes resets the connection, and
// a client still sending its body gets the reset instead of our answer.
// A body declared larger than the cap is left alone: reading it would
// cost more than the answer is worth.
func DiscardBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength > MaxBodyBytes {
		return
	}
	_, _ = io.CopyN(io.Discard, r.Body, MaxBodyBytes)
}

// ParseForm reads a token-style request: a POST whose body alone carries
// the parameters as application/x-www-form-urlencoded. It enforces the
// request rules of RFC 6749 §3.2 and our stricter ones: no parameters in
// the URL, no repeated parameters, valid UTF-8, a capped body. A request
// refused before its body is read has its body discarded (DiscardBody).
func ParseForm(w http.ResponseWriter, r *http.Request) (Form, *Error) {
	if oerr := checkFormRequest(r); oerr != nil {
		DiscardBody(r)
		return nil, oerr
	}
	return readFormBody(w, r, knownParams)
}

// checkFormRequest checks what ParseForm checks before reading the body.
func checkFormRequest(r *http.Request) *Error {
	if r.Method != http.MethodPost {
		return &Error{Code: CodeInvalidRequest, Description: "this endpoint accepts only POST",
			Status: http.StatusMethodNotAllowed, Allow: http.MethodPost}
	}
	if r.URL.RawQuery != "" {
		return errRequest("parameters must be sent in the request body, not in the URL")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return errWithStatus(CodeInvalidRequest, http.StatusUnsupportedMediaType,
			"the request body must not be compressed")
	}
	if len(r.Header.Values("Content-Type")) > 1 {
		return errRequest("the Content-Type header is repeated")
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return errRequest("the request body must be application/x-www-form-urlencoded")
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return errRequest("the request body must be application/x-www-form-urlencoded in UTF-8")
		}
	}
	if r.ContentLength > MaxBodyBytes {
		return errWithStatus(CodeInvalidRequest, http.StatusRequestEntityTooLarge, "the request body is too large")
	}
	return nil
}

// readFormBody reads and parses the body of a checked form request,
// keeping the parameters known names.
func readFormBody(w http.ResponseWriter, r *http.Request, known map[string]bool) (Form, *Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errWithStatus(CodeInvalidRequest, http.StatusRequestEntityTooLarge, "the request body is too large")
		}
		return nil, errRequest("the request body could not be read")
	}
	return parseFormBody(string(body), known)
}

func parseFormBody(body string, known map[string]bool) (Form, *Error) {
	values, err := url.ParseQuery(body)
	if err != nil {
		return nil, errRequest("the request body is not valid form encoding")
	}
	form := make(Form, len(values))
	exchange := len(values["grant_type"]) == 1 && values["grant_type"][0] == GrantTokenExchange
	for name, vs := range values {
		if !known[name] {
			continue
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return nil, errRequest("parameter " + name + " is not valid UTF-8")
			}
		}
		if len(vs) > 1 {
			if !exchange || !exchangeRepeatable[name] {
				return nil, errRequest("parameter " + name + " is repeated")
			}
			if slices.ContainsFunc(vs, func(v string) bool { return v == "" || strings.Contains(v, "\x00") }) {
				return nil, errRequest("a repeated parameter " + name + " is empty or contains a 0 byte")
			}
			form[name] = vs[0]
			form[multiKey(name)] = strings.Join(vs, "\x00")
			continue
		}
		if vs[0] != "" {
			form[name] = vs[0]
		}
	}
	return form, nil
}

// ClientIP is the client address for a request: the one the front end
// resolved (WithFront), else the connection's peer.
func ClientIP(r *http.Request) string {
	if f := frontOf(r.Context()); f != nil && f.ClientIP != "" {
		return f.ClientIP
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// IsLoopback reports whether a request came from this machine
// (tokens.IsLoopbackFrom with the client address the front end gave).
func IsLoopback(r *http.Request) bool {
	return tokens.IsLoopbackFrom(r, clientIPOf(r.Context()))
}

// TransportOK is the one TLS rule for requests that carry credentials,
// at the authorization server and at the gate: TLS, or TLS ended in a
// proxy the operator declared (behindTLSProxy), or plain HTTP from this
// machine (RFC 6749 §3.2, RFC 6750 §5.3).
func TransportOK(r *http.Request, behindTLSProxy bool) bool {
	return r.TLS != nil || behindTLSProxy || IsLoopback(r)
}
