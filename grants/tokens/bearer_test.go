package tokens

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

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

func TestBearerToken(t *testing.T) {
	t.Parallel()
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
