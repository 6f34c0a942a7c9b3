package tokens

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
		{"query token refused with 400 (RFC 6750 §3.1)", nil, "/?access_token=abc", "", 400, "invalid_request"},
		{"encoded query token", nil, "/?access%5Ftoken=abc", "", 400, "invalid_request"},
		{"PHP-folded query token", nil, "/?x=1;access.token=abc", "", 400, "invalid_request"},
		{"query token beside header is two methods", []string{"Bearer abc"}, "/?access_token=abc", "", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			for _, h := range tt.header {
				r.Header.Add("Authorization", h)
			}
			tok, status, code := BearerToken(r)
			if tok != tt.token || status != tt.status || code != tt.code {
				t.Fatalf("bearerToken = %q, %d, %q; want %q, %d, %q", tok, status, code, tt.token, tt.status, tt.code)
			}
		})
	}
}

func TestHasTokenParam(t *testing.T) {
	for raw, want := range map[string]bool{
		"access_token=abc":           true,
		"a=1&access_token=abc":       true,
		"a=1;access_token=abc":       true,
		"access%5Ftoken=abc":         true,
		"access+token=abc":           true,
		"access.token=abc":           true,
		"access[token=abc":           true,
		"access_token":               true,
		"":                           false,
		"access_tokens=abc":          false,
		"x=access_token":             false,
		"my_access_token=abc":        false,
		"access%ZZtoken=abc":         false,
		"a=1&b=2&c=" + "access_toke": false,
	} {
		if got := HasTokenParam(raw); got != want {
			t.Errorf("HasTokenParam(%q) = %v, want %v", raw, got, want)
		}
	}
}

// FuzzBearerToken: the gate's header parsing never panics, and whatever
// it accepts is one RFC 6750 b64token taken verbatim from a single
// Authorization header.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer", "Bearer ", "Bearer  x", "Basic Zm9v", "Bearer a=b", "Bearer ab==", "", "Bearer \x00", "BEARER tok~+/="} {
		f.Add(s, "")
	}
	f.Add("Bearer abc", "access_token=abc")
	f.Fuzz(func(t *testing.T, header, query string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = query
		if header != "" {
			r.Header["Authorization"] = []string{header}
		}
		tok, status, code := BearerToken(r)
		if status == 0 {
			if !isB64Token(tok) || header != "Bearer "+tok && len(header) != len(tok)+7 {
				t.Fatalf("accepted %q from %q", tok, header)
			}
			if code != "" {
				t.Fatalf("accepted with code %q", code)
			}
			return
		}
		if tok != "" || (status != http.StatusBadRequest && status != http.StatusUnauthorized) {
			t.Fatalf("refusal %d %q with token %q", status, code, tok)
		}
	})
}

// TestB64Token: the b64token grammar (RFC 6750 §2.1), byte by byte.
func TestB64Token(t *testing.T) {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
	for c := range 256 {
		want := strings.IndexByte(chars, byte(c)) >= 0
		if got := isB64Token(string([]byte{'a', byte(c), 'b'})); got != want {
			t.Errorf("%q inside a token: %v, want %v", byte(c), got, want)
		}
		if got := isB64Token(string([]byte{byte(c)})); got != want {
			t.Errorf("%q alone: %v, want %v", byte(c), got, want)
		}
	}
	for tok, want := range map[string]bool{"": false, "=": false, "a=": true, "a==": true, "a=b": false, "a=+": false, "ab+/==": true} {
		if got := isB64Token(tok); got != want {
			t.Errorf("%q: %v, want %v", tok, got, want)
		}
	}
}
