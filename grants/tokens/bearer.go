package tokens

import (
	"net/http"
	"net/url"
	"strings"
)

// BearerToken extracts the RFC 6750 §2.1 token. A non-zero status means
// the request is refused: 401 with no error code when there is no bearer
// token, and 400 invalid_request when it is malformed or a token is
// offered in the URL, which we never accept (RFC 6750 §3.1: an
// unsupported method is invalid_request, answered with 400).
func BearerToken(r *http.Request) (token string, status int, code string) {
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return "", http.StatusBadRequest, "invalid_request"
	}
	if HasTokenParam(r.URL.RawQuery) {
		return "", http.StatusBadRequest, "invalid_request" // never in the URL (RS-06), nor twice (RS-04)
	}
	if len(authz) == 0 {
		return "", http.StatusUnauthorized, ""
	}
	scheme, tok, _ := strings.Cut(authz[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", http.StatusUnauthorized, ""
	}
	if !isB64Token(tok) {
		return "", http.StatusBadRequest, "invalid_request"
	}
	return tok, 0, ""
}

// HasTokenParam reports whether a query string or form-encoded body
// carries an access_token parameter (RFC 6750 §2.2, §2.3) as any
// application behind a gate might read it: pairs split on '&' and ';',
// names percent- and plus-decoded, leading spaces dropped, an array
// suffix ('access_token[]', '[x]') ignored, and '.', ' ' and '[' read as
// '_' the way PHP folds them.
func HasTokenParam(raw string) bool {
	for raw != "" {
		var pair string
		if i := strings.IndexAny(raw, "&;"); i >= 0 {
			pair, raw = raw[:i], raw[i+1:]
		} else {
			pair, raw = raw, ""
		}
		name, _, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if IsTokenParamName(name) {
			return true
		}
	}
	return false
}

// IsTokenParamName reports whether a decoded parameter (or multipart
// field) name is read as access_token by a lenient application: PHP (up to a NUL, leading spaces dropped, '.', ' ' and
// '[' as '_', an array suffix ignored) and ASP.NET (any letter case).
func IsTokenParamName(name string) bool {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ")
	if len(name) < len("access_token") {
		return false
	}
	// PHP: a '[' followed later by ']' starts an array index.
	if i := strings.IndexByte(name, '['); i >= 0 && strings.IndexByte(name[i:], ']') > 0 {
		name = name[:i]
	}
	if len(name) != len("access_token") {
		return false
	}
	return strings.EqualFold(strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' || r == '[' {
			return '_'
		}
		return r
	}, name), "access_token")
}

// isB64Token checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=". It runs over every token at the gate, so
// the characters come from a table.
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64TokenChar[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// b64TokenChar marks the characters of a b64token before its padding.
var b64TokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// BearerChallenge renders an RFC 6750 §3 WWW-Authenticate value. base is
// `Bearer realm="…"` plus any fixed parameters; nothing from the request
// is ever echoed.
func BearerChallenge(base, code, scope string) (challenge, body string) {
	switch code {
	case "":
		return base, `{"error_description":"an access token is required"}`
	case "invalid_token":
		const d = "the access token is invalid, expired or not for this resource"
		return base + `, error="invalid_token", error_description="` + d + `"`, `{"error":"invalid_token","error_description":"` + d + `"}`
	case "insufficient_scope":
		return base + `, error="insufficient_scope", scope="` + scope + `"`, `{"error":"insufficient_scope","error_description":"the access token lacks a required scope"}`
	default:
		d := "send the access token once, in the Authorization header as Bearer"
		if strings.HasPrefix(base, "DPoP ") {
			d = "send the access token once, in the Authorization header as DPoP, with a DPoP proof"
		}
		return base + `, error="invalid_request", error_description="` + d + `"`, `{"error":"invalid_request","error_description":"` + d + `"}`
	}
}

// WriteBearerError answers a resource request per RFC 6750 §3.
func WriteBearerError(w http.ResponseWriter, base string, status int, code, scope string) {
	ch, body := BearerChallenge(base, code, scope)
	writeBearer(w, status, ch, body)
}

// WriteBearerRequestError answers 400 invalid_request with a fixed
// description that says what to fix. desc must be a constant: it is
// quoted as is and never carries request data.
func WriteBearerRequestError(w http.ResponseWriter, base string, status int, desc string) {
	writeBearer(w, status, base+`, error="invalid_request", error_description="`+desc+`"`,
		`{"error":"invalid_request","error_description":"`+desc+`"}`)
}

func writeBearer(w http.ResponseWriter, status int, challenge, body string) {
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
