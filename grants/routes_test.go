package grants

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every path under the issuer's path + /oauth/ is the engine's, also when
// another component could read it as such (other case, repeated slashes,
// dot segments): it is served or answered 404, never handed on. Other
// paths are handed on.
func TestRoute(t *testing.T) {
	// Not parallel: AllocsPerRun.
	for issuer, paths := range map[string]map[string]bool{
		"https://as.test": {
			"/oauth/token": true, "/oauth/nope": true, "/oauth/": true, "//oauth/token": true, "/OAUTH/token": true,
			"/Oauth/jwks": true, "/oauth/./token": true, "/x/../oauth/token": true, "/.well-known/openid-configuration": true,
			"/": false, "/app/oauth/token": false, "/oauthx": false, "/app": false, "/App/Page": false, "/a//b": false, "/.hidden": false,
		},
		"https://as.test/tenant": {
			"/tenant/oauth/token": true, "/tenant/oauth/x": true, "/tenant//oauth/jwks": true, "/TENANT/oauth/x": true,
			"/tenant/./oauth/x": true, "/tenant/x/../oauth/x": true, "/x/../tenant/oauth/x": true,
			"/oauth/token": false, "/tenant": false, "/tenant/app": false, "/other/oauth/token": false,
		},
	} {
		e := newEngine(t, ccFixture(), withConfig(func(c *Config) { c.Issuer = issuer }))
		for p, ours := range paths {
			h, ok := e.Route(p)
			if ok != ours || ok && h == nil {
				t.Errorf("%s: Route(%q) = %v, want %v", issuer, p, ok, ours)
			}
		}
	}
	e := newEngine(t, ccFixture())
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "//oauth/token", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("//oauth/token: %d, want 404", w.Code)
	}
	if n := testing.AllocsPerRun(100, func() { e.Route("/app/some/page") }); n != 0 {
		t.Errorf("routing a path that is not the engine's allocates %v times", n)
	}
}
