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
