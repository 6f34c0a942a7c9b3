package grants

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// A sibling subdomain can set a cookie of the same name for the parent
// domain (or a more specific path), which the browser then sends beside
// ours, first. A request carrying one of our cookie names twice is
// refused, on every page that reads them.
func TestDuplicateCookieRefused(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-web", ch).Encode())
	if !isLoginPage(page) {
		t.Fatalf("no login page: %d", page.Code)
	}
	state, csrf := formFields(t, page.Body.String())
	tossed := func(r *http.Request, name string) *http.Request {
		// The attacker's cookie comes first, ours after it.
		if len(r.CookiesNamed(name)) == 0 {
			r.AddCookie(&http.Cookie{Name: name, Value: strings.Repeat("B", 43)})
		}
		r.Header.Set("Cookie", name+"="+strings.Repeat("A", 43)+"; "+r.Header.Get("Cookie"))
		return r
	}
	post := func(name string) *httptest.ResponseRecorder {
		form := url.Values{"state": {state}, "csrf": {csrf}, "username": {"alice"}, "password": {"alice-pw"}}
		r := httptest.NewRequest(http.MethodPost, AuthorizePath+"/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = loopbackAddr
		for _, c := range b.cookies {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		rec := httptest.NewRecorder()
		e.serveLogin(rec, tossed(r, name))
		return rec
	}
	for _, name := range []string{csrfCookie, sessionCookie} {
		if rec := post(name); rec.Code != http.StatusBadRequest || setCookie(t, rec, sessionCookie) != nil {
			t.Fatalf("login post with %s twice: %d", name, rec.Code)
		}
	}
	for _, target := range []string{AuthorizePath + "?" + authzQuery("c-web", ch).Encode(), LogoutPath} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = loopbackAddr
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: strings.Repeat("B", 43)})
		rec := httptest.NewRecorder()
		b.handler(r.URL.Path)(rec, tossed(r, sessionCookie))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("GET %s with the session cookie twice: %d", target, rec.Code)
		}
	}
	// One of each still works.
	if rec := b.login(page, "alice", "alice-pw"); rec.Code != http.StatusFound && !isConsentPage(rec) {
		t.Fatalf("a normal login: %d", rec.Code)
	}
}
