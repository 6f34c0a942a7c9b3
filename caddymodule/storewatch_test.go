package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// twoNodes provisions and starts two oauth apps on one PostgreSQL
// database, as two Caddy nodes would be (the second with another pool
// size, so that this one process keeps two stores, like two processes).
func twoNodes(t *testing.T) (a, b *grants.Engine, stores [2]storage.Store) {
	t.Helper()
	dsn := postgresDSN(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var engines [2]*grants.Engine
	for i, extra := range []string{"", "\n  max_conns 5"} {
		app, err := parseOAuth(t, `oauth {
 issuer https://as.test
 key_encryption_key 0123456789abcdef0123456789abcdef
 storage postgres {
  dsn `+dsn+extra+`
 }
 client svc {
  secret svc-secret-0123456789
  grant_types client_credentials
  scopes read
 }
 client other {
  secret other-secret-0123456789
  grant_types client_credentials
  scopes read
 }
 client ropc {
  secret ropc-secret-0123456789
  grant_types password refresh_token
  scopes read
 }
 user alice {
  password_hash `+string(hash)+`
 }
}`)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		if err := app.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		eng, err := app.ready()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = app.Cleanup() })
		engines[i], stores[i] = eng, app.life.store
	}
	return engines[0], engines[1], stores
}

// post sends a form to the engine's endpoint with Basic credentials.
func post(t *testing.T, e *grants.Engine, path, client string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://as.test"+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(client, client+"-secret-0123456789")
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

// issue gets an access token for client from e.
func issue(t *testing.T, e *grants.Engine, client string) string {
	t.Helper()
	w := post(t, e, grants.TokenPath, client, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	return tr.AccessToken
}

// refusedWithin checks that e's verifier accepts token now (a verified,
// cached hit) and refuses it within d after revoke runs.
func refusedWithin(t *testing.T, e *grants.Engine, token string, d time.Duration, revoke func()) {
	t.Helper()
	for range 2 { // the second is from the verified-token cache
		if _, err := e.Verifier().Verify(token, time.Now()); err != nil {
			t.Fatalf("before the revocation: %v", err)
		}
	}
	revoke()
	start := time.Now()
	for {
		_, err := e.Verifier().Verify(token, time.Now())
		if err != nil {
			if !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("refused, but not as revoked: %v", err)
			}
			t.Logf("refused %v after the revocation", time.Since(start))
			return
		}
		if time.Since(start) > d {
			t.Fatalf("still accepted %v after the revocation on the other node", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRevocationReachesOtherNode: a token verified (and cached) on node
// B is refused there within 1s of its revocation on node A: by RFC 7009
// revocation, by the revocation of its subject (RevokeSubject), by the
// revocation of its client, and by the revocation of its grant (refresh
// token reuse).
func TestRevocationReachesOtherNode(t *testing.T) {
	a, b, stores := twoNodes(t)
	ctx := context.Background()

	tok := issue(t, a, "svc")
	refusedWithin(t, b, tok, time.Second, func() {
		if w := post(t, a, grants.RevokePath, "svc", url.Values{"token": {tok}}); w.Code != 200 {
			t.Fatalf("revoke: %d %s", w.Code, w.Body)
		}
	})

	tok = issue(t, b, "svc") // minted on B: B's verifier knows it without a signature check
	refusedWithin(t, b, tok, time.Second, func() {
		if _, err := a.RevokeSubject(ctx, "svc"); err != nil {
			t.Fatal(err)
		}
	})

	tok = issue(t, a, "other")
	refusedWithin(t, b, tok, time.Second, func() {
		if _, err := a.RevokeClient(ctx, "other"); err != nil && !strings.Contains(err.Error(), "config") {
			t.Fatal(err)
		}
	})

	// Refresh-token reuse on A revokes the grant: B refuses its access
	// token (one record for every access token of the grant).
	w := post(t, a, grants.TokenPath, "ropc", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}, "scope": {"read"}})
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &tr) != nil || tr.RefreshToken == "" {
		t.Fatalf("password grant: %d %s", w.Code, w.Body)
	}
	if w := post(t, a, grants.TokenPath, "ropc", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}); w.Code != 200 {
		t.Fatalf("refresh: %d %s", w.Code, w.Body)
	}
	refusedWithin(t, b, tr.AccessToken, time.Second, func() {
		if w := post(t, a, grants.TokenPath, "ropc", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}); w.Code != 400 {
			t.Fatalf("reuse of a rotated refresh token: %d %s", w.Code, w.Body)
		}
	})

	// The same record written through A's store directly (as any other
	// path that revokes a grant writes it).
	exp := time.Now().Add(time.Hour).Unix()
	claims := &tokens.AccessClaims{ID: "jti-of-b", Grant: "family-1", Subject: "alice", ClientID: "svc",
		IssuedAt: time.Now().Unix(), ExpiresAt: exp}
	if b.Verifier().Revocations().RevokedClaims(claims) {
		t.Fatal("revoked before the revocation")
	}
	if err := stores[0].Update(ctx, func(tx storage.Tx) error {
		return tokens.PersistRevoked(tx, map[string]int64{tokens.GrantRevocationKey("family-1"): exp})
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for !b.Verifier().Revocations().RevokedClaims(claims) {
		if time.Since(start) > time.Second {
			t.Fatal("a grant revoked on A is not revoked at B after 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeyRotationReachesOtherNode: after a rotation on node A, a token A
// signs with the new key verifies at node B within 1s, and B's JWKS
// lists the new key.
func TestKeyRotationReachesOtherNode(t *testing.T) {
	a, b, _ := twoNodes(t)
	for round := range 2 {
		kid, err := a.RotateKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tok := issue(t, a, "svc")
		start := time.Now()
		for {
			_, err := b.Verifier().Verify(tok, time.Now())
			if err == nil {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("round %d: a token signed with the new key %s still fails at the other node after 1s: %v", round, kid, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("round %d: verified %v after the rotation", round, time.Since(start))
		r := httptest.NewRequest(http.MethodGet, "https://as.test"+grants.JWKSPath, nil)
		w := httptest.NewRecorder()
		b.ServeHTTP(w, r)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"`+kid+`"`) {
			t.Fatalf("round %d: the other node's JWKS does not list %s: %d %s", round, kid, w.Code, w.Body)
		}
	}
}

// TestClientReachesOtherNodeCORS: a browser client registered on node A
// gets CORS from node B's token endpoint within 1s, though B read the
// registered clients' origins just before (and would keep them 30s).
func TestClientReachesOtherNodeCORS(t *testing.T) {
	a, b, _ := twoNodes(t)
	const origin = "https://spa.test"
	preflight := func() string {
		r := httptest.NewRequest(http.MethodOptions, "https://as.test"+grants.TokenPath, nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", http.MethodPost)
		w := httptest.NewRecorder()
		b.ServeHTTP(w, r)
		return w.Header().Get("Access-Control-Allow-Origin")
	}
	if got := preflight(); got != "" {
		t.Fatalf("CORS before the client exists: %q", got)
	}
	r := httptest.NewRequest(http.MethodPost, "/oauth/clients", strings.NewReader(
		`{"client_id":"spa","auth_method":"none","redirect_uris":["`+origin+`/cb"],"grant_types":["authorization_code"]}`))
	w := httptest.NewRecorder()
	if err := routeAdmin(w, r, a); err != nil || w.Code/100 != 2 {
		t.Fatalf("registering on A: %v %d %s", err, w.Code, w.Body)
	}
	start := time.Now()
	for preflight() != origin {
		if time.Since(start) > time.Second {
			t.Fatal("B gives no CORS to a client registered on A after 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
