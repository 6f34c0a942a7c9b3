package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
)

// spaPage is a single-page app's callback page: its script redeems the
// code at the token endpoint with fetch, calls userinfo with the access
// token (a preflighted request: it sets Authorization), revokes the
// token, reads the JWKS, and writes what it could read into #out. A
// request the browser's CORS check blocks shows as "blocked".
const spaPage = `<!doctype html><html><body><p id="out">pending</p><script>
(async () => {
  const iss = %q, res = [];
  const q = new URLSearchParams(location.search);
  const form = (o) => ({method: 'POST', body: new URLSearchParams(o)});
  try {
    const r = await fetch(iss + '/oauth/token', form({grant_type: 'authorization_code', code: q.get('code') || 'none',
      redirect_uri: %q, client_id: 'spa', code_verifier: %q}));
    const j = await r.json();
    res.push('token ' + r.status);
    if (j.access_token) {
      const u = await fetch(iss + '/oauth/userinfo', {headers: {Authorization: 'Bearer ' + j.access_token}});
      const uj = await u.json();
      res.push('userinfo ' + u.status + (uj.sub ? ' with sub' : ''));
      const v = await fetch(iss + '/oauth/revoke', form({token: j.access_token, client_id: 'spa'}));
      res.push('revoke ' + v.status);
    }
  } catch (e) { res.push('token blocked'); }
  try {
    const u = await fetch(iss + '/oauth/userinfo', {headers: {Authorization: 'Bearer not-a-token'}});
    res.push('userinfo ' + u.status + ' ' + (u.headers.get('WWW-Authenticate') ? 'challenge' : 'no challenge'));
  } catch (e) { res.push('userinfo blocked'); }
  try {
    const k = await fetch(iss + '/oauth/jwks');
    res.push('jwks ' + k.status);
  } catch (e) { res.push('jwks blocked'); }
  document.getElementById('out').textContent = 'result: ' + res.join('; ');
})();
</script></body></html>`

// spaServer serves a single-page app at addr: / starts the sign-in with
// PKCE, /callback is spaPage.
func spaServer(t *testing.T, addr string) string {
	base := "http://" + addr
	var mu sync.Mutex
	verifier := ""
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		verifier = oauth2.GenerateVerifier()
		ch := oauth2.S256ChallengeFromVerifier(verifier)
		mu.Unlock()
		http.Redirect(w, r, signinIssuer+"/oauth/authorize?"+url.Values{"client_id": {"spa"}, "response_type": {"code"},
			"redirect_uri": {base + "/callback"}, "scope": {"openid email"}, "state": {"s"},
			"code_challenge": {ch}, "code_challenge_method": {"S256"}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		v := verifier
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, spaPage, signinIssuer, base+"/callback", v)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return base
}

// TestBrowserCORS: a single-page app, registered at run time as a public
// client, signs alice in and then, from its own origin, redeems the code,
// calls userinfo and revokes the token with fetch in headless Chromium.
// The same page on an origin no client registered can read none of those
// answers (the browser's CORS check fails), but can read the public JWKS.
func TestBrowserCORS(t *testing.T) {
	startSignin(t)
	app := spaServer(t, "127.0.0.1:19284")
	other := spaServer(t, "127.0.0.1:19285")
	resp, err := http.Post("http://"+adminAddr+"/oauth/clients", "application/json", strings.NewReader(`{"client_id": "spa",
		"public": true, "trusted": true, "grant_types": ["authorization_code"], "scopes": ["openid", "email"],
		"redirect_uris": ["`+app+`/callback"]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("adding the spa client: %d %s", resp.StatusCode, body)
	}
	wd := startBrowser(t)

	wd.Navigate(app + "/")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	wd.Type("#username", "alice")
	wd.Type("#password", "alice-password\n")
	src := wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="out">result: `) })
	const want = "result: token 200; userinfo 200 with sub; revoke 200; userinfo 401 challenge; jwks 200"
	if !strings.Contains(src, want) {
		t.Fatalf("the app on its registered origin:\n%s\nwant %q", src, want)
	}

	wd.Navigate(other + "/callback?code=stolen")
	src = wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="out">result: `) })
	const blocked = "result: token blocked; userinfo blocked; jwks 200"
	if !strings.Contains(src, blocked) {
		t.Fatalf("the page on an unregistered origin:\n%s\nwant %q", src, blocked)
	}
}
