package grants

import (
	"net/url"
	"slices"
	"testing"
)

// TestAccessTokenGroups: a user's token granted the groups scope carries
// the user's groups (RFC 9068 §2.2.3.1), JWT and opaque alike and at
// introspection, also after refresh; without the scope, or for a
// client's own token, there are none.
func TestAccessTokenGroups(t *testing.T) {
	t.Parallel()
	client := func(id, format string, grants ...string) *Client {
		return &Client{ClientSpec: ClientSpec{ID: id, AuthMethod: AuthSecretBasic, GrantTypes: grants,
			Scopes: []string{"openid", ScopeGroups, "read"}, AccessTokenFormat: format}, SecretHash: HashSecret(pwSecret)}
	}
	e := newEngine(t, withClients(
		client("g-jwt", "", GrantPassword, GrantRefreshToken),
		client("g-opaque", FormatOpaque, GrantPassword),
		client("g-cc", "", GrantClientCredentials)),
		withConfig(func(c *Config) { c.Users[0].Claims["groups"] = "admins, ops" }))
	password := func(clientID, scope string) map[string]any {
		r := tokenRequest(url.Values{"grant_type": {GrantPassword}, "username": {"alice"}, "password": {"alice-pw"}, "scope": {scope}}.Encode())
		r.RemoteAddr = loopbackAddr
		r.Header.Set("Authorization", siBasicAuth(clientID, pwSecret))
		return checkToken(t, serve(e, r))
	}
	groupsOf := func(v any) []string {
		var out []string
		arr, _ := v.([]any)
		for _, g := range arr {
			s, _ := g.(string)
			out = append(out, s)
		}
		return out
	}
	want := []string{"admins", "ops"}

	m := password("g-jwt", "openid groups")
	_, at := segments(t, m["access_token"].(string))
	if got := groupsOf(at["groups"]); !slices.Equal(got, want) {
		t.Errorf("JWT access token groups %v (%T), want %v", at["groups"], at["groups"], want)
	}
	form := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {m["refresh_token"].(string)}}
	rm := postTokenRaw(e, form, siBasicAuth("g-jwt", pwSecret))
	if rm.status != 200 {
		t.Fatalf("refresh: %d %s", rm.status, rm.raw)
	}
	if _, at := segments(t, rm.str("access_token")); !slices.Equal(groupsOf(at["groups"]), want) {
		t.Errorf("refreshed access token groups %v", at["groups"])
	}
	_, at = segments(t, password("g-jwt", "openid read")["access_token"].(string))
	if _, ok := at["groups"]; ok {
		t.Errorf("groups without the groups scope: %v", at["groups"])
	}

	opaque := password("g-opaque", "groups")["access_token"].(string)
	tr := opPost(e, e.serveIntrospect, IntrospectPath, "g-opaque", opForm("token", opaque), siBasicAuth("g-opaque", pwSecret))
	if tr.status != 200 || tr.body["active"] != true || !slices.Equal(groupsOf(tr.body["groups"]), want) {
		t.Errorf("introspection of the opaque token: %d %v", tr.status, tr.raw)
	}
	if c, err := e.lookupOpaque(opaque); err != nil || !slices.Equal(c.Groups, want) {
		t.Errorf("stored opaque claims: %v", err)
	}

	r := tokenRequest(url.Values{"grant_type": {GrantClientCredentials}, "scope": {"groups"}}.Encode())
	r.RemoteAddr = loopbackAddr
	r.Header.Set("Authorization", siBasicAuth("g-cc", pwSecret))
	if _, at := segments(t, checkToken(t, serve(e, r))["access_token"].(string)); at["groups"] != nil {
		t.Errorf("client_credentials token with groups %v", at["groups"])
	}
}
