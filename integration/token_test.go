package integration

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestTokenEndpointErrors checks the token endpoint's error answers as
// they leave Caddy (RFC 6749 §3.2, §5.1, §5.2).
func TestTokenEndpointErrors(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, render(baseCaddyfile, storagePath(t), up.addr()))

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(basicID)+":"+url.QueryEscape(basicSecret)))
	wrong := "Basic " + base64.StdEncoding.EncodeToString([]byte(basicID+":wrong-secret"))
	form := "application/x-www-form-urlencoded"

	cases := []struct {
		name        string
		method      string
		url         string
		contentType string
		authz       string
		body        string
		status      int
		code        string
		check       func(t *testing.T, resp *http.Response)
	}{
		{
			name: "GET", method: http.MethodGet, url: tokenURL + "?grant_type=client_credentials", authz: basic,
			status: http.StatusMethodNotAllowed, code: "invalid_request",
			check: func(t *testing.T, resp *http.Response) {
				if a := resp.Header.Get("Allow"); a != "POST" {
					t.Errorf("Allow = %q, want POST", a)
				}
			},
		},
		{
			name: "JSON body", method: http.MethodPost, url: tokenURL, contentType: "application/json", authz: basic,
			body: `{"grant_type":"client_credentials"}`, status: http.StatusBadRequest, code: "invalid_request",
		},
		{
			name: "wrong secret in Basic", method: http.MethodPost, url: tokenURL, contentType: form, authz: wrong,
			body: "grant_type=client_credentials", status: http.StatusUnauthorized, code: "invalid_client",
			check: func(t *testing.T, resp *http.Response) {
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic realm=") {
					t.Errorf("WWW-Authenticate = %q, want a Basic challenge", ch)
				}
			},
		},
		{
			name: "wrong secret in body", method: http.MethodPost, url: tokenURL, contentType: form,
			body: "grant_type=client_credentials&client_id=" + postID + "&client_secret=wrong", status: http.StatusUnauthorized, code: "invalid_client",
		},
		{
			name: "unknown client", method: http.MethodPost, url: tokenURL, contentType: form,
			body: "grant_type=client_credentials&client_id=nosuch&client_secret=wrong", status: http.StatusUnauthorized, code: "invalid_client",
		},
		{
			name: "unsupported grant type", method: http.MethodPost, url: tokenURL, contentType: form, authz: basic,
			body: "grant_type=Client_Credentials", status: http.StatusBadRequest, code: "unsupported_grant_type",
		},
		{
			name: "repeated parameter", method: http.MethodPost, url: tokenURL, contentType: form, authz: basic,
			body: "grant_type=client_credentials&grant_type=client_credentials", status: http.StatusBadRequest, code: "invalid_request",
		},
		{
			name: "credentials in the query", method: http.MethodPost, url: tokenURL + "?client_secret=" + url.QueryEscape(postSecret), contentType: form,
			body: "grant_type=client_credentials&client_id=" + postID, status: http.StatusBadRequest, code: "invalid_request",
		},
		{
			name: "success", method: http.MethodPost, url: tokenURL, contentType: form + "; charset=UTF-8", authz: basic,
			body: "grant_type=client_credentials&scope=&foo=bar", status: http.StatusOK,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, tc.method, tc.url, strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			resp, body := httpDo(t, req)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if p := resp.Header.Get("Pragma"); p != "no-cache" {
				t.Errorf("Pragma = %q, want no-cache", p)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("body is not a JSON object: %v: %s", err, body)
			}
			if tc.code != "" {
				if m["error"] != tc.code {
					t.Errorf("error = %v, want %s (body %s)", m["error"], tc.code, body)
				}
				if _, ok := m["access_token"]; ok {
					t.Errorf("an error answer carries an access token")
				}
			} else if s, _ := m["access_token"].(string); s == "" {
				t.Errorf("no access_token in %s", body)
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
		})
	}
}

// TestUnknownOAuthPaths: a path under the server's /oauth/ prefix that is
// no endpoint answers 404 with a JSON error, whatever the method; it does
// not fall through to the next handler (which, in a site with only
// oauth_server, answers an empty 200). Other paths of the site still do.
func TestUnknownOAuthPaths(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, render(baseCaddyfile, storagePath(t), up.addr()))
	client := &http.Client{Transport: freshConns, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct{ method, path string }{
		{http.MethodPost, "/oauth/tokens"},
		{http.MethodPost, "/oauth/token/"},
		{http.MethodPost, "/oauth/pars"},
		{http.MethodGet, "/oauth/"},
		{http.MethodGet, "/oauth/authorize/elsewhere"},
		{http.MethodGet, "/oauth/assets/nothing.css"},
		{http.MethodGet, "/oauth/JWKS"},
	} {
		req, _ := http.NewRequest(tt.method, issuer+tt.path, strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || err != nil || body["error"] == nil ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q %v (%v), want 404 with a JSON error", tt.method, tt.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), body, err)
		}
	}
	// Paths outside the prefix go on to the site's next handler.
	for _, path := range []string{"/other", "/oauth", "/oauthx/token", "/x/oauth/token"} {
		resp, err := client.Get(issuer + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || string(b) != "not an oauth endpoint" {
			t.Errorf("GET %s: %d %q, want the site's own handler", path, resp.StatusCode, b)
		}
	}
}
