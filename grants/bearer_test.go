package grants

import (
	"net/http"
	"net/http/httptest"
	"strings"
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
