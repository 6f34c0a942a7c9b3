package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// seedKeys creates the signing key in a new storage file before Caddy
// starts, so the test holds the same key Caddy will sign and verify with
// and can mint tokens Caddy would never issue (expired ones).
func seedKeys(t *testing.T, path string) *tokens.KeyRing {
	t.Helper()
	st, err := bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := tokens.NewKeys(tokens.KeyOptions{Algs: []string{"ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Load(context.Background(), st, time.Now()); err != nil {
		t.Fatal(err)
	}
	return ks.Ring()
}

func mint(t *testing.T, kr *tokens.KeyRing, sub, aud, scope string, iat, exp time.Time) string {
	t.Helper()
	tok, err := kr.Current.MintAccessToken(&tokens.AccessClaims{
		Issuer:    issuer,
		Subject:   sub,
		Audience:  tokens.Audience{aud},
		IssuedAt:  iat.Unix(),
		ExpiresAt: exp.Unix(),
		ID:        "test-" + iat.Format("150405.000000000"),
		ClientID:  sub,
		Scope:     scope,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wwwAuth returns the single WWW-Authenticate challenge of a response.
func wwwAuth(t *testing.T, resp *http.Response) string {
	t.Helper()
	v := resp.Header.Values("WWW-Authenticate")
	if len(v) != 1 {
		t.Fatalf("want one WWW-Authenticate header, got %q", v)
	}
	return v[0]
}

// TestProtect runs oauth_protect in front of reverse_proxy to a recording
// legacy app (RFC 6750 §2 and §3, RFC 9068 §4, RFC 9728 §2 and §5.1).
func TestProtect(t *testing.T) {
	up := newUpstream(t)
	path := storagePath(t)
	kr := seedKeys(t, path)
	startCaddy(t, render(baseCaddyfile, path, up.addr()))

	if kids := jwksKids(t); !slices.Contains(kids, kr.Current.ID) {
		t.Fatalf("Caddy publishes kids %q, not the stored key %q", kids, kr.Current.ID)
	}
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken
	const challenge = `Bearer realm="` + apiURL + `"`
	const resourceMetadata = `resource_metadata="` + apiURL + `/.well-known/oauth-protected-resource"`

	// refused checks an answer that must not reach the upstream.
	refused := func(t *testing.T, resp *http.Response, before, status int) string {
		t.Helper()
		if resp.StatusCode != status {
			t.Errorf("status %d, want %d", resp.StatusCode, status)
		}
		if n := up.count(); n != before {
			t.Errorf("the upstream was called %d time(s)", n-before)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
		ch := wwwAuth(t, resp)
		if !strings.HasPrefix(ch, challenge) {
			t.Errorf("WWW-Authenticate = %q, want it to start with %q", ch, challenge)
		}
		return ch
	}

	t.Run("valid token reaches the upstream with trusted identity headers only", func(t *testing.T) {
		before := up.count()
		req := newRequest(t, http.MethodGet, apiURL+"/invoices?id=7", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header["X-Forwarded-User"] = []string{"admin", "root"}
		req.Header.Set("X-Remote-User", "admin")
		req.Header["X_Remote_User"] = []string{"admin"}
		req.Header.Set("X-Auth-Anything", "admin")
		req.Header.Set("X-OAuth-Scope", "everything")
		req.Header.Set("X-OAuth-Client", "evil")
		for _, h := range []string{"Remote-Groups", "Remote-Email", "Remote-Name", "X-Webauth-User", "X-Webauth-Email", "X-Forwarded-Access-Token"} {
			req.Header.Set(h, "admin")
		}
		resp, body := httpDo(t, req)
		if resp.StatusCode != http.StatusOK || body != "legacy app" {
			t.Fatalf("status %d body %q, want 200 from the upstream", resp.StatusCode, body)
		}
		if up.count() != before+1 {
			t.Fatalf("upstream called %d times, want once", up.count()-before)
		}
		got := up.last()
		if got.URL.Path != "/invoices" || got.URL.RawQuery != "id=7" {
			t.Errorf("upstream saw %s, want /invoices?id=7", got.URL)
		}
		if v := got.Header.Values("X-Forwarded-User"); !reflect.DeepEqual(v, []string{basicID}) {
			t.Errorf("upstream X-Forwarded-User = %q, want exactly [%q]", v, basicID)
		}
		if v := got.Header.Values("X-OAuth-Scope"); !reflect.DeepEqual(v, []string{"invoices:read invoices:write"}) {
			t.Errorf("upstream X-OAuth-Scope = %q, want the token's scope", v)
		}
		if v := got.Header.Values("X-OAuth-Client"); !reflect.DeepEqual(v, []string{basicID}) {
			t.Errorf("upstream X-OAuth-Client (request_header {oauth.client_id}) = %q, want [%q]", v, basicID)
		}
		for name, v := range got.Header {
			n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
			if n == "x-remote-user" || strings.HasPrefix(n, "x-auth-") || n == "authorization" ||
				strings.HasPrefix(n, "remote-") || strings.HasPrefix(n, "x-webauth-") || n == "x-forwarded-access-token" {
				t.Errorf("upstream received %s: %q", name, v)
			}
		}
	})

	t.Run("no token: 401 challenge without error", func(t *testing.T) {
		for _, authz := range []string{"", "Basic YWRtaW46YWRtaW4="} {
			before := up.count()
			resp, _ := callAPI(t, apiURL+"/", authz)
			ch := refused(t, resp, before, http.StatusUnauthorized)
			if strings.Contains(ch, "error=") {
				t.Errorf("Authorization %q: challenge %q has an error parameter (RFC 6750 §3.1)", authz, ch)
			}
			if !strings.Contains(ch, resourceMetadata) {
				t.Errorf("challenge %q lacks %s", ch, resourceMetadata)
			}
		}
	})

	t.Run("bad tokens: 401 invalid_token", func(t *testing.T) {
		now := time.Now()
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		if sig[10] == 'A' {
			sig[10] = 'B'
		} else {
			sig[10] = 'A'
		}
		none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`))
		otherTok := fetchToken(t, otherID, otherSecret, oauth2.AuthStyleInHeader).AccessToken
		if _, c := jwtParts(t, otherTok); c["aud"] != otherAud {
			t.Fatalf("other-service's token has aud %v, want %s", c["aud"], otherAud)
		}
		for name, bad := range map[string]string{
			"garbage":           "not-a-jwt",
			"expired":           mint(t, kr, basicID, apiURL, "invoices:read", now.Add(-20*time.Minute), now.Add(-10*time.Minute)),
			"tampered claims":   parts[0] + "." + tamperClaims(t, parts[1]) + "." + parts[2],
			"tampered sig":      parts[0] + "." + parts[1] + "." + string(sig),
			"alg none":          none + "." + parts[1] + ".",
			"other audience":    otherTok,
			"wrong issuer":      mintIssuer(t, kr, "http://localhost:19999", now),
			"not yet issued":    mint(t, kr, basicID, apiURL, "invoices:read", now.Add(10*time.Minute), now.Add(20*time.Minute)),
			"claims are a list": parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`[1]`)) + "." + parts[2],
		} {
			t.Run(name, func(t *testing.T) {
				before := up.count()
				resp, body := callAPI(t, apiURL+"/", "Bearer "+bad)
				ch := refused(t, resp, before, http.StatusUnauthorized)
				if !strings.Contains(ch, `error="invalid_token"`) {
					t.Errorf("challenge %q lacks error=\"invalid_token\"", ch)
				}
				if !strings.Contains(body, `"error":"invalid_token"`) {
					t.Errorf("body %q lacks the invalid_token error", body)
				}
			})
		}
		// Controls: the same key minting a current token passes, and the
		// other audience's token is valid where any audience is accepted.
		if resp, body := callAPI(t, apiURL+"/", "Bearer "+mint(t, kr, basicID, apiURL, "invoices:read", now, now.Add(time.Minute))); resp.StatusCode != http.StatusOK {
			t.Errorf("control: a current token minted with the stored key got %d: %s", resp.StatusCode, body)
		}
		if resp, body := callAPI(t, echoURL+"/", "Bearer "+otherTok); resp.StatusCode != http.StatusOK {
			t.Errorf("control: other-service's token on the site without audience got %d: %s", resp.StatusCode, body)
		}
	})

	t.Run("too little scope: 403 insufficient_scope", func(t *testing.T) {
		narrow := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader, "invoices:write").AccessToken
		before := up.count()
		resp, body := callAPI(t, apiURL+"/", "Bearer "+narrow)
		ch := refused(t, resp, before, http.StatusForbidden)
		if !strings.Contains(ch, `error="insufficient_scope"`) || !strings.Contains(ch, `scope="invoices:read"`) {
			t.Errorf("challenge %q, want error=\"insufficient_scope\" and scope=\"invoices:read\"", ch)
		}
		if !strings.Contains(body, `"error":"insufficient_scope"`) {
			t.Errorf("body %q lacks insufficient_scope", body)
		}
	})

	t.Run("token in the query string: 400", func(t *testing.T) {
		// RFC 6750 §3.1 pairs invalid_request with 400.
		before := up.count()
		resp, _ := callAPI(t, apiURL+"/?access_token="+tok, "")
		ch := refused(t, resp, before, http.StatusBadRequest)
		if !strings.Contains(ch, `error="invalid_request"`) {
			t.Errorf("challenge %q lacks error=\"invalid_request\"", ch)
		}
	})

	t.Run("token in the header and the query: 400", func(t *testing.T) {
		// RFC 6750 §2 allows one method per request; a second one is
		// invalid_request, which §3.1 answers with 400 (RFC 6750 §2, §3.1).
		before := up.count()
		resp, _ := callAPI(t, apiURL+"/?access_token="+tok, "Bearer "+tok)
		ch := refused(t, resp, before, http.StatusBadRequest)
		if !strings.Contains(ch, `error="invalid_request"`) {
			t.Errorf("challenge %q lacks error=\"invalid_request\"", ch)
		}
	})

	t.Run("two Authorization headers: 400", func(t *testing.T) {
		before := up.count()
		req := newRequest(t, http.MethodGet, apiURL+"/", nil)
		req.Header["Authorization"] = []string{"Bearer " + tok, "Bearer " + tok}
		resp, _ := httpDo(t, req)
		ch := refused(t, resp, before, http.StatusBadRequest)
		if !strings.Contains(ch, `error="invalid_request"`) {
			t.Errorf("challenge %q lacks error=\"invalid_request\"", ch)
		}
	})

	t.Run("empty bearer: 400", func(t *testing.T) {
		before := up.count()
		resp, _ := callAPI(t, apiURL+"/", "Bearer ")
		refused(t, resp, before, http.StatusBadRequest)
	})

	t.Run("scheme is case-insensitive", func(t *testing.T) {
		before := up.count()
		resp, body := callAPI(t, apiURL+"/", "bEaReR "+tok)
		if resp.StatusCode != http.StatusOK || up.count() != before+1 {
			t.Errorf("bEaReR: status %d body %q, upstream calls %d", resp.StatusCode, body, up.count()-before)
		}
	})

	t.Run("several spaces after the scheme: 400", func(t *testing.T) {
		// RFC 6750 §2.1's grammar allows 1*SP, but the gate is
		// stricter on purpose: header values are not trimmed or folded,
		// so "Bearer  <token>" is a malformed request.
		before := up.count()
		resp, _ := callAPI(t, apiURL+"/", "Bearer   "+tok)
		ch := refused(t, resp, before, http.StatusBadRequest)
		if !strings.Contains(ch, `error="invalid_request"`) {
			t.Errorf("challenge %q lacks error=\"invalid_request\"", ch)
		}
	})

	t.Run("a CORS preflight needs a token", func(t *testing.T) {
		// Legacy apps run handlers on OPTIONS: without a cors block or
		// forward_preflight the gate checks it like any other request.
		before := up.count()
		req := newRequest(t, http.MethodOptions, apiURL+"/admin/delete?all=1", strings.NewReader("confirm=yes"))
		req.Header.Set("Origin", "https://spa.example")
		req.Header.Set("Access-Control-Request-Method", "DELETE")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ := httpDo(t, req)
		refused(t, resp, before, http.StatusUnauthorized)
		before = up.count()
		resp, _ = httpDo(t, newRequest(t, http.MethodOptions, apiURL+"/invoices", nil))
		refused(t, resp, before, http.StatusUnauthorized)
	})

	t.Run("protected resource metadata", func(t *testing.T) {
		before := up.count()
		resp, prm := getJSON(t, apiURL+"/.well-known/oauth-protected-resource")
		if up.count() != before {
			t.Errorf("the metadata request reached the upstream")
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q", ct)
		}
		if prm["resource"] != apiURL {
			t.Errorf("resource = %v, want %s", prm["resource"], apiURL)
		}
		servers, _ := prm["authorization_servers"].([]any)
		if !slices.Contains(servers, any(issuer)) {
			t.Errorf("authorization_servers = %v, want it to list %s", servers, issuer)
		}
		if m, _ := json.Marshal(prm["bearer_methods_supported"]); string(m) != `["header"]` {
			t.Errorf("bearer_methods_supported = %s, want [\"header\"]", m)
		}
	})

	t.Run("placeholders", func(t *testing.T) {
		for _, c := range []struct {
			tok  string
			want string
		}{
			{tok, "sub=billing-service client_id=billing-service scope=invoices:read invoices:write claim=billing-service user=billing-service"},
			{
				fetchToken(t, postID, postSecret, oauth2.AuthStyleInParams, "invoices:read").AccessToken,
				"sub=reports-service client_id=reports-service scope=invoices:read claim=reports-service user=reports-service",
			},
		} {
			resp, body := callAPI(t, echoURL+"/", "Bearer "+c.tok)
			if resp.StatusCode != http.StatusOK || body != c.want {
				t.Errorf("echo: status %d body %q, want 200 %q", resp.StatusCode, body, c.want)
			}
		}
		// Without a token the handler chain stops before respond.
		if resp, body := callAPI(t, echoURL+"/", ""); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "sub=") {
			t.Errorf("echo without a token: status %d body %q, want 401", resp.StatusCode, body)
		}
	})
}

// mintIssuer mints an otherwise valid token with another iss.
func mintIssuer(t *testing.T, kr *tokens.KeyRing, iss string, now time.Time) string {
	t.Helper()
	tok, err := kr.Current.MintAccessToken(&tokens.AccessClaims{
		Issuer: iss, Subject: basicID, Audience: tokens.Audience{apiURL},
		IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(),
		ID: "wrong-iss", ClientID: basicID, Scope: "invoices:read",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
