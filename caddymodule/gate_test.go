package caddymodule

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProtectProvision: every oauth_protect value is checked with an
// error that says what to fix, never a panic, before anything is built.
func TestProtectProvision(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want string // "" means it must load
	}{
		{"oauth_protect", "audience is required"},
		{"oauth_protect {\n scopes a\n}", "audience is required"},
		{`oauth_protect {
 audience "http://[::1"
}`, `audience "http://[::1" is not a URI`},
		{"oauth_protect {\n audience billing\n}", "is not absolute"},
		{"oauth_protect {\n audience https://a.test#x\n}", "fragment"},
		{"oauth_protect {\n audience https://a.test\n realm \"a\\\"b\"\n}", "realm"},
		{"oauth_protect {\n audience https://a.test\n forward_header Host sub\n}", "cannot set Host"},
		{"oauth_protect {\n audience https://a.test\n strip_header Authorization\n}", "cannot remove Authorization"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins *\n credentials\n }\n}", "cannot go with credentials"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test/\n }\n}", "without a path"},
		{"oauth_protect {\n audience https://a.test\n cors {\n methods GET\n }\n}", "at least one origin"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test\n max_age soon\n }\n}", "invalid duration"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test\n }\n forward_preflight\n}", "exclude each other"},
		{"oauth_protect {\n audience https://a.test\n cors\n cors\n}", "given twice"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origin https://spa.test\n }\n}", ""},
		{"oauth_protect {\n audience urn:example:billing\n}", ""},
		{"oauth_protect {\n audience any\n}", ""},
		{"oauth_protect {\n audience https://a.test/api\n block_preflight\n}", ""},
	} {
		p, err := provisionProtect(tt.src)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.src, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want one containing %q", tt.src, err, tt.want)
		case tt.want == "" && strings.Contains(tt.src, "urn:") && (p.prmPath != "" || strings.Contains(p.challenge, "resource_metadata")):
			t.Errorf("a URN audience has no protected resource metadata URL, got %q %q", p.prmPath, p.challenge)
		case tt.want == "" && strings.Contains(tt.src, "any") && p.challenge != `Bearer realm="oauth"`:
			t.Errorf("audience any: challenge %q", p.challenge)
		}
	}
}

// gateCall runs one request through a provisioned gate; the result says
// whether the next handler saw it, and what it saw.
func gateCall(t *testing.T, p *Protect, r *http.Request) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	var seen *http.Request
	next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		w.WriteHeader(http.StatusOK)
		return nil
	})
	w := httptest.NewRecorder()
	if err := p.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w, seen
}

type handlerFunc func(http.ResponseWriter, *http.Request) error

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

func preflight(url string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, url, nil)
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Origin", "https://spa.test")
	r.Header.Set("Access-Control-Request-Method", "DELETE")
	r.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	return r
}

// TestGatePreflight: OPTIONS needs a token unless the gate answers CORS
// itself (cors) or the operator asked for preflights to be forwarded.
func TestGatePreflight(t *testing.T) {
	t.Run("default: a preflight needs a token", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
		w, seen := gateCall(t, p, preflight("/admin/delete?all=1"))
		if seen != nil || w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, forwarded %v; want 401 and not forwarded", w.Code, seen != nil)
		}
	})
	t.Run("block_preflight still loads and changes nothing", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n block_preflight\n}")
		if w, seen := gateCall(t, p, preflight("/")); seen != nil || w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, forwarded %v", w.Code, seen != nil)
		}
	})
	t.Run("cors: the gate answers and never forwards", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test\n methods GET DELETE\n headers Content-Type\n max_age 10m\n credentials\n }\n}")
		w, seen := gateCall(t, p, preflight("/admin/delete?all=1"))
		if seen != nil || w.Code != http.StatusNoContent {
			t.Fatalf("status %d, forwarded %v; want 204 and not forwarded", w.Code, seen != nil)
		}
		h := w.Header()
		for name, want := range map[string]string{
			"Access-Control-Allow-Origin":      "https://spa.test",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, DELETE",
			"Access-Control-Allow-Headers":     "Authorization, Content-Type",
			"Access-Control-Max-Age":           "600",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		for name, mod := range map[string]func(*http.Request){
			"other origin":      func(r *http.Request) { r.Header.Set("Origin", "https://evil.test") },
			"origin with path":  func(r *http.Request) { r.Header.Set("Origin", "https://spa.test.evil.test") },
			"method not listed": func(r *http.Request) { r.Header.Set("Access-Control-Request-Method", "PUT") },
			"header not listed": func(r *http.Request) { r.Header.Set("Access-Control-Request-Headers", "x-admin") },
		} {
			r := preflight("/")
			mod(r)
			w, seen := gateCall(t, p, r)
			if seen != nil || w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: status %d, forwarded %v, allow-origin %q; want 403 without CORS headers", name, w.Code, seen != nil, w.Header().Get("Access-Control-Allow-Origin"))
			}
		}
		// A cross-origin request without a token is refused, readable by
		// the allowed origin.
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Origin", "https://spa.test")
		w, seen = gateCall(t, p, r)
		if seen != nil || w.Code != http.StatusUnauthorized || w.Header().Get("Access-Control-Allow-Origin") != "https://spa.test" ||
			w.Header().Get("Access-Control-Expose-Headers") != "WWW-Authenticate" {
			t.Errorf("GET without token: status %d forwarded %v headers %v", w.Code, seen != nil, w.Header())
		}
	})
	t.Run("forward_preflight: only body-less preflights, without credentials", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n forward_preflight\n}")
		r := preflight("/x")
		r.Header.Set("Cookie", "session=admin")
		r.Header.Set("Authorization", "Basic YWRtaW46YWRtaW4=")
		r.Header.Set("X-Remote-User", "admin")
		w, seen := gateCall(t, p, r)
		if seen == nil || w.Code != http.StatusOK {
			t.Fatalf("status %d, forwarded %v; want it forwarded", w.Code, seen != nil)
		}
		for _, h := range []string{"Cookie", "Authorization", "X-Remote-User"} {
			if v := seen.Header.Get(h); v != "" {
				t.Errorf("forwarded preflight carries %s: %q", h, v)
			}
		}
		// Nor what frameworks act on as another method or a token.
		r = preflight("/x?_method=DELETE&access_token=abc")
		r.Header.Set("X-HTTP-Method-Override", "DELETE")
		r.Header.Set("X-Original-URL", "/admin")
		r.Header.Set("Sec-Fetch-Mode", "cors")
		if _, seen := gateCall(t, p, r); seen == nil || seen.URL.RawQuery != "" || seen.Header.Get("X-Http-Method-Override") != "" ||
			seen.Header.Get("X-Original-Url") != "" || seen.Header.Get("Sec-Fetch-Mode") != "cors" || seen.Header.Get("Origin") == "" {
			t.Errorf("forwarded preflight: %v; want only the preflight's own headers, no query", seen)
		}
		withBody := httptest.NewRequest(http.MethodOptions, "/x", strings.NewReader("delete=all"))
		withBody.Header = preflight("/x").Header
		noOrigin := preflight("/x")
		noOrigin.Header.Del("Origin")
		noMethod := preflight("/x")
		noMethod.Header.Del("Access-Control-Request-Method")
		for name, r := range map[string]*http.Request{"with a body": withBody, "without Origin": noOrigin, "without a method": noMethod} {
			if w, seen := gateCall(t, p, r); seen != nil || w.Code != http.StatusUnauthorized {
				t.Errorf("%s: status %d, forwarded %v; want 401", name, w.Code, seen != nil)
			}
		}
	})
}

// TestGateBodyToken: a form body with access_token is refused with 400
// invalid_request, with or without a header token (RFC 6750 §2), and
// nothing is forwarded.
func TestGateBodyToken(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
	for name, tt := range map[string]struct {
		authz, ctype, body string
		status             int
	}{
		"header and body":           {"Bearer abc", "application/x-www-form-urlencoded", "a=1&access_token=abc", 400},
		"body only":                 {"", "application/x-www-form-urlencoded; charset=utf-8", "access_token=abc", 400},
		"upper-case media type":     {"Bearer abc", "Application/X-WWW-Form-Urlencoded", "access_token=abc", 400},
		"encoded name":              {"Bearer abc", "application/x-www-form-urlencoded", "access%5ftoken=abc", 400},
		"too big to check":          {"Bearer abc", "application/x-www-form-urlencoded", "a=" + strings.Repeat("x", maxFormBody), 413},
		"no token anywhere":         {"", "application/x-www-form-urlencoded", "a=1", 401},
		"json body is not a form":   {"", "application/json", `{"access_token":"abc"}`, 401},
		"query and body, no header": {"", "text/plain", "access_token=abc", 401},
		// What lenient parsers (PHP, Rack, Werkzeug) still read as a form.
		"parameter without a value": {"Bearer abc", "application/x-www-form-urlencoded; charset", "access_token=abc", 400},
		"unbalanced quote":          {"Bearer abc", `application/x-www-form-urlencoded;charset="utf-8`, "access_token=abc", 400},
		"media type list":           {"Bearer abc", "application/x-www-form-urlencoded, text/plain", "access_token=abc", 400},
		"PHP array name":            {"Bearer abc", "application/x-www-form-urlencoded", "access_token[]=abc", 400},
		"PHP leading space":         {"Bearer abc", "application/x-www-form-urlencoded", "+access_token=abc", 400},
		"space after media type":    {"Bearer abc", "application/x-www-form-urlencoded foo", "access_token=abc", 400},
		"another charset":           {"Bearer abc", "application/x-www-form-urlencoded; charset=utf-16", "a=1", 400},
		"PHP NUL-terminated name":   {"Bearer abc", "application/x-www-form-urlencoded", "access_token%00=abc", 400},
		"ASP.NET case":              {"Bearer abc", "application/x-www-form-urlencoded", "ACCESS_TOKEN=abc", 400},
		"multipart field":           {"Bearer abc", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"ACCESS_TOKEN\"\r\n\r\nabc\r\n--b--\r\n", 400},
		"multipart without a token": {"", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nabc\r\n--b--\r\n", 401},
		"broken multipart":          {"Bearer abc", "multipart/form-data; boundary=b", "junk", 400},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
		r.RemoteAddr = "127.0.0.1:5555" // so that the TLS rule answers nothing here
		r.Header.Set("Content-Type", tt.ctype)
		if tt.authz != "" {
			r.Header.Set("Authorization", tt.authz)
		}
		w, seen := gateCall(t, p, r)
		if seen != nil || w.Code != tt.status {
			t.Errorf("%s: status %d forwarded %v, want %d (%s)", name, w.Code, seen != nil, tt.status, w.Body)
		}
		if tt.status == 400 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_request"`) {
			t.Errorf("%s: challenge %q", name, w.Header().Get("WWW-Authenticate"))
		}
	}
}

// TestGateRepeatedFraming: a second Content-Type or Content-Encoding
// header, which the gate and the upstream might read differently, and
// declared request trailers, which arrive after the gate looked, are
// refused before anything is forwarded.
func TestGateRepeatedFraming(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
	for name, h := range map[string]http.Header{
		"two content types":     {"Content-Type": {"text/plain", "application/x-www-form-urlencoded"}},
		"two content encodings": {"Content-Type": {"application/x-www-form-urlencoded"}, "Content-Encoding": {"identity", "gzip"}},
		"declared trailers":     {"Content-Type": {"text/plain"}, "Trailer": {"X-Forwarded-User"}},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("a=1"))
		r.RemoteAddr = "127.0.0.1:5555"
		maps.Copy(r.Header, h)
		r.Header.Set("Authorization", "Bearer abc")
		if w, seen := gateCall(t, p, r); seen != nil || w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d forwarded %v, want 400", name, w.Code, seen != nil)
		}
	}
}

// TestGatePlainHTTP: a bearer token over plain HTTP is refused unless it
// came from this machine (per Caddy's client IP too) or TLS ends in front.
func TestGatePlainHTTP(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "203.0.113.7:4000"
	r.Header.Set("Authorization", "Bearer abc")
	w, seen := gateCall(t, p, r)
	if seen != nil || w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "HTTPS") {
		t.Fatalf("remote plain HTTP: status %d body %q forwarded %v; want 400", w.Code, w.Body, seen != nil)
	}
	p.behindTLS = true
	if w, _ := gateCall(t, p, r); w.Code == http.StatusBadRequest {
		t.Fatalf("behind_tls_proxy: status %d, want the token checked", w.Code)
	}
}
