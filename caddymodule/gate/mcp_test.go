package gate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// mcpGate is the gate of docs/mcp.md: an MCP server at https://mcp.test/mcp.
const mcpGate = "oauth_protect {\n audience https://mcp.test/mcp\n scopes mcp:tools\n}"

// bearerPart is the Bearer challenge of a WWW-Authenticate value that may
// also carry a DPoP challenge after it.
func bearerPart(h string) string {
	b, _, _ := strings.Cut(h, ", DPoP ")
	return b
}

// TestMCPChallenges: the MCP authorization specification (2025-11-25,
// "Protected Resource Metadata Discovery Requirements") has servers name
// the scopes they need in the 401 challenge, beside resource_metadata,
// so that a client asks for exactly those (its scope selection takes the
// challenge's scope first); RFC 6750 §3 allows scope on any challenge.
// The 401 without a token still carries no error code (RFC 6750 §3.1).
func TestMCPChallenges(t *testing.T) {
	p, _ := startedGate(t, mcpGate)
	const rm = `resource_metadata="https://mcp.test/.well-known/oauth-protected-resource/mcp"`
	for _, tt := range []struct {
		name, authz string
		want        []string
		absent      string
	}{
		{"no token", "", []string{rm, `scope="mcp:tools"`}, "error="},
		{"bad token", "Bearer not-a-token", []string{rm, `scope="mcp:tools"`, `error="invalid_token"`}, ""},
	} {
		r := httptest.NewRequest(http.MethodPost, "https://mcp.test/mcp", strings.NewReader(`{}`))
		r.RemoteAddr = "127.0.0.1:5555"
		if tt.authz != "" {
			r.Header.Set("Authorization", tt.authz)
		}
		w, seen := gateCall(t, p, r)
		ch := w.Header().Get("WWW-Authenticate")
		if w.Code != http.StatusUnauthorized || seen != nil {
			t.Fatalf("%s: status %d, forwarded %v", tt.name, w.Code, seen != nil)
		}
		bearer := bearerPart(ch)
		if !challengeRE.MatchString(bearer) {
			t.Errorf("%s: Bearer challenge %q is not well-formed", tt.name, bearer)
		}
		for _, s := range tt.want {
			if !strings.Contains(bearer, s) {
				t.Errorf("%s: Bearer challenge %q lacks %s", tt.name, bearer, s)
			}
		}
		if strings.Count(ch, "scope=") != strings.Count(ch, "realm=") {
			t.Errorf("%s: every challenge in %q should name the scope once", tt.name, ch)
		}
		if tt.absent != "" && strings.Contains(ch, tt.absent) {
			t.Errorf("%s: challenge %q must not contain %s", tt.name, ch, tt.absent)
		}
	}

	// Without scopes there is nothing to name.
	p = provisioned(t, "oauth_protect {\n audience https://mcp.test/mcp\n}")
	r := httptest.NewRequest(http.MethodGet, "https://mcp.test/mcp", nil)
	r.RemoteAddr = "127.0.0.1:5555"
	if w, _ := gateCall(t, p, r); strings.Contains(w.Header().Get("WWW-Authenticate"), "scope=") {
		t.Errorf("no scopes configured, challenge %q", w.Header().Get("WWW-Authenticate"))
	}
}

// TestMCPInsufficientScope: a valid token without a needed scope gets
// 403 with every needed scope and the metadata URL (MCP "Scope Challenge
// Handling"), so the client can step up.
func TestMCPInsufficientScope(t *testing.T) {
	p, tok := startedGate(t, "oauth_protect {\n audience https://api.test\n scopes read admin\n}")
	r := httptest.NewRequest(http.MethodPost, "https://api.test/mcp", strings.NewReader(`{}`))
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Authorization", "Bearer "+tok)
	w, seen := gateCall(t, p, r)
	ch := bearerPart(w.Header().Get("WWW-Authenticate"))
	if w.Code != http.StatusForbidden || seen != nil {
		t.Fatalf("status %d, forwarded %v", w.Code, seen != nil)
	}
	for _, s := range []string{`error="insufficient_scope"`, `scope="read admin"`,
		`resource_metadata="https://api.test/.well-known/oauth-protected-resource"`} {
		if !strings.Contains(ch, s) {
			t.Errorf("403 challenge %q lacks %s", ch, s)
		}
	}
	if strings.Count(ch, "scope=") != 1 {
		t.Errorf("403 challenge %q names the scope more than once", ch)
	}
}

// TestMCPResourceMetadata: PRM-04. For https://mcp.test/mcp the document
// is at /.well-known/oauth-protected-resource/mcp (the path inserted
// after the well-known prefix, RFC 9728 §3.1), its resource is the
// audience exactly (the client checks it against the server URL, §3.3),
// and a browser client on another origin can read it.
func TestMCPResourceMetadata(t *testing.T) {
	p := provisioned(t, mcpGate)
	r := httptest.NewRequest(http.MethodGet, "https://mcp.test/.well-known/oauth-protected-resource/mcp", nil)
	r.Header.Set("Origin", "https://inspector.test")
	w, seen := gateCall(t, p, r)
	if w.Code != http.StatusOK || seen != nil {
		t.Fatalf("status %d, forwarded %v", w.Code, seen != nil)
	}
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &prm); err != nil {
		t.Fatal(err)
	}
	if prm.Resource != "https://mcp.test/mcp" || !slices.Equal(prm.AuthorizationServers, []string{"https://as.test"}) ||
		!slices.Equal(prm.ScopesSupported, []string{"mcp:tools"}) || !slices.Equal(prm.BearerMethods, []string{"header"}) {
		t.Errorf("metadata %s", w.Body)
	}
	if w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("metadata not readable cross-origin: %v", w.Header())
	}
	// The root document is not this resource's (a client would refuse it:
	// its resource would not be the URL it was derived from).
	r = httptest.NewRequest(http.MethodGet, "https://mcp.test/.well-known/oauth-protected-resource", nil)
	if w, _ := gateCall(t, p, r); w.Code == http.StatusOK && strings.Contains(w.Body.String(), `"resource"`) {
		t.Errorf("root metadata served for a path-bearing resource: %s", w.Body)
	}
}

// TestMCPCORS: a browser MCP client (the MCP Inspector in a page) sends
// Mcp-Session-Id and Mcp-Protocol-Version and must read the session id
// the server returns and the challenge: cors expose names the response
// headers pages may read besides WWW-Authenticate and DPoP-Nonce.
func TestMCPCORS(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://mcp.test/mcp\n cors {\n origins https://inspector.test\n methods GET POST DELETE\n"+
		" headers Content-Type Mcp-Session-Id Mcp-Protocol-Version Last-Event-ID\n expose Mcp-Session-Id\n }\n}")
	pf := httptest.NewRequest(http.MethodOptions, "https://mcp.test/mcp", nil)
	pf.Header.Set("Origin", "https://inspector.test")
	pf.Header.Set("Access-Control-Request-Method", "POST")
	pf.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-session-id, mcp-protocol-version")
	if w, seen := gateCall(t, p, pf); w.Code != http.StatusNoContent || seen != nil {
		t.Fatalf("preflight: status %d, forwarded %v", w.Code, seen != nil)
	}
	r := httptest.NewRequest(http.MethodPost, "https://mcp.test/mcp", strings.NewReader(`{}`))
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Origin", "https://inspector.test")
	w, _ := gateCall(t, p, r)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d", w.Code)
	}
	expose := w.Header().Get("Access-Control-Expose-Headers")
	for _, h := range []string{"WWW-Authenticate", "DPoP-Nonce", "Mcp-Session-Id"} {
		if !strings.Contains(expose, h) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", expose, h)
		}
	}
	for _, bad := range []string{"expose", "expose Bad:Name", "expose *"} {
		src := "oauth_protect {\n audience https://mcp.test/mcp\n cors {\n origins https://inspector.test\n " + bad + "\n }\n}"
		if _, err := provisionProtect(src); err == nil || !strings.Contains(err.Error(), "expose") {
			t.Errorf("%q: error %v, want one about expose", bad, err)
		}
	}
}
