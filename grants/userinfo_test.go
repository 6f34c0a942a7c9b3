package grants

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func userinfo(e *Engine, method, target, authz string) (*httptest.ResponseRecorder, map[string]any) {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = loopbackAddr
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	rec := httptest.NewRecorder()
	e.serveUserinfo(rec, r)
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec, body
}

const realm = `Bearer realm="` + testIssuer + `"`

// RFC 6750 §3 and OIDC Core §5.3: who may read UserInfo and what it says.
func TestUserinfoRefusals(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	noOpenID := firstGrant(t, e, "c-web", "scope", "read")
	withOpenID := firstGrant(t, e, "c-web", "scope", "openid")
	cc := postToken(e, "c-basic", url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}})
	wantOK(t, cc)
	revoked := firstGrant(t, e, "c-web", "scope", "openid")
	wantOK(t, refresh(e, "c-web", revoked.str("refresh_token")))
	wantErr(t, refresh(e, "c-web", revoked.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)

	tests := []struct {
		name      string
		method    string
		target    string
		authz     string
		status    int
		challenge string // exact WWW-Authenticate, or a prefix ending in '*'
	}{
		{"no token", "GET", UserinfoPath, "", 401, realm + `, DPoP realm="https://as.test", algs="ES256 *`},
		{"basic credentials", "GET", UserinfoPath, siBasicAuth("c-web", webSecret), 401, realm + `, DPoP realm="https://as.test", algs="ES256 *`},
		{"garbage token", "GET", UserinfoPath, "Bearer abc", 401, realm + `, error="invalid_token"*`},
		{"tampered token", "GET", UserinfoPath, "Bearer " + withOpenID.str("access_token") + "x", 401, realm + `, error="invalid_token"*`},
		{"id token as bearer", "GET", UserinfoPath, "Bearer " + withOpenID.str("id_token"), 401, realm + `, error="invalid_token"*`},
		{"refresh token as bearer", "GET", UserinfoPath, "Bearer " + withOpenID.str("refresh_token"), 401, realm + `, error="invalid_token"*`},
		{"revoked token", "GET", UserinfoPath, "Bearer " + revoked.str("access_token"), 401, realm + `, error="invalid_token"*`},
		{"client credentials token", "GET", UserinfoPath, "Bearer " + cc.str("access_token"), 401, realm + `, error="invalid_token"*`},
		{"malformed header", "GET", UserinfoPath, "Bearer a b", 400, realm + `, error="invalid_request"*`},
		{"token in the query", "GET", UserinfoPath + "?access_token=" + withOpenID.str("access_token"), "", 400, realm + `, error="invalid_request"*`},
		{"no openid scope", "GET", UserinfoPath, "Bearer " + noOpenID.str("access_token"), 403, realm + `, error="insufficient_scope", scope="openid"`},
		{"PUT", "PUT", UserinfoPath, "Bearer " + withOpenID.str("access_token"), 405, realm + `, error="invalid_request"*`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, body := userinfo(e, tt.method, tt.target, tt.authz)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body.String())
			}
			ch := rec.Header().Get("WWW-Authenticate")
			if p, ok := strings.CutSuffix(tt.challenge, "*"); ok {
				if !strings.HasPrefix(ch, p) {
					t.Fatalf("WWW-Authenticate = %q, want prefix %q", ch, p)
				}
			} else if ch != tt.challenge {
				t.Fatalf("WWW-Authenticate = %q, want %q", ch, tt.challenge)
			}
			if _, leaked := body["sub"]; leaked {
				t.Fatalf("refusal carries claims: %s", rec.Body.String())
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
			}
		})
	}
}

func TestUserinfoClaims(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	tests := []struct {
		name, user, scope string
		want              map[string]any
	}{
		{"openid", "alice", "openid", map[string]any{"sub": "alice"}},
		{"email", "alice", "openid email", map[string]any{"sub": "alice", "email": "alice@example.test", "email_verified": true}},
		{"profile", "alice", "openid profile", map[string]any{"sub": "alice", "name": "Alice Liddell", "preferred_username": "alice"}},
		{"all", "alice", "openid profile email read", map[string]any{"sub": "alice", "name": "Alice Liddell",
			"preferred_username": "alice", "email": "alice@example.test", "email_verified": true}},
		{"user without claims", "bob", "openid profile email", map[string]any{"sub": "bob", "preferred_username": "bob"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t, e)
			v, ch := newPKCE()
			code := b.authorize(authzQuery("c-web", ch, "scope", tt.scope), tt.user, tt.user+"-pw").Query().Get("code")
			tr := redeem(e, "c-web", code, v)
			wantOK(t, tr)
			for _, m := range []string{"GET", "POST"} {
				rec, body := userinfo(e, m, UserinfoPath, "Bearer "+tr.str("access_token"))
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: %d %s", m, rec.Code, rec.Body.String())
				}
				if len(body) != len(tt.want) {
					t.Errorf("%s: claims %v, want %v", m, body, tt.want)
				}
				for k, w := range tt.want {
					if body[k] != w {
						t.Errorf("%s: %s = %v, want %v", m, k, body[k], w)
					}
				}
			}
			// OIDC Core §5.3.2: the same sub as the ID token.
			_, idc := verifyIDToken(t, e, tr.str("id_token"))
			if idc["sub"] != tt.want["sub"] {
				t.Errorf("id_token sub %v differs from userinfo sub %v", idc["sub"], tt.want["sub"])
			}
		})
	}
}

func TestUserinfoRemovedUser(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e)
	v, ch := newPKCE()
	code := b.authorize(authzQuery("c-trusted", ch, "scope", "openid"), "carol", "carol-pw").Query().Get("code")
	tr := redeem(e, "c-trusted", code, v)
	wantOK(t, tr)
	if rec, _ := userinfo(e, "GET", UserinfoPath, "Bearer "+tr.str("access_token")); rec.Code != http.StatusOK {
		t.Fatalf("control: %d", rec.Code)
	}
	if _, err := e.users.Remove(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	rec, _ := userinfo(e, "GET", UserinfoPath, "Bearer "+tr.str("access_token"))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("removed user's userinfo: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
}
