package grants

import (
	"context"
	"net/http"
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
