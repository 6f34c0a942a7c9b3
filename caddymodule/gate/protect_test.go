package gate

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestStripIdentityHeaders(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://app.test\n forward_header X-Tenant tenant\n strip_header X-App-User X-Legacy-*\n}")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, name := range []string{
		"X-Remote-User", "X_remote_user", "X-Forwarded-User", "X-Auth-Role", "X-Tenant", "X_tenant",
		"Remote-Groups", "Remote-Email", "Remote-Name", "Remote_user", "X-Webauth-User", "X-Webauth-Email",
		"X-Forwarded-Access-Token", "X-Auth-Request-User", "X-App-User", "X_app_user", "X-Legacy-Role", "X-Remote-Group",
		// Other proxies' identity headers and token carriers.
		"X-Authenticated-Userid", "X-Amzn-Oidc-Identity", "X-Ms-Client-Principal-Name", "X-Goog-Authenticated-User-Email",
		"Cf-Access-Authenticated-User-Email", "X-Id-Token", "X-Access-Token", "X-Forwarded-Authorization",
		"X-Original-Authorization", "X-Forwarded-Login", "X-Forwarded-Name", "X-Forwarded-User-Id", "Auth-User",
		"X-Remote", "X-Webauth", "X-Consumer-Username", "X-Credential-Identifier", "Oidc-Claim-Sub", "Oidc-Access-Token",
		"X-Ms-Token-Aad-Id-Token", "X-Goog-Iap-Jwt-Assertion", "X-Forwarded-Client-Cert", "Ssl-Client-Cert", "X-User-Id",
		"X-Pomerium-Claim-Email", "Tailscale-User-Login", "X-Groups",
	} {
		r.Header[name] = []string{"admin", "root"}
	}
	r.Header["Accept"] = []string{"*/*"}
	r.Header["X-App-Users-Count"] = []string{"3"} // not the exact name, not a family
	p.stripIdentityHeaders(r)
	if len(r.Header) != 2 || r.Header.Get("Accept") != "*/*" || r.Header.Get("X-App-Users-Count") != "3" {
		t.Fatalf("headers after strip = %v; want only Accept and X-App-Users-Count", r.Header)
	}
}

// Families are found by binary search over prefixes that cover each
// other: a family that is a prefix of another (built-in or configured)
// still strips everything either names, and nothing else.
func TestStripFamiliesOverlap(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://app.test\n strip_header X-Rem* X-App-User-* X-App-* X-Z-*\n}")
	for name, want := range map[string]bool{
		"X-Remote-Group": true, "X-Remnant": true, "X_rem": true, "X-App-User-Id": true, "X-App-Z": true, "X-App-": true,
		"X-Z-A": true, "Remote-User": true, "Tailscale-User-Login": true, "Ssl-Client-Cert": true, "X-Ssl-Client-S-Dn": true,
		"X-Ra": false, "X-Re": false, "X-App": false, "X-Z": false, "X-Zz-A": false, "Accept": false, "A": false,
		"Zzz": false, "X-Forwarded-For": false, "X-Forwarded-Usex": false, "X-Forwarded-User": true,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header[name] = []string{"v"}
		p.stripIdentityHeaders(r)
		if _, kept := r.Header[name]; kept == want {
			t.Errorf("%s: stripped %v, want %v", name, !kept, want)
		}
	}
	if !slices.IsSorted(p.stripFamily) {
		t.Errorf("families not sorted: %q", p.stripFamily)
	}
	for i := 1; i < len(p.stripFamily); i++ {
		if strings.HasPrefix(p.stripFamily[i], p.stripFamily[i-1]) {
			t.Errorf("family %q is covered by %q", p.stripFamily[i], p.stripFamily[i-1])
		}
	}
}

// A client must not be able to make reverse_proxy delete the identity
// headers the gate (or a later request_header) sets by naming them in
// Connection (RFC 9110 §7.6.1).
func TestStripConnectionOptions(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://app.test\n forward_header X-Forwarded-User sub\n}")
	for _, tt := range []struct {
		in   []string
		want []string
	}{
		{[]string{"close, X-Forwarded-User, X-OAuth-Scope"}, []string{"close"}},
		{[]string{"X-Forwarded-User", "keep-alive,Upgrade"}, []string{"keep-alive, Upgrade"}},
		{[]string{"X-OAuth-Client"}, nil},
		{[]string{"te, X_Forwarded_User"}, []string{"te"}},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Connection"] = tt.in
		p.stripIdentityHeaders(r)
		if got := r.Header["Connection"]; !slices.Equal(got, tt.want) {
			t.Errorf("Connection %q became %q, want %q", tt.in, got, tt.want)
		}
	}
}

// RFC 6750 §3: challenges are well-formed auth-params with quoted
// values that contain no raw quote or backslash.
var challengeRE = regexp.MustCompile(`^Bearer realm="[^"\\]*"(, [a-z_]+="[^"\\]*")*$`)

func TestDenyChallenges(t *testing.T) {
	p := &Protect{Audience: "https://app.test/api", Scopes: []string{"read", "write"}}
	p.challenge = `Bearer realm="https://app.test/api", resource_metadata="https://app.test/.well-known/oauth-protected-resource/api"`
	tests := []struct {
		status int
		code   string
		scope  string
		want   []string
		absent string
	}{
		{401, "", "", []string{`resource_metadata="https://app.test/.well-known/oauth-protected-resource/api"`}, "error="},
		{401, "invalid_token", "", []string{`error="invalid_token"`}, "scope="},
		{403, "insufficient_scope", "read write", []string{`error="insufficient_scope"`, `scope="read write"`}, ""},
		{400, "invalid_request", "", []string{`error="invalid_request"`}, ""},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		if err := p.deny(w, nil, tt.status, tt.code, tt.scope); err != nil {
			t.Fatal(err)
		}
		ch := w.Header().Get("WWW-Authenticate")
		if w.Code != tt.status || !challengeRE.MatchString(ch) {
			t.Errorf("%s: status %d challenge %q", tt.code, w.Code, ch)
		}
		for _, s := range tt.want {
			if !strings.Contains(ch, s) {
				t.Errorf("%s: challenge %q lacks %q", tt.code, ch, s)
			}
		}
		if tt.absent != "" && strings.Contains(ch, tt.absent) {
			t.Errorf("%s: challenge %q must not contain %q", tt.code, ch, tt.absent)
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: missing Cache-Control: no-store", tt.code)
		}
	}
}

func TestProtectValidate(t *testing.T) {
	bad := []Protect{
		{Audience: "https://app.test", Realm: `a"b`},
		{},
		{Audience: "not a url"},
		{Audience: "/relative"},
		{Audience: "http://[::1"},
		{Audience: "https://app.test/#frag"},
		{Audience: "https://"},
		{Audience: "urn:"},
		{Audience: "https://user@app.test"},
		{Audience: "https://app.test/\x00"},
		{Audience: "https://app.test", Scopes: []string{"two words"}},
		{Audience: "https://app.test", Scopes: []string{"caf\u00e9"}},
		{Audience: "https://app.test", ForwardHeaders: []ForwardHeader{{Header: "X-User", Claim: ""}}},
		{Audience: "https://app.test", ForwardHeaders: []ForwardHeader{{Header: "Bad:Header", Claim: "sub"}}},
		{Audience: "https://app.test", ForwardHeaders: []ForwardHeader{{Header: "Connection", Claim: "sub"}}},
		{Audience: "https://app.test", StripHeaders: []string{"*"}},
		{Audience: "https://app.test", StripHeaders: []string{"X-*-User"}},
		{Audience: "https://app.test", CORS: &CORS{}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"*"}, AllowCredentials: true}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"https://spa.test/app"}}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"spa.test"}}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"https://spa.test"}, AllowedMethods: []string{"*"}}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"https://spa.test"}}, ForwardPreflight: true},
	}
	for i, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("case %d: Validate accepted %+v", i, p)
		}
	}
	for _, good := range []Protect{
		{Audience: "https://app.test", Scopes: []string{"read"}, ForwardHeaders: []ForwardHeader{{Header: "X-User", Claim: "sub"}}},
		{Audience: "urn:example:billing"},
		{Audience: "any"},
		{Audience: "https://app.test", StripHeaders: []string{"X-App-User", "X-Legacy-*"}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"https://spa.test", "http://localhost:5173"}, AllowCredentials: true}},
		{Audience: "https://app.test", CORS: &CORS{AllowedOrigins: []string{"*"}}},
	} {
		if err := good.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", good, err)
		}
	}
}
