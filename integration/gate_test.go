package integration

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// gateCaddyfile: the API behind oauth_protect with a cors block (19101),
// an API whose upstream answers CORS itself (19102), and Caddy trusting
// X-Forwarded-For from loopback, so a request can say it came from a
// remote client through a local proxy. @PROXY@ is "behind_tls_proxy" or
// empty.
const gateCaddyfile = `{
	skip_install_trust
	admin localhost:2999
	http_port 19080
	https_port 19443
	grace_period 1ns
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
	}
	oauth {
		issuer http://localhost:19100
		storage_path @STORAGE@
		@PROXY@
		client billing-service {
			secret "s3cr:et%+"
			grant_types client_credentials
			scopes invoices:read invoices:write
			audience http://localhost:19101 urn:example:billing
		}
		client other-service {
			secret other-secret-0123456789abcdef
			grant_types client_credentials
			scopes invoices:read invoices:write
			audience http://localhost:19199
		}
	}
}

http://:19100 {
	bind 127.0.0.1
	oauth_server
}

http://localhost:19101 {
	bind 127.0.0.1
	reverse_proxy @UPSTREAM@
	request_header X-OAuth-Client {oauth.client_id}
	oauth_protect {
		audience http://localhost:19101
		forward_header X-Forwarded-User sub
		forward_header X-OAuth-Scope scope
		strip_header X-App-User X-Legacy-*
		cors {
			origins https://spa.example
			methods GET DELETE
			headers Content-Type
			max_age 5m
		}
	}
}

http://localhost:19102 {
	bind 127.0.0.1
	reverse_proxy @UPSTREAM@
	oauth_protect {
		audience urn:example:billing
		forward_preflight
	}
}
`

// TestGateSeams: the upstream never sees a client-sent identity header,
// a token, or a request the gate did not check (issue 10 §3, §6).
func TestGateSeams(t *testing.T) {
	up := newUpstream(t)
	path := storagePath(t)
	startCaddy(t, strings.Replace(render(gateCaddyfile, path, up.addr()), "@PROXY@", "", 1))
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken
	const urnURL = "http://localhost:19102"

	// notForwarded sends req and checks that the upstream never saw it.
	notForwarded := func(t *testing.T, req *http.Request, status int) *http.Response {
		t.Helper()
		before := up.count()
		resp, body := httpDo(t, req)
		if resp.StatusCode != status {
			t.Errorf("%s %s: status %d %q, want %d", req.Method, req.URL, resp.StatusCode, body, status)
		}
		if up.count() != before {
			t.Errorf("%s %s reached the upstream", req.Method, req.URL)
		}
		return resp
	}
	// forwarded sends req and returns what the upstream saw.
	forwarded := func(t *testing.T, req *http.Request) *http.Request {
		t.Helper()
		before := up.count()
		resp, body := httpDo(t, req)
		if resp.StatusCode != http.StatusOK || up.count() != before+1 {
			t.Fatalf("%s %s: status %d %q, upstream calls %d; want it forwarded", req.Method, req.URL, resp.StatusCode, body, up.count()-before)
		}
		return up.last()
	}

	t.Run("Connection cannot delete the identity headers", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, apiURL+"/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Connection", "close, X-Forwarded-User, X-OAuth-Scope, X-OAuth-Client")
		got := forwarded(t, req)
		for name, want := range map[string]string{"X-Forwarded-User": basicID, "X-OAuth-Scope": "invoices:read invoices:write", "X-OAuth-Client": basicID} {
			if v := got.Header.Values(name); !reflect.DeepEqual(v, []string{want}) {
				t.Errorf("upstream %s = %q, want [%q]", name, v, want)
			}
		}
	})

	t.Run("strip_header and the identity families", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, apiURL+"/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, h := range []string{"X-App-User", "X-Legacy-Role", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Webauth-User", "X-Forwarded-Access-Token"} {
			req.Header.Set(h, "admin")
		}
		got := forwarded(t, req)
		for name := range got.Header {
			n := strings.ToLower(name)
			if n == "x-app-user" || strings.HasPrefix(n, "x-legacy-") || strings.HasPrefix(n, "remote-") ||
				strings.HasPrefix(n, "x-webauth-") || n == "x-forwarded-access-token" || n == "authorization" {
				t.Errorf("upstream received %s: %q", name, got.Header[name])
			}
		}
	})

	t.Run("a token in the body is refused, never forwarded", func(t *testing.T) {
		for name, authz := range map[string]string{"with a header token": "Bearer " + tok, "alone": ""} {
			t.Run(name, func(t *testing.T) {
				req := newRequest(t, http.MethodPost, apiURL+"/invoices", strings.NewReader("amount=1&access_token="+tok))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if authz != "" {
					req.Header.Set("Authorization", authz)
				}
				resp := notForwarded(t, req, http.StatusBadRequest)
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_request"`) {
					t.Errorf("challenge %q lacks invalid_request", ch)
				}
			})
		}
		// A form without a token goes through whole.
		req := newRequest(t, http.MethodPost, apiURL+"/invoices", strings.NewReader("amount=1&note=a%26b"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+tok)
		forwarded(t, req)
		if b := up.lastBody(); b != "amount=1&note=a%26b" {
			t.Errorf("upstream body %q, want the form unchanged", b)
		}
	})

	t.Run("cors: the gate answers preflights itself", func(t *testing.T) {
		req := newRequest(t, http.MethodOptions, apiURL+"/admin/delete?all=1", nil)
		req.Header.Set("Origin", "https://spa.example")
		req.Header.Set("Access-Control-Request-Method", "DELETE")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp := notForwarded(t, req, http.StatusNoContent)
		if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "https://spa.example" {
			t.Errorf("Access-Control-Allow-Origin = %q", v)
		}
		if v := resp.Header.Get("Access-Control-Max-Age"); v != "300" {
			t.Errorf("Access-Control-Max-Age = %q", v)
		}
		if v := resp.Header.Get("Access-Control-Allow-Credentials"); v != "" {
			t.Errorf("Access-Control-Allow-Credentials = %q without credentials", v)
		}
		req.Header.Set("Origin", "https://evil.example")
		resp = notForwarded(t, req, http.StatusForbidden)
		if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
			t.Errorf("another origin got Access-Control-Allow-Origin %q", v)
		}
		// The actual request needs a token and carries the CORS headers.
		get := newRequest(t, http.MethodGet, apiURL+"/invoices", nil)
		get.Header.Set("Origin", "https://spa.example")
		resp = notForwarded(t, get, http.StatusUnauthorized)
		if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "https://spa.example" {
			t.Errorf("refusal: Access-Control-Allow-Origin = %q", v)
		}
		get.Header.Set("Authorization", "Bearer "+tok)
		before := up.count()
		resp, _ = httpDo(t, get)
		if resp.StatusCode != http.StatusOK || up.count() != before+1 || resp.Header.Get("Access-Control-Allow-Origin") != "https://spa.example" {
			t.Errorf("actual request: status %d, upstream calls %d, Access-Control-Allow-Origin %q", resp.StatusCode, up.count()-before, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})

	t.Run("forward_preflight: body-less preflights only, without credentials", func(t *testing.T) {
		req := newRequest(t, http.MethodOptions, urnURL+"/x", nil)
		req.Header.Set("Origin", "https://spa.example")
		req.Header.Set("Access-Control-Request-Method", "DELETE")
		req.Header.Set("Cookie", "session=admin")
		got := forwarded(t, req)
		if got.Method != http.MethodOptions || got.Header.Get("Cookie") != "" {
			t.Errorf("upstream saw %s with Cookie %q", got.Method, got.Header.Get("Cookie"))
		}
		withBody := newRequest(t, http.MethodOptions, urnURL+"/admin/delete", strings.NewReader("all=1"))
		withBody.Header = req.Header.Clone()
		notForwarded(t, withBody, http.StatusUnauthorized)
		noOrigin := newRequest(t, http.MethodOptions, urnURL+"/admin/delete", nil)
		noOrigin.Header.Set("Access-Control-Request-Method", "DELETE")
		notForwarded(t, noOrigin, http.StatusUnauthorized)
	})

	t.Run("URN audience: the token must carry it, no metadata URL", func(t *testing.T) {
		resp := notForwarded(t, newRequest(t, http.MethodGet, urnURL+"/", nil), http.StatusUnauthorized)
		if ch := resp.Header.Get("WWW-Authenticate"); ch != `Bearer realm="urn:example:billing"` {
			t.Errorf("challenge %q", ch)
		}
		req := newRequest(t, http.MethodGet, urnURL+"/", nil)
		req.Header.Set("Authorization", "Bearer "+fetchToken(t, otherID, otherSecret, oauth2.AuthStyleInHeader).AccessToken)
		notForwarded(t, req, http.StatusUnauthorized)
		req.Header.Set("Authorization", "Bearer "+tok)
		forwarded(t, req)
	})

	// Caddy trusts X-Forwarded-For from loopback, so this request comes
	// from 203.0.113.9 through a local proxy, over plain HTTP.
	remote := func() *http.Request {
		req := newRequest(t, http.MethodGet, apiURL+"/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		return req
	}
	t.Run("plain HTTP from a remote client: 400, not forwarded", func(t *testing.T) {
		resp := notForwarded(t, remote(), http.StatusBadRequest)
		if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_request"`) {
			t.Errorf("challenge %q", ch)
		}
	})

	t.Run("plain HTTP behind a declared TLS proxy passes", func(t *testing.T) {
		startCaddy(t, strings.Replace(render(gateCaddyfile, path, up.addr()), "@PROXY@", "behind_tls_proxy", 1))
		forwarded(t, remote())
	})
}
