package grants

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestValidateRedirectURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://client.test/cb", true},
		{"https://client.test/cb?x=1", true},
		{"https://client.test:8443/cb", true},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:8080/cb", true},
		{"http://[::1]:8080/cb", true},
		{"http://localhost:8080/cb", true},
		{"com.example.app:/cb", true},
		{"com.example.app:/oauth2redirect", true},
		{"https://client.test/cb#frag", false},
		{"https://client.test/cb#", false},
		{"https://*.client.test/cb", false},
		{"https://client.test/*", false},
		{"/cb", false},
		{"cb", false},
		{"//client.test/cb", false},
		{"", false},
		{"javascript:alert(1)", false},
		{"JavaScript:alert(1)", false},
		{"data:text/html,hi", false},
		{"vbscript:x", false},
		{"file:///etc/passwd", false},
		{"http://client.test/cb", false},
		{"http://127.0.0.1.evil.test/cb", false},
		{"http://192.168.1.1/cb", false},
		{"https:///cb", false},
		{"https://user:pw@client.test/cb", false},
		{"https://user@client.test/cb", false},
		{"myapp:/cb", false},
		{"https://client.test/cb\r\nX: y", false},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			err := validateRedirectURI(tt.uri)
			if (err == nil) != tt.ok {
				t.Fatalf("validateRedirectURI(%q) = %v, want ok=%v", tt.uri, err, tt.ok)
			}
		})
	}
}

func TestClientValidateSignin(t *testing.T) {
	t.Parallel()
	base := func() *Client {
		return &Client{
			ClientSpec: ClientSpec{
				ID:           "c",
				AuthMethod:   AuthSecretBasic,
				GrantTypes:   []string{GrantAuthorizationCode, GrantRefreshToken},
				Scopes:       []string{"openid"},
				RedirectURIs: []string{"https://client.test/cb"},
			},
			SecretHash: HashSecret("s"),
		}
	}
	pub := func() *Client {
		c := base()
		c.AuthMethod, c.SecretHash = AuthNone, [32]byte{}
		return c
	}
	tests := []struct {
		name string
		c    *Client
		ok   bool
	}{
		{"confidential", base(), true},
		{"public", pub(), true},
		{"public with client_credentials", func() *Client { c := pub(); c.GrantTypes = append(c.GrantTypes, GrantClientCredentials); return c }(), false},
		{"public with a secret", func() *Client { c := pub(); c.SecretHash = HashSecret("s"); return c }(), false},
		{"public with PKCE optional", func() *Client { c := pub(); c.PKCEOptional = true; return c }(), false},
		{"confidential without secret", func() *Client { c := base(); c.SecretHash = [32]byte{}; return c }(), false},
		{"refresh_token without authorization_code", func() *Client {
			c := base()
			c.GrantTypes = []string{GrantClientCredentials, GrantRefreshToken}
			return c
		}(), false},
		{"code without redirect URIs", func() *Client { c := base(); c.RedirectURIs = nil; return c }(), false},
		{"bad redirect URI", func() *Client { c := base(); c.RedirectURIs = []string{"http://client.test/cb"}; return c }(), false},
		{"bad post-logout URI", func() *Client { c := base(); c.PostLogoutRedirectURIs = []string{"javascript:x"}; return c }(), false},
		{"no grant types", func() *Client { c := base(); c.GrantTypes = nil; c.RedirectURIs = nil; return c }(), false},
		{"unknown grant type", func() *Client { c := base(); c.GrantTypes = append(c.GrantTypes, "implicit"); return c }(), false},
		{"unknown auth method", func() *Client { c := base(); c.AuthMethod = "private_key_jwt"; return c }(), false},
		{"scope with a quote", func() *Client { c := base(); c.Scopes = []string{`a"b`}; return c }(), false},
		{"empty id", func() *Client { c := base(); c.ID = ""; return c }(), false},
		{"id with colon", func() *Client { c := base(); c.ID = "a:b"; return c }(), false},
		{"id with space", func() *Client { c := base(); c.ID = " c"; return c }(), false},
		{"client_credentials only", func() *Client {
			c := base()
			c.GrantTypes, c.RedirectURIs = []string{GrantClientCredentials}, nil
			return c
		}(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestMatchRedirectURI(t *testing.T) {
	t.Parallel()
	c := &Client{ClientSpec: ClientSpec{RedirectURIs: []string{"https://client.test/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb?x=1", "http://127.0.0.1:9"}}}
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://client.test/cb", true},
		{"https://client.test/cb/", false},
		{"https://client.test:443/cb", false},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:1/cb", true},
		{"http://127.0.0.1:65535/cb", true},
		{"http://127.0.0.1:/cb", false},
		{"http://127.0.0.1:x/cb", false},
		{"http://127.0.0.1:1:2/cb", false},
		{"http://127.0.0.1.evil.test/cb", false},
		{"http://[::1]/cb?x=1", true},
		{"http://[::1]:1/cb?x=1", true},
		{"http://[::1]:1/cb", false},
		{"http://[::1]:1/cb?x=2", false},
		{"http://127.0.0.1:1/cb?x=1", false},
		{"http://127.0.0.1", true}, // registered http://127.0.0.1:9
		{"http://127.0.0.1:5", true},
		{"http://127.0.0.1:5/", false},
		{"http://127.0.0.1:5#x", false},
		{"http://127.0.0.1:5@evil.test", false},
		{"http://localhost/cb", false},
		{"https://127.0.0.1:5/cb", false},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			if got := c.MatchRedirectURI(tt.uri); got != tt.ok {
				t.Fatalf("MatchRedirectURI(%q) = %v, want %v", tt.uri, got, tt.ok)
			}
		})
	}
	// Even for a registration that validation would refuse, a port is
	// only ever removed before '/', '?' or the end.
	odd := &Client{ClientSpec: ClientSpec{RedirectURIs: []string{"http://127.0.0.1.evil.test", "http://[::1]@evil.test/cb"}}}
	for _, u := range []string{"http://127.0.0.1:80.evil.test", "http://[::1]:1@evil.test/cb"} {
		if odd.MatchRedirectURI(u) {
			t.Errorf("MatchRedirectURI(%q) matched %v", u, odd.RedirectURIs)
		}
	}
}

// loopbackRE splits an http loopback IP-literal URI into host, optional
// port, and the rest, independently of loopbackWithoutPort.
var loopbackRE = regexp.MustCompile(`(?s)^http://(127\.0\.0\.1|\[::1\])(:[0-9]+)?([/?].*)?$`)

// sameButPort reports whether a and b are http loopback IP-literal URIs
// that differ at most in their port.
func sameButPort(a, b string) bool {
	ma, mb := loopbackRE.FindStringSubmatch(a), loopbackRE.FindStringSubmatch(b)
	return ma != nil && mb != nil && ma[1] == mb[1] && ma[3] == mb[3]
}

// A match is an exact registered URI or a loopback IP literal that differs
// only in its port (RFC 9700 §2.1, RFC 8252 §7.3).
func FuzzMatchRedirectURI(f *testing.F) {
	for _, s := range [][2]string{
		{"https://client.test/cb", "https://client.test/cb"},
		{"https://client.test/cb", "https://client.test/cb/"},
		{"http://127.0.0.1/cb", "http://127.0.0.1:8080/cb"},
		{"http://127.0.0.1/cb", "http://127.0.0.1.evil.test/cb"},
		{"http://127.0.0.1:1/cb", "http://127.0.0.1:2@evil/cb"},
		{"http://[::1]/cb", "http://[::1]:5/cb"},
		{"http://127.0.0.1", "http://127.0.0.1:5"},
		{"http://127.0.0.1:5?x", "http://127.0.0.1?x"},
		{"http://127.0.0.1/cb", "http://localhost:5/cb"},
		{"http://127.0.0.1.x", "http://127.0.0.1:5.x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, registered, requested string) {
		c := &Client{ClientSpec: ClientSpec{RedirectURIs: []string{registered}}}
		if !c.MatchRedirectURI(requested) {
			if requested == registered {
				t.Fatalf("exact URI %q not matched", requested)
			}
			return
		}
		if requested != registered && !sameButPort(registered, requested) {
			t.Fatalf("%q matched registered %q", requested, registered)
		}
	})
}

// parseAuthorize never panics; it answers with exactly one of a request,
// an error page or a redirect error, and only ever redirects to a URI the
// client registered.
func FuzzParseAuthorize(f *testing.F) {
	e, err := NewEngine(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	_, ch := newPKCE()
	for _, s := range []string{
		authzQuery("c-web", ch).Encode(),
		authzQuery("c-pub", ch, "redirect_uri", "http://127.0.0.1:5/cb").Encode(),
		authzQuery("c-web", ch, "response_type", "token").Encode(),
		authzQuery("c-multi", ch, "redirect_uri", "").Encode(),
		authzQuery("c-web", ch, "prompt", "none login", "max_age", "-1").Encode(),
		authzQuery("c-web", ch).Encode() + "&state=x",
		"client_id=c-web&redirect_uri=https%3A%2F%2Fclient.test%2Fcb&response_type=code&code_challenge=%00",
		"%zz",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest(http.MethodGet, "/oauth/authorize", nil)
		r.URL.RawQuery = rawQuery
		ar, page, rerr := e.parseAuthorize(r)
		switch {
		case page != "":
			if ar != nil || rerr != nil {
				t.Fatalf("error page together with a request or redirect")
			}
			return
		case ar == nil:
			t.Fatalf("no request, no page")
		}
		c, ok := e.clients[ar.ClientID]
		if !ok || !c.MatchRedirectURI(ar.RedirectURI) {
			t.Fatalf("redirect to %q for client %q", ar.RedirectURI, ar.ClientID)
		}
		q, _ := url.ParseQuery(rawQuery)
		if ar.RedirectGiven != (q.Get("redirect_uri") != "") {
			t.Fatalf("RedirectGiven = %v for %q", ar.RedirectGiven, q.Get("redirect_uri"))
		}
		if rerr != nil {
			if len(ar.State) > maxParamLen {
				t.Fatalf("oversized state kept on an error")
			}
			return
		}
		if q.Get("response_type") != "code" {
			t.Fatalf("accepted response_type %q", q.Get("response_type"))
		}
		if ar.Challenge != "" && (!validPKCEValue(ar.Challenge) || q.Get("code_challenge_method") != "S256") {
			t.Fatalf("accepted challenge %q method %q", ar.Challenge, q.Get("code_challenge_method"))
		}
		if ar.Challenge == "" && (!c.PKCEOptional || c.AuthMethod == AuthNone) {
			t.Fatalf("accepted no PKCE for %s", c.ID)
		}
		for _, s := range ar.Scope {
			if !slices.Contains(c.Scopes, s) {
				t.Fatalf("scope %q not allowed for %s", s, c.ID)
			}
		}
		if len(ar.State) > maxParamLen || len(ar.Nonce) > maxParamLen || strings.Contains(strings.Join(ar.Prompt, " "), "none ") {
			t.Fatalf("accepted %q", rawQuery)
		}
	})
}
