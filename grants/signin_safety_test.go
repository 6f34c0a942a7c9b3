package grants

import (
	"net/http"
	"strings"
	"testing"
)

// POST /oauth/authorize reads at most MaxBodyBytes, like the token
// endpoint: a larger body is 413, declared or chunked.
func TestAuthorizePostBodyCapped(t *testing.T) {
	e := siNewTestEngine(t, nil)
	_, ch := newPKCE()
	q := authzQuery("c-web", ch).Encode()
	for _, chunked := range []bool{false, true} {
		body := q + "&pad=" + strings.Repeat("a", MaxBodyBytes)
		r, _ := http.NewRequest(http.MethodPost, "https://as.test"+AuthorizePath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if chunked {
			r.ContentLength = -1
		}
		b := newBrowser(t, e)
		rec := b.do(r)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: %d-byte authorization request body: %d, want 413", chunked, len(body), rec.Code)
		}
	}
	// A normal POST still works.
	r, _ := http.NewRequest(http.MethodPost, "https://as.test"+AuthorizePath, strings.NewReader(q))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := newBrowser(t, e).do(r); !isLoginPage(rec) {
		t.Fatalf("a small POST authorization request: %d, want the login page", rec.Code)
	}
}
