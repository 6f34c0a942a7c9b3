package grants

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
)

// TestIntrospectRequestRules covers RFC 7662 §2.1 and §2.3.
func TestIntrospectRequestRules(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	at := opClientToken(t, e)
	opRunRules(t, e, e.serveIntrospect, IntrospectPath, []opRule{
		{"no token", "c-basic", url.Values{}, "", 400, CodeInvalidRequest},
		{"no credentials", "", url.Values{"token": {at}}, "", 401, CodeInvalidClient},
		{"wrong secret", "", url.Values{"token": {at}}, siBasicAuth("c-basic", "nope"), 401, CodeInvalidClient},
		{"public client", "c-pub", url.Values{"token": {at}}, "", 401, CodeInvalidClient},
	})
	get := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, IntrospectPath, nil)
	req.RemoteAddr = loopbackAddr
	e.serveIntrospect(get, req)
	if get.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", get.Code)
	}
}

// TestIntrospectActive covers RFC 7662 §2.2, §2.1.
func TestIntrospectActive(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	tr := firstGrant(t, e, "c-web", "scope", "openid read")
	rt, at := tr.str("refresh_token"), tr.str("access_token")
	for _, hint := range []string{"", "access_token", "refresh_token", "foo"} {
		got := opIntrospect(e, "c-web", "token", at, "token_type_hint", hint)
		want := map[string]any{"active": true, "scope": "openid read", "client_id": "c-web", "username": "alice",
			"sub": "alice", "aud": "https://app.test", "iss": testIssuer, "token_type": "Bearer", "jti": jtiOf(t, at)}
		opWantMembers(t, got, want, "exp", "iat")
		got = opIntrospect(e, "c-web", "token", rt, "token_type_hint", hint)
		want = map[string]any{"active": true, "scope": "openid read", "client_id": "c-web", "username": "alice",
			"sub": "alice", "iss": testIssuer, "token_type": "refresh_token"}
		opWantMembers(t, got, want, "exp")
	}
	// client_credentials: the client acts for itself, so no username.
	cc := opClientToken(t, e)
	got := opIntrospect(e, "c-basic", "token", cc)
	opWantMembers(t, got, map[string]any{"active": true, "client_id": "c-basic", "sub": "c-basic"}, "exp")
	if _, ok := got.body["username"]; ok {
		t.Fatalf("username for a client's own token: %s", got.raw)
	}
}

// TestIntrospectInactive covers RFC 7662 §2.2, §4: everything that is not
// an active token the caller may see is exactly {"active":false}.
func TestIntrospectInactive(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	tr := firstGrant(t, e, "c-web")
	rt, at := tr.str("refresh_token"), tr.str("access_token")
	next := refresh(e, "c-web", rt)
	wantOK(t, next)
	revoked := opClientToken(t, e)
	if r := opRevoke(e, "c-basic", "token", revoked); r.status != 200 {
		t.Fatal(r.raw)
	}
	expired := signRaw(t, e.keyRing().Current, `{"alg":"ES256","typ":"at+jwt","kid":"`+e.keyRing().Current.ID+`"}`,
		`{"iss":"`+testIssuer+`","sub":"c-basic","aud":"x","exp":1000,"iat":900,"jti":"j","client_id":"c-basic"}`)
	tests := []struct{ name, client, token string }{
		{"garbage", "c-web", "garbage"},
		{"rotated refresh token", "c-web", rt},
		{"revoked access token", "c-basic", revoked},
		{"expired access token", "c-basic", expired},
		{"another client's access token", "c-trusted", at},
		{"another client's refresh token", "c-trusted", next.str("refresh_token")},
		{"resource server of another audience", "rs-b", at},
		{"resource server, refresh token", "rs-app", next.str("refresh_token")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { opInactive(t, opIntrospect(e, tt.client, "token", tt.token)) })
	}
	// The resource server of the token's audience sees it.
	opWantMembers(t, opIntrospect(e, "rs-app", "token", at), map[string]any{"active": true, "client_id": "c-web"})
}

// opWantMembers checks an active answer has the members, and that the
// named numeric members are present.
func opWantMembers(t *testing.T, tr tokenResult, want map[string]any, numeric ...string) {
	t.Helper()
	if tr.status != http.StatusOK || tr.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("want 200 no-store, got %d %v %s", tr.status, tr.hdr, tr.raw)
	}
	for k, v := range want {
		if tr.body[k] != v {
			t.Fatalf("%s = %#v, want %#v in %s", k, tr.body[k], v, tr.raw)
		}
	}
	for _, k := range numeric {
		if n, ok := tr.body[k].(float64); !ok || n <= 0 {
			t.Fatalf("%s missing in %s", k, tr.raw)
		}
	}
}

// TestOpsMetadata: both endpoints are published (RFC 8414 §2), and public
// clients are offered revocation but not introspection.
func TestOpsMetadata(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	var m Metadata
	if err := json.Unmarshal(getMetadata(t, e, http.MethodGet).Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m.RevocationEndpoint != testIssuer+RevokePath || m.IntrospectionEndpoint != testIssuer+IntrospectPath {
		t.Fatalf("endpoints: %q %q", m.RevocationEndpoint, m.IntrospectionEndpoint)
	}
	if !slices.Contains(m.RevocationEndpointAuthMethodsSupported, AuthNone) ||
		slices.Contains(m.IntrospectionAuthMethodsSupported, AuthNone) {
		t.Fatalf("auth methods: %v %v", m.RevocationEndpointAuthMethodsSupported, m.IntrospectionAuthMethodsSupported)
	}
}
