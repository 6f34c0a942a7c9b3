package grants

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Follow-up attack on issue 10: names, subjects and revocation across
// config reloads.

// identStart builds an engine from testConfig (changed by mod) and
// starts it on st with rev, as a config reload on the same file does.
func identStart(t *testing.T, st storage.Store, rev *tokens.Revocations, mod func(*Config)) (*Engine, error) {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, e.Start(context.Background(), st, rev)
}

func mustIdentStart(t *testing.T, st storage.Store, rev *tokens.Revocations, mod func(*Config)) *Engine {
	t.Helper()
	e, err := identStart(t, st, rev, mod)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return e
}

func ccClient(id string) *Client {
	return &Client{ClientSpec: ClientSpec{ID: id, AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("s-" + id)}
}

// A config client may not have a run-time user's name, nor a config
// user a run-time client's id: they would share one sub.
func TestConfigNameClashesWithStoredUserOrClient(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	e := mustIdentStart(t, st, nil, nil)
	if err := e.users.Put(ctx, &User{Name: "gina", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddClient(ctx, ccClient("hank")); err != nil {
		t.Fatal(err)
	}
	_, err := identStart(t, st, nil, func(c *Config) { c.Clients = append(c.Clients, ccClient("gina")) })
	if err == nil || !strings.Contains(err.Error(), `client "gina"`) || !strings.Contains(err.Error(), "user") {
		t.Errorf("config client gina next to run-time user gina: %v", err)
	}
	_, err = identStart(t, st, nil, func(c *Config) {
		c.Users = append(c.Users, &User{Name: "hank", PasswordHash: testHash("pw")})
	})
	if err == nil || !strings.Contains(err.Error(), `user "hank"`) || !strings.Contains(err.Error(), "client") {
		t.Errorf("config user hank next to run-time client hank: %v", err)
	}
	// A config user may not shadow a run-time user of the same name.
	_, err = identStart(t, st, nil, func(c *Config) {
		c.Users = append(c.Users, &User{Name: "gina", PasswordHash: testHash("pw")})
	})
	if err == nil || !strings.Contains(err.Error(), `user "gina"`) || !strings.Contains(err.Error(), "run time") {
		t.Errorf("config user gina next to run-time user gina: %v", err)
	}
	// The refused configs changed nothing: the same config starts again.
	mustIdentStart(t, st, nil, nil)
}

// A client's subject (its id) never goes to a user, and a removed user's
// subject never to a config client.
func TestClientSubjectNeverReassigned(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	e := mustIdentStart(t, st, nil, func(c *Config) { c.Clients = append(c.Clients, ccClient("svc-cfg")) })
	// Run-time client, then run-time user.
	if _, err := e.AddClient(ctx, ccClient("svc2")); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveClient(ctx, "svc2"); err != nil {
		t.Fatal(err)
	}
	if err := e.users.Put(ctx, &User{Name: "svc2", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.users.Lookup(ctx, "svc2"); u == nil || u.Subject() == "svc2" || !strings.HasPrefix(u.Subject(), "svc2/") {
		t.Errorf("user svc2 after client svc2: %+v", u)
	}
	// Run-time client, then config user.
	if _, err := e.AddClient(ctx, ccClient("ivy")); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveClient(ctx, "ivy"); err != nil {
		t.Fatal(err)
	}
	// A client id may be registered again (it is a client's again).
	if _, err := e.AddClient(ctx, ccClient("ivy")); err != nil {
		t.Errorf("client ivy registered again: %v", err)
	} else if err := e.RemoveClient(ctx, "ivy"); err != nil {
		t.Fatal(err)
	}
	// Run-time user, then config client.
	if err := e.users.Put(ctx, &User{Name: "frank", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Remove(ctx, "frank"); err != nil {
		t.Fatal(err)
	}
	e = mustIdentStart(t, st, nil, func(c *Config) {
		c.Users = append(c.Users, &User{Name: "ivy", PasswordHash: testHash("pw")})
	})
	if u, _ := e.users.Lookup(ctx, "ivy"); u == nil || u.Subject() == "ivy" {
		t.Errorf("config user ivy after client ivy: %+v", u)
	}
	// Config client svc-cfg left the config: a user of its name gets
	// another subject.
	if err := e.users.Put(ctx, &User{Name: "svc-cfg", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.users.Lookup(ctx, "svc-cfg"); u == nil || u.Subject() == "svc-cfg" {
		t.Errorf("user svc-cfg after config client svc-cfg: %+v", u)
	}
	_, err := identStart(t, st, nil, func(c *Config) { c.Clients = append(c.Clients, ccClient("frank")) })
	if err == nil || !strings.Contains(err.Error(), `client "frank"`) || !strings.Contains(err.Error(), "never reassigned") {
		t.Errorf("config client frank after user frank: %v", err)
	}
}

// Config users and clients removed from the config lose their tokens at
// the next start, once.
func TestConfigRemovalRevokes(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rev, err := tokens.LoadRevocations(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	withSvc := func(c *Config) { c.Clients = append(c.Clients, ccClient("svc-x")) }
	e := mustIdentStart(t, st, rev, withSvc)
	back := func(c *tokens.AccessClaims) { c.IssuedAt -= 2 }
	bob := txAccessToken(t, e, "bob", "read", back)
	alice := txAccessToken(t, e, "alice", "read", back)
	svc := txAccessToken(t, e, "svc-x", "", func(c *tokens.AccessClaims) { c.IssuedAt -= 2; c.ClientID = "svc-x" })
	if !verifies(e, bob) || !verifies(e, svc) {
		t.Fatal("fresh tokens do not verify")
	}
	// bob and svc-x leave the config.
	e = mustIdentStart(t, st, rev, func(c *Config) { c.Users = testUsers()[:1] })
	if verifies(e, bob) || verifiesAfterRestart(t, e, bob) {
		t.Error("removed config user bob's token is live")
	}
	if verifies(e, svc) || verifiesAfterRestart(t, e, svc) {
		t.Error("removed config client svc-x's token is live")
	}
	if !verifies(e, alice) {
		t.Error("alice's token was revoked too")
	}
	var n *nameUse
	_ = st.View(ctx, func(tx storage.Tx) error { n, err = readNameUse(tx, "bob"); return err })
	if n == nil || !n.Removed {
		t.Errorf("bob's record %+v", n)
	}
	// Once: a later start leaves tokens issued since alone.
	time.Sleep(1100 * time.Millisecond)
	e = mustIdentStart(t, st, rev, func(c *Config) { c.Users = testUsers()[:1] })
	later := txAccessToken(t, e, "svc-x", "", func(c *tokens.AccessClaims) { c.ClientID = "svc-x" })
	e = mustIdentStart(t, st, rev, func(c *Config) { c.Users = testUsers()[:1] })
	if !verifies(e, later) {
		t.Error("a start revoked a removed client again")
	}
	// bob back in the config keeps his subject; his old token stays revoked.
	e = mustIdentStart(t, st, rev, withSvc)
	if u, _ := e.users.Lookup(ctx, "bob"); u == nil || u.Subject() != "bob" {
		t.Errorf("bob back: %+v", u)
	}
	if verifies(e, bob) {
		t.Error("bob's old token came back")
	}
}
