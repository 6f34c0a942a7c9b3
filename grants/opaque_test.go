package grants

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// TestOpaqueAccessTokens: a client with access_token_format opaque gets a
// reference token whose claims are in storage; the verifier, introspection
// and revocation treat it like a JWT.
func TestOpaqueAccessTokens(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-basic" || cl.ID == "c-web" {
				cl.AccessTokenFormat = FormatOpaque
			}
		}
	}))
	ctx := context.Background()
	tok := opClientToken(t, e)
	if !strings.HasPrefix(tok, tokens.OpaquePrefix) || strings.Contains(tok, ".") {
		t.Fatalf("not an opaque token: %q", tok)
	}
	c, err := e.verifier.Verify(tok, time.Now())
	if err != nil || c.ClientID != "c-basic" || c.Subject != "c-basic" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	if v, ok := c.Claim("client_id"); !ok || v != "c-basic" {
		t.Fatalf("Claim(client_id) = %v, %v", v, ok)
	}
	opWantMembers(t, opIntrospect(e, "c-basic", "token", tok), map[string]any{"active": true, "client_id": "c-basic"}, "exp")
	// Stored only by hash.
	err = e.store.View(ctx, func(tx storage.Tx) error {
		_, err := tx.Get(storage.KindAccess, tok)
		if err == nil {
			t.Errorf("the token itself is a storage key")
		}
		_, err = tx.Get(storage.KindAccess, hashToken(tok))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if tr := opRevoke(e, "c-basic", "token", tok); tr.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", tr.status, tr.raw)
	}
	if verifies(e, tok) {
		t.Fatalf("a revoked opaque token verifies")
	}
	opInactive(t, opIntrospect(e, "c-basic", "token", tok))

	// After its expiry (and leeway) it is gone.
	later := opClientToken(t, e)
	if _, err := e.verifier.Verify(later, time.Now().Add(testTTL+time.Hour)); err == nil {
		t.Fatalf("an expired opaque token verifies")
	}
	for _, bad := range []string{tokens.OpaquePrefix, tokens.OpaquePrefix + "unknown", tokens.OpaquePrefix + strings.Repeat("a", tokens.MaxTokenBytes)} {
		if _, err := e.verifier.Verify(bad, time.Now()); err == nil {
			t.Fatalf("%.20q verifies", bad)
		}
	}
	// A user grant: the refresh family revokes the opaque access token too.
	tr := firstGrant(t, e, "c-web")
	at := tr.str("access_token")
	if !strings.HasPrefix(at, tokens.OpaquePrefix) || !verifies(e, at) {
		t.Fatalf("code flow access token %q", at)
	}
	if r := opRevoke(e, "c-web", "token", tr.str("refresh_token")); r.status != http.StatusOK {
		t.Fatal(r.raw)
	}
	if verifies(e, at) {
		t.Fatalf("the family's opaque access token survived")
	}
}

func TestAccessTokenFormatValidation(t *testing.T) {
	t.Parallel()
	c := &Client{
		ClientSpec: ClientSpec{
			ID:                "x",
			AuthMethod:        AuthSecretBasic,
			GrantTypes:        []string{GrantClientCredentials},
			AccessTokenFormat: "paseto",
		},
		SecretHash: HashSecret("s"),
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "access_token_format") {
		t.Fatalf("Validate = %v", err)
	}
}

// TestOpaqueTokenStorageFailure: while storage fails, an opaque token
// cannot be checked, and every endpoint says so with 503 instead of
// calling a good token invalid or answering a revocation that did not
// happen with 200; after recovery the token is as it was.
func TestOpaqueTokenStorageFailure(t *testing.T) {
	t.Parallel()
	fs := &failStore{Store: openStore(t)}
	e := newEngine(t, withStore(fs), withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-basic" {
				cl.AccessTokenFormat = FormatOpaque
			}
		}
	}))
	tok := opClientToken(t, e)
	fs.mode.Store(failAll)
	if _, err := e.verifier.Verify(tok, time.Now()); !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("Verify during the failure: %v, want tokens.ErrUnavailable", err)
	}
	want503 := func(what string, tr tokenResult) {
		t.Helper()
		if tr.status != http.StatusServiceUnavailable || tr.str("error") != CodeTemporarilyUnavailable || tr.hdr.Get("Retry-After") == "" {
			t.Errorf("%s during the failure: %d %s (Retry-After %q), want 503 temporarily_unavailable", what, tr.status, tr.raw, tr.hdr.Get("Retry-After"))
		}
	}
	want503("revoke", opRevoke(e, "c-basic", "token", tok))
	want503("revoke with the hint", opRevoke(e, "c-basic", "token", tok, "token_type_hint", "access_token"))
	want503("introspect", opIntrospect(e, "c-basic", "token", tok))
	r := httptest.NewRequest(http.MethodGet, UserinfoPath, nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.serveUserinfo(rec, r)
	want503("userinfo", tokenResult{status: rec.Code, hdr: rec.Header(), raw: rec.Body.String(),
		body: map[string]any{"error": map[bool]string{true: CodeTemporarilyUnavailable}[strings.Contains(rec.Body.String(), CodeTemporarilyUnavailable)]}})
	fs.mode.Store(failNone)

	if !verifies(e, tok) {
		t.Fatal("the token does not verify after the failure")
	}
	if tr := opRevoke(e, "c-basic", "token", tok); tr.status != http.StatusOK {
		t.Fatalf("revoke after the failure: %d %s", tr.status, tr.raw)
	}
	if verifies(e, tok) {
		t.Error("the token verifies after its revocation")
	}
}
