package grants

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/samltest"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Issue 10 §1 and §2: who is who, and token exchange inside the rules of
// the tokens it came from.

// txExternal signs a trusted-issuer JWT (jbIssuer) for sub.
func txExternal(t testing.TB, sub string, mod func(map[string]any)) string {
	m := map[string]any{"iss": jbIssuer, "sub": sub, "aud": testIssuer, "exp": time.Now().Add(time.Minute).Unix(),
		"iat": time.Now().Unix(), "jti": tokens.RandomID(8)}
	if mod != nil {
		mod(m)
	}
	return caSign(t, "ES256", caOtherKey, map[string]any{"alg": "ES256", "kid": "idp1"}, m)
}

// §1: a trusted issuer asserting a local user's name or a client id gets
// neither: its subject is namespaced, different per issuer, and says
// where it came from.
func TestExternalSubjectNeverLocal(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withJWTBearer(nil))
	seen := map[string]bool{}
	for _, asserted := range []string{"alice", "c-jb", "c-basic"} {
		m := checkToken(t, jbPost(e, "c-jb", jbAssertion(t, func(c map[string]any) { c["sub"] = asserted; c["jti"] = tokens.RandomID(8) })))
		_, claims := segments(t, m["access_token"].(string))
		sub, _ := claims["sub"].(string)
		if sub == asserted || !strings.HasPrefix(sub, "ext#") || seen[sub] {
			t.Errorf("asserted %q became sub %q", asserted, sub)
		}
		seen[sub] = true
		if claims["ext_iss"] != jbIssuer || claims["ext_sub"] != asserted {
			t.Errorf("ext claims %v", claims)
		}
		in := opPost(e, e.serveIntrospect, IntrospectPath, "", url.Values{"client_id": {"c-jb"}, "client_secret": {postSecret}, "token": {m["access_token"].(string)}}, "")
		if in.body["ext_sub"] != asserted || in.body["sub"] != sub {
			t.Errorf("introspection %s", in.raw)
		}
	}
	if externalSubject("https://a.test", "x") == externalSubject("https://b.test", "x") {
		t.Error("two issuers' subjects collide")
	}
	// The 0 byte separates issuer and subject, so issuers may not hold one.
	if err := validateTrustedIssuer(&TrustedIssuer{Issuer: "https://a.test\x00", Keys: &JWKS{}}, nil); err == nil {
		t.Error("an issuer with a 0 byte was accepted")
	}
}

// §1: map_subject local_users makes an issuer assert local users, and
// then only existing local users (never clients) match.
func TestExternalSubjectMappedToLocalUsers(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	e.trusted[jbIssuer].MapSubject = MapSubjectLocalUsers
	m := checkToken(t, jbPost(e, "c-tx", txExternal(t, "alice", nil)))
	if _, c := segments(t, m["access_token"].(string)); c["sub"] != "alice" || c["ext_iss"] != jbIssuer {
		t.Errorf("claims %v", c)
	}
	for _, who := range []string{"nobody", "c-tx", "svc-a"} {
		checkError(t, jbPost(e, "c-tx", txExternal(t, who, nil)), 400, CodeInvalidGrant)
	}
	if _, err := validateMapSubject("x", "users"); err == nil {
		t.Error("unknown map_subject accepted")
	}
}

// §1: SAML NameIDs are namespaced the same way; mapped, unknown users are
// refused.
func TestSAMLSubjectMapping(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(func(p *SAMLIdP) { p.MapSubject = MapSubjectLocalUsers }))
	checkError(t, samlPost(e, "c-saml", samlGood(t, nil)), 400, CodeInvalidGrant)
}

// §1: userinfo never answers with a local user for an external subject,
// even when the issuer asserted that user's name.
func TestUserinfoExternalSubject(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	e.trusted[jbIssuer].Scopes = []string{"openid", "read"}
	m := checkToken(t, jbPost(e, "c-tx", txExternal(t, "alice", nil), "scope", "openid"))
	rec, body := userinfo(e, "GET", UserinfoPath, "Bearer "+m["access_token"].(string))
	if rec.Code != 200 || body["sub"] == "alice" || body["email"] != nil || body["ext_sub"] != "alice" {
		t.Fatalf("userinfo %d %v", rec.Code, body)
	}
}

// §1: a removed user's subject is never given to a new user of the same
// name (nor to a client), and non-ASCII names are percent-encoded.
func TestLocalSubjectNeverReassigned(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	ctx := context.Background()
	carol := &User{Name: "carol", PasswordHash: testHash("pw"), Claims: map[string]string{"email": "old@carol.test"}}
	if err := e.users.Put(ctx, carol, true); err != nil {
		t.Fatal(err)
	}
	oldTok := txAccessToken(t, e, "carol", "openid", nil)
	if rec, body := userinfo(e, "GET", UserinfoPath, "Bearer "+oldTok); rec.Code != 200 || body["sub"] != "carol" {
		t.Fatalf("first carol: %d %v", rec.Code, body)
	}
	if _, err := e.users.Remove(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("pw2")}, true); err != nil {
		t.Fatal(err)
	}
	u, err := e.users.Lookup(ctx, "carol")
	if err != nil || u.Subject() == "carol" || len(u.Subject()) > 255 {
		t.Fatalf("new carol's subject %q (%v)", u.Subject(), err)
	}
	if rec, body := userinfo(e, "GET", UserinfoPath, "Bearer "+oldTok); rec.Code != 401 {
		t.Errorf("the old carol's token is the new carol's: %d %v", rec.Code, body)
	}
	newTok := txAccessToken(t, e, u.Subject(), "openid", nil)
	if rec, body := userinfo(e, "GET", UserinfoPath, "Bearer "+newTok); rec.Code != 200 || body["sub"] != u.Subject() {
		t.Errorf("new carol: %d %v", rec.Code, body)
	}
	// A password change keeps the subject.
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("pw3")}, false); err != nil {
		t.Fatal(err)
	}
	if u2, _ := e.users.Lookup(ctx, "carol"); u2.Subject() != u.Subject() {
		t.Errorf("password change moved the subject %q -> %q", u.Subject(), u2.Subject())
	}
	// The name cannot come back as a client id either.
	if _, err := e.AddClient(ctx, &Client{ClientSpec: ClientSpec{ID: "dave", GrantTypes: []string{GrantClientCredentials}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.users.Put(ctx, &User{Name: "erin", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Remove(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddClient(ctx, &Client{ClientSpec: ClientSpec{ID: "erin", GrantTypes: []string{GrantClientCredentials}}}); err == nil {
		t.Error("a removed user's name became a client id")
	}

	// Non-ASCII names: the sub is ASCII, and maps back to the user.
	if err := e.users.Put(ctx, &User{Name: "jürgen", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	tok := txAccessToken(t, e, "j%C3%BCrgen", "openid", nil)
	if rec, body := userinfo(e, "GET", UserinfoPath, "Bearer "+tok); rec.Code != 200 || body["sub"] != "j%C3%BCrgen" {
		t.Errorf("jürgen: %d %v", rec.Code, body)
	}
	if rec, _ := userinfo(e, "GET", UserinfoPath, "Bearer "+txAccessToken(t, e, "jürgen", "openid", nil)); rec.Code != 401 {
		t.Errorf("the unencoded name is a subject too: %d", rec.Code)
	}
}

// §1: a config user removed from the config and created at run time does
// not inherit the config user's subject either.
func TestConfigUserSubjectNotReassigned(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	ctx := context.Background()
	start := func(users []*User) *Engine {
		return newEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) { c.Users = users }))
	}
	e := start(testUsers())
	if u, _ := e.users.Lookup(ctx, "bob"); u.Subject() != "bob" {
		t.Fatalf("config bob's subject %q", u.Subject())
	}
	e = start(testUsers()[:1]) // bob leaves the config
	if err := e.users.Put(ctx, &User{Name: "bob", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.users.Lookup(ctx, "bob"); u.Subject() == "bob" {
		t.Error("a run-time bob took config bob's subject")
	}
}

// §5: user names and client ids refuse '/', '?', '#', '%' and control
// characters.
func TestNamesRefuseURLAndControlCharacters(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"carol2?x", "a/b", "a#b", "a%41", "a\x7fb", "a\u0085b", "a\x00b", "\xff"} {
		if err := ValidateUser(&User{Name: name, PasswordHash: testHash("pw")}); err == nil {
			t.Errorf("user name %q accepted", name)
		}
		c := &Client{ClientSpec: ClientSpec{ID: name, AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("s")}
		if err := c.Validate(); err == nil {
			t.Errorf("client id %q accepted", name)
		}
	}
	if err := ValidateUser(&User{Name: strings.Repeat("ü", 100), PasswordHash: testHash("pw")}); err == nil {
		t.Error("a name whose subject exceeds 255 characters was accepted")
	}
	c := &Client{ClientSpec: ClientSpec{ID: "zoë", AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("s")}
	if err := c.Validate(); err == nil {
		t.Error("a non-ASCII client id (a subject) was accepted")
	}
}

// RevokeUser revokes by the user's subject, not by the name.
func TestRevokeUserUsesTheSubject(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "jürgen", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	tok := txAccessToken(t, e, "j%C3%BCrgen", "read", func(c *tokens.AccessClaims) { c.IssuedAt -= 2 })
	if _, err := e.RevokeUser(ctx, "jürgen"); err != nil {
		t.Fatal(err)
	}
	if verifies(e, tok) {
		t.Error("RevokeUser left the user's token live")
	}
	if _, err := e.RevokeUser(ctx, "nobody"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("RevokeUser(nobody) = %v", err)
	}
}

// Follow-up attack on issue 10: names, subjects and revocation across
// config reloads.

func ccClient(id string) *Client {
	return &Client{ClientSpec: ClientSpec{ID: id, AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("s-" + id)}
}

// A config client may not have a run-time user's name, nor a config
// user a run-time client's id: they would share one sub.
func TestConfigNameClashesWithStoredUserOrClient(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	ctx := context.Background()
	e := newEngine(t, withStore(st), withRevocations(nil))
	if err := e.users.Put(ctx, &User{Name: "gina", PasswordHash: testHash("pw")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddClient(ctx, ccClient("hank")); err != nil {
		t.Fatal(err)
	}
	_, err := startEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) { c.Clients = append(c.Clients, ccClient("gina")) }))
	if err == nil || !strings.Contains(err.Error(), `client "gina"`) || !strings.Contains(err.Error(), "user") {
		t.Errorf("config client gina next to run-time user gina: %v", err)
	}
	_, err = startEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) {
		c.Users = append(c.Users, &User{Name: "hank", PasswordHash: testHash("pw")})
	}))
	if err == nil || !strings.Contains(err.Error(), `user "hank"`) || !strings.Contains(err.Error(), "client") {
		t.Errorf("config user hank next to run-time client hank: %v", err)
	}
	// A config user may not shadow a run-time user of the same name.
	_, err = startEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) {
		c.Users = append(c.Users, &User{Name: "gina", PasswordHash: testHash("pw")})
	}))
	if err == nil || !strings.Contains(err.Error(), `user "gina"`) || !strings.Contains(err.Error(), "run time") {
		t.Errorf("config user gina next to run-time user gina: %v", err)
	}
	// The refused configs changed nothing: the same config starts again.
	newEngine(t, withStore(st), withRevocations(nil))
}

// A client's subject (its id) never goes to a user, and a removed user's
// subject never to a config client.
func TestClientSubjectNeverReassigned(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	ctx := context.Background()
	e := newEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) { c.Clients = append(c.Clients, ccClient("svc-cfg")) }))
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
	e = newEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) {
		c.Users = append(c.Users, &User{Name: "ivy", PasswordHash: testHash("pw")})
	}))
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
	_, err := startEngine(t, withStore(st), withRevocations(nil), withConfig(func(c *Config) { c.Clients = append(c.Clients, ccClient("frank")) }))
	if err == nil || !strings.Contains(err.Error(), `client "frank"`) || !strings.Contains(err.Error(), "never reassigned") {
		t.Errorf("config client frank after user frank: %v", err)
	}
}

// Config users and clients removed from the config lose their tokens at
// the next start, once.
func TestConfigRemovalRevokes(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	ctx := context.Background()
	rev, err := tokens.LoadRevocations(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	withSvc := func(c *Config) { c.Clients = append(c.Clients, ccClient("svc-x")) }
	e := newEngine(t, withStore(st), withRevocations(rev), withConfig(withSvc))
	back := func(c *tokens.AccessClaims) { c.IssuedAt -= 2 }
	bob := txAccessToken(t, e, "bob", "read", back)
	alice := txAccessToken(t, e, "alice", "read", back)
	svc := txAccessToken(t, e, "svc-x", "", func(c *tokens.AccessClaims) { c.IssuedAt -= 2; c.ClientID = "svc-x" })
	if !verifies(e, bob) || !verifies(e, svc) {
		t.Fatal("fresh tokens do not verify")
	}
	// bob and svc-x leave the config.
	e = newEngine(t, withStore(st), withRevocations(rev), withConfig(func(c *Config) { c.Users = testUsers()[:1] }))
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
	e = newEngine(t, withStore(st), withRevocations(rev), withConfig(func(c *Config) { c.Users = testUsers()[:1] }))
	later := txAccessToken(t, e, "svc-x", "", func(c *tokens.AccessClaims) { c.ClientID = "svc-x" })
	e = newEngine(t, withStore(st), withRevocations(rev), withConfig(func(c *Config) { c.Users = testUsers()[:1] }))
	if !verifies(e, later) {
		t.Error("a start revoked a removed client again")
	}
	// bob back in the config keeps his subject; his old token stays revoked.
	e = newEngine(t, withStore(st), withRevocations(rev), withConfig(withSvc))
	if u, _ := e.users.Lookup(ctx, "bob"); u == nil || u.Subject() != "bob" {
		t.Errorf("bob back: %+v", u)
	}
	if verifies(e, bob) {
		t.Error("bob's old token came back")
	}
}

// Subjects asserted with control characters are refused, by a trusted
// issuer and by a SAML identity provider.
func TestExternalSubjectControlCharacters(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withExchange())
	for _, s := range []string{"a\nb", "a\x00b", "a\rb", "a\u0085b", "a\u2028b", "a\u202eb", "a\u200bb", "a\ufeffb", " p1", " "} {
		checkError(t, jbPost(e, "c-tx", txExternal(t, s, nil)), 400, CodeInvalidGrant)
	}
	checkToken(t, jbPost(e, "c-tx", txExternal(t, "a b", nil)))
	se := newEngine(t, ccFixture(), withSAML(nil))
	checkError(t, samlPost(se, "c-saml", samlGood(t, func(a *samltest.Assertion) { a.NameID = "ad\nmin" })), 400, CodeInvalidGrant)
}
