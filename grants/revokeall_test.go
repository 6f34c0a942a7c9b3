package grants

import (
	"context"
	"errors"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// The admin revoke by subject also finds a local user by name, whose
// subject may differ from it.
func TestRevokeSubjectOrUser(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	ctx := context.Background()
	back := func(c *tokens.AccessClaims) { c.IssuedAt -= 2 }
	if err := e.users.Put(ctx, &User{Name: "jürgen", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	jt := txAccessToken(t, e, "j%C3%BCrgen", "read", back)
	for _, s := range []string{"carol", "carol"} { // the second carol is re-created
		if _, err := e.users.Remove(ctx, s); err != nil && !errors.Is(err, ErrUserNotFound) {
			t.Fatal(err)
		}
		if err := e.users.Put(ctx, &User{Name: s, PasswordHash: testHash("pw")}, true); err != nil {
			t.Fatal(err)
		}
	}
	carol, _ := e.users.Lookup(ctx, "carol")
	if carol.Subject() == "carol" {
		t.Fatal("carol was not re-created")
	}
	ct := txAccessToken(t, e, carol.Subject(), "read", back)
	old := txAccessToken(t, e, "carol", "read", back)
	alice := txAccessToken(t, e, "alice", "read", back)
	ext := externalSubject(jbIssuer, "x")
	et := txAccessToken(t, e, ext, "read", back)
	for _, s := range []string{"jürgen", "carol", ext} {
		if _, err := e.RevokeSubjectOrUser(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for name, tok := range map[string]string{"jürgen": jt, "re-created carol": ct, "old carol": old, "external": et} {
		if verifies(e, tok) {
			t.Errorf("%s's token is live after revoking by name", name)
		}
	}
	if !verifies(e, alice) {
		t.Error("alice's token was revoked too")
	}
}
