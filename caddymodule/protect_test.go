package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		url    string
		token  string
		status int
		code   string
	}{
		{"valid", []string{"Bearer abc.def-_~+/="}, "/", "abc.def-_~+/=", 0, ""},
		{"scheme is case-insensitive", []string{"bEaReR abc"}, "/", "abc", 0, ""},
		{"no header", nil, "/", "", 401, ""},
		{"other scheme is no token", []string{"Basic Zm9vOmJhcg=="}, "/", "", 401, ""},
		{"empty bearer", []string{"Bearer"}, "/", "", 400, "invalid_request"},
		{"bearer and space", []string{"Bearer "}, "/", "", 400, "invalid_request"},
		{"two spaces", []string{"Bearer  abc"}, "/", "", 400, "invalid_request"},
		{"trailing space", []string{"Bearer abc "}, "/", "", 400, "invalid_request"},
		{"quote in token", []string{`Bearer ab"c`}, "/", "", 400, "invalid_request"},
		{"padding in the middle", []string{"Bearer ab=c"}, "/", "", 400, "invalid_request"},
		{"two headers", []string{"Bearer abc", "Bearer abc"}, "/", "", 400, "invalid_request"},
		{"query token refused", nil, "/?access_token=abc", "", 401, "invalid_request"},
		{"query token beside header is two methods", []string{"Bearer abc"}, "/?access_token=abc", "", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			for _, h := range tt.header {
				r.Header.Add("Authorization", h)
			}
			tok, status, code := grants.BearerToken(r)
			if tok != tt.token || status != tt.status || code != tt.code {
				t.Fatalf("bearerToken = %q, %d, %q; want %q, %d, %q", tok, status, code, tt.token, tt.status, tt.code)
			}
		})
	}
}

func TestStripIdentityHeaders(t *testing.T) {
	p := &Protect{ForwardHeaders: []ForwardHeader{{Header: "X-Tenant", Claim: "tenant"}}}
	p.strip = map[string]bool{}
	for _, h := range identityHeaders {
		p.strip[h] = true
	}
	for _, fh := range p.ForwardHeaders {
		p.strip[normalizeHeader(fh.Header)] = true
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header["X-Remote-User"] = []string{"admin"}
	r.Header["X_remote_user"] = []string{"admin"} // how Go keeps X_Remote_User
	r.Header["X-Forwarded-User"] = []string{"admin", "root"}
	r.Header["X-Auth-Role"] = []string{"admin"}
	r.Header["X-Tenant"] = []string{"other"}
	r.Header["X_tenant"] = []string{"other"}
	r.Header["Accept"] = []string{"*/*"}
	p.stripIdentityHeaders(r)
	if len(r.Header) != 1 || r.Header.Get("Accept") != "*/*" {
		t.Fatalf("headers after strip = %v; want only Accept", r.Header)
	}
}

// RFC 6750 §3 / RS-13: challenges are well-formed auth-params with quoted
// values that contain no raw quote or backslash.
var challengeRE = regexp.MustCompile(`^Bearer realm="[^"\\]*"(, [a-z_]+="[^"\\]*")*$`)

func TestDenyChallenges(t *testing.T) {
	p := &Protect{Audience: "https://app.test/api", Scopes: []string{"read", "write"}}
	p.challenge = `Bearer realm="https://app.test/api", resource_metadata="https://app.test/.well-known/oauth-protected-resource/api"`
	tests := []struct {
		status int
		code   string
		scope  string
		want   []string
		absent string
	}{
		{401, "", "", []string{`resource_metadata="https://app.test/.well-known/oauth-protected-resource/api"`}, "error="},
		{401, "invalid_token", "", []string{`error="invalid_token"`}, "scope="},
		{403, "insufficient_scope", "read write", []string{`error="insufficient_scope"`, `scope="read write"`}, ""},
		{400, "invalid_request", "", []string{`error="invalid_request"`}, ""},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		if err := p.deny(w, tt.status, tt.code, tt.scope); err != nil {
			t.Fatal(err)
		}
		ch := w.Header().Get("WWW-Authenticate")
		if w.Code != tt.status || !challengeRE.MatchString(ch) {
			t.Errorf("%s: status %d challenge %q", tt.code, w.Code, ch)
		}
		for _, s := range tt.want {
			if !strings.Contains(ch, s) {
				t.Errorf("%s: challenge %q lacks %q", tt.code, ch, s)
			}
		}
		if tt.absent != "" && strings.Contains(ch, tt.absent) {
			t.Errorf("%s: challenge %q must not contain %q", tt.code, ch, tt.absent)
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: missing Cache-Control: no-store", tt.code)
		}
	}
}

func TestProtectValidate(t *testing.T) {
	bad := []Protect{
		{Realm: `a"b`},
		{Audience: "not a url"},
		{Audience: "/relative"},
		{Scopes: []string{"two words"}},
		{ForwardHeaders: []ForwardHeader{{Header: "X-User", Claim: ""}}},
		{ForwardHeaders: []ForwardHeader{{Header: "Bad:Header", Claim: "sub"}}},
	}
	for i, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("case %d: Validate accepted %+v", i, p)
		}
	}
	good := Protect{Audience: "https://app.test", Scopes: []string{"read"}, ForwardHeaders: []ForwardHeader{{Header: "X-User", Claim: "sub"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
}
