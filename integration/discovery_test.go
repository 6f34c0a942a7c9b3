package integration

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestDiscovery: an off-the-shelf OIDC client finds the server, the
// RFC 8414 document says what the server does, and request headers cannot
// change the issuer or the endpoint URLs (RFC 8414 §2 and §3, OIDC Discovery §4).
func TestDiscovery(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, render(baseCaddyfile, storagePath(t), up.addr()))

	provider, err := oidc.NewProvider(clientContext(t), issuer)
	if err != nil {
		t.Fatalf("go-oidc NewProvider(%s): %v", issuer, err)
	}
	if got := provider.Endpoint().TokenURL; got != tokenURL {
		t.Errorf("openid-configuration token_endpoint = %q, want %q", got, tokenURL)
	}
	var oidcMeta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&oidcMeta); err != nil {
		t.Fatal(err)
	}
	if oidcMeta.JWKSURI != jwksURL {
		t.Errorf("openid-configuration jwks_uri = %q, want %q", oidcMeta.JWKSURI, jwksURL)
	}

	const asMeta = issuer + "/.well-known/oauth-authorization-server"
	resp, body := httpDo(t, newRequest(t, http.MethodGet, asMeta, nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", asMeta, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("metadata Content-Type = %q, want application/json", ct)
	}
	var meta struct {
		Issuer          string   `json:"issuer"`
		TokenEndpoint   string   `json:"token_endpoint"`
		JWKSURI         string   `json:"jwks_uri"`
		GrantTypes      []string `json:"grant_types_supported"`
		AuthMethods     []string `json:"token_endpoint_auth_methods_supported"`
		ResponseTypes   []string `json:"response_types_supported"`
		ScopesSupported []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal([]byte(body), &meta); err != nil {
		t.Fatalf("metadata is not JSON: %v: %s", err, body)
	}
	if meta.Issuer != issuer {
		t.Errorf("issuer = %q, want %q", meta.Issuer, issuer)
	}
	if meta.TokenEndpoint != tokenURL {
		t.Errorf("token_endpoint = %q, want %q", meta.TokenEndpoint, tokenURL)
	}
	if meta.JWKSURI != jwksURL {
		t.Errorf("jwks_uri = %q, want %q", meta.JWKSURI, jwksURL)
	}
	if want := []string{"client_credentials"}; !reflect.DeepEqual(meta.GrantTypes, want) {
		t.Errorf("grant_types_supported = %q, want %q", meta.GrantTypes, want)
	}
	for _, m := range []string{"client_secret_basic", "client_secret_post"} {
		if !slices.Contains(meta.AuthMethods, m) {
			t.Errorf("token_endpoint_auth_methods_supported = %q, missing %q", meta.AuthMethods, m)
		}
	}
	if slices.Contains(meta.AuthMethods, "none") {
		t.Errorf("token_endpoint_auth_methods_supported advertises none, but no client is public: %q", meta.AuthMethods)
	}
	if meta.ResponseTypes == nil {
		t.Errorf("response_types_supported is missing (RFC 8414 §2 requires it): %s", body)
	}

	// The issuer is configuration, never derived from the request.
	for _, spoof := range []map[string]string{
		{"Host": "evil.test"},
		{"X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"},
		{"Host": "evil.test:19100", "X-Forwarded-Host": "evil.test", "Forwarded": "host=evil.test;proto=https"},
	} {
		for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			req := newRequest(t, http.MethodGet, issuer+path, nil)
			for k, v := range spoof {
				if k == "Host" {
					req.Host = v
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, spoofed := httpDo(t, req)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s with %v: status %d", path, spoof, resp.StatusCode)
				continue
			}
			if strings.Contains(spoofed, "evil.test") {
				t.Errorf("GET %s with %v: the document follows the request headers: %s", path, spoof, spoofed)
			}
			var m map[string]any
			_ = json.Unmarshal([]byte(spoofed), &m)
			if m["issuer"] != issuer || m["token_endpoint"] != tokenURL || m["jwks_uri"] != jwksURL {
				t.Errorf("GET %s with %v: issuer/token_endpoint/jwks_uri = %v/%v/%v", path, spoof, m["issuer"], m["token_endpoint"], m["jwks_uri"])
			}
		}
	}

	// The JWKS holds public keys only (RFC 7517 §5).
	_, set := getJSON(t, jwksURL)
	for _, k := range set["keys"].([]any) {
		key := k.(map[string]any)
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := key[private]; ok {
				t.Errorf("JWKS key %v publishes private member %q", key["kid"], private)
			}
		}
		if key["kid"] == nil || key["alg"] == nil || key["use"] != "sig" {
			t.Errorf("JWKS key lacks kid/alg/use=sig: %v", key)
		}
	}
}

// TestClientCredentialsToken: golang.org/x/oauth2 gets tokens with both
// authentication styles, and the token is an RFC 9068 JWT whose signature
// go-oidc verifies against the published JWKS (RFC 9068 §2).
func TestClientCredentialsToken(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, render(baseCaddyfile, storagePath(t), up.addr()))
	ctx := clientContext(t)
	keySet := oidc.NewRemoteKeySet(ctx, jwksURL)
	kids := jwksKids(t)

	cases := []struct {
		name      string
		id        string
		secret    string
		style     oauth2.AuthStyle
		scopes    []string
		wantScope string
		wantAud   string
	}{
		{"basic header, default scope", basicID, basicSecret, oauth2.AuthStyleInHeader, nil, "invoices:read invoices:write", apiURL},
		{"basic header, narrower scope", basicID, basicSecret, oauth2.AuthStyleInHeader, []string{"invoices:write"}, "invoices:write", apiURL},
		{"client_secret_post", postID, postSecret, oauth2.AuthStyleInParams, []string{"reports:read"}, "reports:read", apiURL},
	}
	jtis := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().Unix()
			tok := fetchToken(t, tc.id, tc.secret, tc.style, tc.scopes...)
			if !strings.EqualFold(tok.TokenType, "Bearer") {
				t.Errorf("token_type = %q, want Bearer", tok.TokenType)
			}
			if tok.RefreshToken != "" {
				t.Errorf("client_credentials returned a refresh token (CC-02)")
			}
			if s, _ := tok.Extra("scope").(string); s != tc.wantScope {
				t.Errorf("response scope = %q, want %q", s, tc.wantScope)
			}
			if exp, ok := tok.Extra("expires_in").(float64); !ok || exp != 600 {
				t.Errorf("expires_in = %v (%T), want the number 600", tok.Extra("expires_in"), tok.Extra("expires_in"))
			}

			payload, err := keySet.VerifySignature(ctx, tok.AccessToken)
			if err != nil {
				t.Fatalf("go-oidc RemoteKeySet does not verify the token: %v", err)
			}
			hdr, claims := jwtParts(t, tok.AccessToken)
			var fromVerify map[string]any
			if err := json.Unmarshal(payload, &fromVerify); err != nil || fromVerify["jti"] != claims["jti"] {
				t.Errorf("verified payload differs from the token's claims")
			}
			if hdr["typ"] != "at+jwt" {
				t.Errorf("header typ = %v, want at+jwt", hdr["typ"])
			}
			if hdr["alg"] != "ES256" {
				t.Errorf("header alg = %v, want ES256 (the default)", hdr["alg"])
			}
			if kid, _ := hdr["kid"].(string); !slices.Contains(kids, kid) {
				t.Errorf("header kid %q is not in the JWKS %q", kid, kids)
			}
			for _, name := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} {
				if _, ok := claims[name]; !ok {
					t.Errorf("claim %q missing: %v", name, claims)
				}
			}
			if claims["iss"] != issuer {
				t.Errorf("iss = %v, want %s", claims["iss"], issuer)
			}
			if claims["sub"] != tc.id || claims["client_id"] != tc.id {
				t.Errorf("sub/client_id = %v/%v, want %s", claims["sub"], claims["client_id"], tc.id)
			}
			if claims["aud"] != tc.wantAud {
				t.Errorf("aud = %v, want %s", claims["aud"], tc.wantAud)
			}
			if claims["scope"] != tc.wantScope {
				t.Errorf("scope claim = %v (%T), want the string %q", claims["scope"], claims["scope"], tc.wantScope)
			}
			iat, _ := claims["iat"].(json.Number).Int64()
			exp, _ := claims["exp"].(json.Number).Int64()
			if iat < before-5 || iat > time.Now().Unix()+5 {
				t.Errorf("iat = %d, not around now (%d)", iat, before)
			}
			if exp-iat != 600 {
				t.Errorf("exp - iat = %d, want 600 (access_token_ttl 10m)", exp-iat)
			}
			jti, _ := claims["jti"].(string)
			if jti == "" || jtis[jti] {
				t.Errorf("jti %q is empty or repeated", jti)
			}
			jtis[jti] = true

			// A tampered token must not verify with the same key set.
			parts := strings.Split(tok.AccessToken, ".")
			if _, err := keySet.VerifySignature(ctx, parts[0]+"."+tamperClaims(t, parts[1])+"."+parts[2]); err == nil {
				t.Errorf("go-oidc verified a token whose claims were changed")
			}
		})
	}

	// The client is pinned to its registered method: the Basic client in
	// the body and the post client in the header are refused.
	for _, c := range []struct {
		id, secret string
		style      oauth2.AuthStyle
	}{
		{basicID, basicSecret, oauth2.AuthStyleInParams},
		{postID, postSecret, oauth2.AuthStyleInHeader},
		{basicID, "wrong", oauth2.AuthStyleInHeader},
	} {
		_, err := tokenErr(t, c.id, c.secret, c.style)
		if err == nil {
			t.Errorf("client %s with auth style %d got a token", c.id, c.style)
			continue
		}
		re := retrieveError(t, err)
		if re.Response.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_client" {
			t.Errorf("client %s with auth style %d: %d %q, want 401 invalid_client", c.id, c.style, re.Response.StatusCode, re.ErrorCode)
		}
	}

	// Scopes the client is not registered for are refused, not dropped.
	_, err := tokenErr(t, basicID, basicSecret, oauth2.AuthStyleInHeader, "invoices:read", "admin")
	if err == nil {
		t.Fatal("a token was issued for an unregistered scope")
	}
	if re := retrieveError(t, err); re.ErrorCode != "invalid_scope" {
		t.Errorf("unregistered scope: error %q, want invalid_scope", re.ErrorCode)
	}
}
