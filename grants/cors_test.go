package grants

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// corsRequest sends a request with an Origin to one of the engine's
// handlers, from loopback.
func corsRequest(h http.HandlerFunc, method, origin string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/x", strings.NewReader(body))
	r.RemoteAddr = loopbackAddr
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h(rec, r)
	return rec
}

func preflight(h http.HandlerFunc, origin, method, headers string) *httptest.ResponseRecorder {
	return corsRequest(h, http.MethodOptions, origin, map[string]string{
		"Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}, "")
}

func varyHasOrigin(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return true
			}
		}
	}
	return false
}

// Browser apps call the token, revocation and userinfo endpoints from
// the origin of a registered redirect URI: those exact origins get CORS,
// never with credentials; others get none.
func TestCORSClientEndpoints(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	const good = "https://client.test" // c-web's redirect URI is https://client.test/cb
	endpoints := []struct {
		name    string
		h       http.HandlerFunc
		method  string
		headers string
	}{
		{"token", e.serveToken, http.MethodPost, "content-type"},
		{"token with a DPoP proof", e.serveToken, http.MethodPost, "dpop"},
		{"revoke", e.serveRevoke, http.MethodPost, "content-type"},
		{"userinfo", e.serveUserinfo, http.MethodGet, "authorization"},
	}
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			rec := preflight(ep.h, good, ep.method, ep.headers)
			h := rec.Header()
			if rec.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != good {
				t.Fatalf("preflight from %s: %d, Allow-Origin %q", good, rec.Code, h.Get("Access-Control-Allow-Origin"))
			}
			if !strings.Contains(h.Get("Access-Control-Allow-Methods"), ep.method) ||
				!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), ep.headers) {
				t.Fatalf("preflight: Allow-Methods %q, Allow-Headers %q", h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers"))
			}
			if h.Get("Access-Control-Allow-Credentials") != "" || !varyHasOrigin(h) || h.Get("Access-Control-Max-Age") == "" {
				t.Fatalf("preflight headers: %v", h)
			}
			for _, bad := range []string{"https://evil.test", "http://client.test", "https://client.test:8443",
				"https://client.test.evil.test", "https://sub.client.test", "null", "https://CLIENT.test/", good + "/cb"} {
				rec := preflight(ep.h, bad, ep.method, ep.headers)
				if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
					t.Errorf("preflight from %q: Allow-Origin %q", bad, got)
				}
				if !varyHasOrigin(rec.Header()) {
					t.Errorf("preflight from %q: no Vary: Origin", bad)
				}
			}
			// A method the endpoint does not take gets no CORS.
			if got := preflight(ep.h, good, http.MethodDelete, "").Header().Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("preflight for DELETE: Allow-Origin %q", got)
			}
			// The actual request, even when refused, carries the origin.
			rec = corsRequest(ep.h, ep.method, good, nil, "token=x")
			h = rec.Header()
			if h.Get("Access-Control-Allow-Origin") != good || h.Get("Access-Control-Allow-Credentials") != "" || !varyHasOrigin(h) ||
				!strings.Contains(h.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") ||
				!strings.Contains(h.Get("Access-Control-Expose-Headers"), "DPoP-Nonce") {
				t.Fatalf("actual request from %s: %d %v", good, rec.Code, h)
			}
			rec = corsRequest(ep.h, ep.method, "https://evil.test", nil, "token=x")
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" || !varyHasOrigin(rec.Header()) {
				t.Fatalf("actual request from evil.test: Allow-Origin %q, Vary %q", got, rec.Header().Values("Vary"))
			}
		})
	}

	// A real exchange from the browser's origin: a public client redeems
	// its code.
	b := newBrowser(t, e)
	code, verifier := b.getCode("c-pub")
	rec := corsRequest(e.serveToken, http.MethodPost, "http://127.0.0.1", nil, url.Values{"grant_type": {"authorization_code"},
		"code": {code}, "code_verifier": {verifier}, "client_id": {"c-pub"}, "redirect_uri": {testRedirect["c-pub"]}}.Encode())
	if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1" {
		t.Fatalf("code exchange from the app's origin: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

// The pages and the endpoints no browser app calls answer no CORS, even
// for a registered origin.
func TestCORSNotOnPagesOrIntrospection(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	const good = "https://client.test"
	for name, h := range map[string]http.HandlerFunc{
		"authorize": e.serveAuthorize, "login": e.serveLogin, "consent": e.serveConsent,
		"logout": e.serveLogout, "introspect": e.serveIntrospect,
	} {
		for _, rec := range []*httptest.ResponseRecorder{
			preflight(h, good, http.MethodPost, "content-type"),
			corsRequest(h, http.MethodGet, good, nil, ""),
			corsRequest(h, http.MethodPost, good, nil, "a=b"),
		} {
			for k := range rec.Header() {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Errorf("%s answers %s: %q", name, k, rec.Header().Get(k))
				}
			}
		}
	}
}

// Clients registered at run time get CORS for their redirect URIs' origins
// at once, and lose it when removed.
func TestCORSRunTimeClients(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	const spa = "https://spa.test:8443"
	allowed := func() bool {
		return preflight(e.serveToken, spa, http.MethodPost, "content-type").Header().Get("Access-Control-Allow-Origin") == spa
	}
	if allowed() {
		t.Fatal("origin allowed before any client has it")
	}
	ctx := context.Background()
	if _, err := e.AddClient(ctx, &Client{
		ClientSpec: ClientSpec{
			ID:           "rt-spa",
			AuthMethod:   AuthNone,
			GrantTypes:   []string{GrantAuthorizationCode},
			Scopes:       []string{"openid"},
			RedirectURIs: []string{spa + "/callback"},
		},
	}); err != nil {
		t.Fatal(err)
	}
	if !allowed() {
		t.Fatal("origin of a client added at run time not allowed")
	}
	if err := e.RemoveClient(ctx, "rt-spa"); err != nil {
		t.Fatal(err)
	}
	if allowed() {
		t.Fatal("origin still allowed after its client was removed")
	}
}

// JWKS and discovery are public documents: any origin may read them,
// without credentials, and a preflight is answered.
func TestCORSPublicDocuments(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for name, h := range map[string]http.HandlerFunc{"jwks": e.serveJWKS, "metadata": e.serveMetadata} {
		rec := corsRequest(h, http.MethodGet, "https://anyone.test", nil, "")
		if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
			rec.Header().Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s GET: %d %v", name, rec.Code, rec.Header())
		}
		rec = preflight(h, "https://anyone.test", http.MethodGet, "x-requested-with")
		if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("%s preflight: %d %v", name, rec.Code, rec.Header())
		}
		// Any OPTIONS of a public document gets "*", like its GET: with
		// or without Origin, whatever the requested method.
		for _, hdr := range []map[string]string{nil, {"Origin": "https://anyone.test"},
			{"Origin": "https://anyone.test", "Access-Control-Request-Method": "PUT"}} {
			rec = corsRequest(h, http.MethodOptions, "", hdr, "")
			if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
				rec.Header().Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("%s OPTIONS %v: %d %v", name, hdr, rec.Code, rec.Header())
			}
		}
	}
}

// Browser MCP clients (the MCP Inspector) register from their own
// origin, which no redirect URI names yet: the registration endpoint
// answers any origin with "*", without credentials, for its methods and
// the Authorization and Content-Type headers, on the preflight and on
// every answer, refusals included.
func TestCORSRegistration(t *testing.T) {
	e := newEngine(t, withRegistration(nil))
	h, _ := e.Route(RegisterPath)
	rec := preflight(h, "https://inspector.test", http.MethodPost, "authorization, content-type")
	hdr := rec.Header()
	if rec.Code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "*" || hdr.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("registration preflight: %d %v", rec.Code, hdr)
	}
	for _, m := range []string{"POST", "GET", "PUT", "DELETE"} {
		if !listHas(hdr.Get("Access-Control-Allow-Methods"), m) {
			t.Errorf("preflight does not allow %s: %v", m, hdr)
		}
	}
	if ah := strings.ToLower(hdr.Get("Access-Control-Allow-Headers")); !listHas(ah, "authorization") || !listHas(ah, "content-type") {
		t.Errorf("preflight allows headers %q", ah)
	}
	// The registration itself, and a refusal, can be read by the page.
	r := httptest.NewRequest(http.MethodPost, RegisterPath, strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Origin", "https://inspector.test")
	r.RemoteAddr = loopbackAddr
	w := httptest.NewRecorder()
	h(w, r)
	if w.Code != http.StatusCreated || w.Header().Get("Access-Control-Allow-Origin") != "*" || w.Header().Get("Access-Control-Allow-Credentials") != "" ||
		w.Header().Get("Access-Control-Expose-Headers") != "" {
		t.Fatalf("registration: %d %v", w.Code, w.Header())
	}
	r = httptest.NewRequest(http.MethodPost, RegisterPath, strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("Origin", "https://inspector.test")
	r.RemoteAddr = loopbackAddr
	w = httptest.NewRecorder()
	h(w, r)
	if w.Code != http.StatusBadRequest || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("refused registration: %d %v", w.Code, w.Header())
	}
	// The token endpoint's preflight depends on Origin and says so.
	if rec := preflight(e.serveToken, "https://inspector.test", http.MethodPost, "content-type"); !varyHasOrigin(rec.Header()) {
		t.Errorf("token preflight lacks Vary: Origin: %v", rec.Header())
	}
}
