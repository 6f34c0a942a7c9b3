package integration

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Ports of the PAR test: 19410 the authorization server, issuer
// http://localhost:19410.
const parIssuer = "http://localhost:19410"

// parCaddyfile: every client must push (require_pushed_authorization_requests),
// request_uris live 30s, DPoP nonces on; a confidential and a public
// client, trusted, and alice to sign in. @STORAGE@ and @HASH@ are
// replaced by parConfig.
const parCaddyfile = `{
	skip_install_trust
	admin localhost:2999
	http_port 19080
	https_port 19443
	grace_period 1ns
	oauth {
		issuer http://localhost:19410
		storage_path @STORAGE@
		dpop_nonce
		require_pushed_authorization_requests
		pushed_request_ttl 30s
		client par-web {
			secret par-secret-0123456789abcdef
			trusted
			redirect_uri http://127.0.0.1/callback
			grant_types authorization_code
			scopes openid read
		}
		client par-spa {
			public
			trusted
			redirect_uri http://127.0.0.1/callback
			grant_types authorization_code
			scopes openid read
		}
		user alice {
			password_hash @HASH@
		}
	}
}

http://localhost:19410 {
	bind 127.0.0.1
	oauth_server
}
`

func parConfig(t *testing.T) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("@STORAGE@", storagePath(t), "@HASH@", string(hash)).Replace(parCaddyfile)
}

// signInAlice is the browser: it opens authorizeURL, signs alice in on
// the form of issuer over plain HTTP (a cookie jar, no redirects
// followed) and returns the answer to the form, or the first answer
// when it is no sign-in form, with its body.
func signInAlice(t *testing.T, issuer, authorizeURL string) (*http.Response, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp, string(page)
	}
	form := formFields(t, string(page))
	form.Set("username", "alice")
	form.Set("password", "alice-password")
	resp, err = c.PostForm(issuer+"/oauth/authorize/login", form)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(page)
}

// parSignIn signs alice in for a pushed request: the browser brings
// client_id and request_uri only.
func parSignIn(t *testing.T, endpoint, clientID, requestURI string) (*http.Response, string) {
	t.Helper()
	return signInAlice(t, parIssuer, endpoint+"?"+url.Values{"client_id": {clientID}, "request_uri": {requestURI}}.Encode())
}

// parResult is what par.mjs prints after redeeming the code.
type parResult struct {
	NonceRetries int    `json:"nonceRetries"`
	RequirePAR   bool   `json:"requirePAR"`
	JKT          string `json:"jkt"`
	TokenType    string `json:"tokenType"`
	AccessToken  string `json:"accessToken"`
	Scope        string `json:"scope"`
	IDToken      bool   `json:"idToken"`
}

// runPARClient runs par.mjs through a whole flow and returns what it
// printed: the pushed request first, then the result.
func runPARClient(t *testing.T, node string, args ...string) (pushed struct {
	RequestURI            string
	ExpiresIn             int
	JKT                   string
	AuthorizationEndpoint string
}, res parResult) {
	t.Helper()
	nodeDialogue(t, node, &pushed, func() string {
		resp, page := parSignIn(t, pushed.AuthorizationEndpoint, args[0], pushed.RequestURI)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.Contains(loc, "code=") {
			t.Fatalf("sign-in: %d %q\n%s", resp.StatusCode, loc, page)
		}
		return loc
	}, &res, append([]string{"par.mjs", parIssuer}, args...)...)
	return pushed, res
}

// TestPARThirdPartyClient: oauth4webapi, a client library we did not
// write, pushes its authorization request to a real Caddy that requires
// PAR (RFC 9126), the browser brings only client_id and request_uri,
// alice signs in, and the client redeems the code: as a confidential
// client with client_secret_basic, and as a public client whose DPoP
// proof at the PAR endpoint binds the code and so the token to its key
// (RFC 9449 §10.1). The request_uri works once; a plain authorization
// request is refused.
func TestPARThirdPartyClient(t *testing.T) {
	node := nodeClient(t)
	startCaddy(t, parConfig(t))

	t.Run("confidential", func(t *testing.T) {
		pushed, res := runPARClient(t, node, "par-web", "par-secret-0123456789abcdef", "http://127.0.0.1/callback")
		if !strings.HasPrefix(pushed.RequestURI, "urn:ietf:params:oauth:request_uri:") || pushed.ExpiresIn != 30 {
			t.Errorf("pushed: %+v", pushed)
		}
		if !res.RequirePAR || !strings.EqualFold(res.TokenType, "Bearer") || res.Scope != "openid read" || !res.IDToken {
			t.Errorf("result: %+v", res)
		}
		// Used once: the same request_uri again is refused on a page.
		resp, page := parSignIn(t, pushed.AuthorizationEndpoint, "par-web", pushed.RequestURI)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "invalid_request_uri") || resp.Header.Get("Location") != "" {
			t.Errorf("reused request_uri: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("public with DPoP", func(t *testing.T) {
		_, res := runPARClient(t, node, "par-spa", "-", "http://127.0.0.1/callback", "dpop")
		// The push is refused once with use_dpop_nonce; the token
		// request reuses the nonce the push's answer carried.
		if res.NonceRetries < 1 {
			t.Errorf("nonce retries = %d, want at least 1", res.NonceRetries)
		}
		if !strings.EqualFold(res.TokenType, "DPoP") {
			t.Fatalf("token_type = %q, want DPoP", res.TokenType)
		}
		if jkt := cnfJKT(t, res.AccessToken); res.JKT == "" || jkt != res.JKT {
			t.Errorf("cnf.jkt = %q, want the client's key thumbprint %q", jkt, res.JKT)
		}
	})

	t.Run("plain request refused", func(t *testing.T) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		q := url.Values{"client_id": {"par-web"}, "redirect_uri": {"http://127.0.0.1/callback"}, "response_type": {"code"},
			"scope": {"read"}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}, "state": {"st"}}
		resp, err := c.Get(parIssuer + "/oauth/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "st" {
			t.Errorf("plain request: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}
