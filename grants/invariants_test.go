package grants

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/internal/samltest"
	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// The invariants of docs/security.md, checked for every way of obtaining an
// access token. invWays must cover every grant type the engine
// implements (SupportedGrantTypes), so a grant added later fails here
// until it has a way of its own that keeps the rules:
//   - revoking its grant, its user (subject) or its client kills it, at
//     the verifier the gate uses and at introspection;
//   - it never outlives the token or assertion it was derived from;
//   - its sub is a local user or client only where that is what it is,
//     never what an outside party asserted.

const (
	invAud    = "https://app.test"
	invSecret = "inv-secret-0123456789"
	// invRS introspects: a resource server for invAud.
	invRS = "inv-rs"
)

// invClients are registered for every grant; "-o" clients get opaque
// access tokens.
func invClients() []*Client {
	cl := func(id string, grants ...string) *Client {
		return &Client{
			ClientSpec: ClientSpec{
				ID:         id,
				AuthMethod: AuthSecretBasic,
				GrantTypes: grants,
				Scopes:     []string{"openid", "read"},
				Audience:   []string{invAud},
			},
			SecretHash: HashSecret(invSecret),
		}
	}
	out := []*Client{
		cl("inv-cc", GrantClientCredentials),
		cl("inv-pw", GrantPassword, GrantRefreshToken),
		cl("inv-jb", GrantJWTBearer),
		cl("inv-saml", GrantSAML2Bearer),
		cl("inv-tx", GrantTokenExchange, GrantJWTBearer, GrantPassword, GrantRefreshToken),
		cl("inv-dev", GrantDeviceCode, GrantRefreshToken),
		{
			ClientSpec: ClientSpec{
				ID:             invRS,
				AuthMethod:     AuthSecretBasic,
				GrantTypes:     []string{GrantClientCredentials},
				Audience:       []string{invAud},
				ResourceServer: true,
			},
			SecretHash: HashSecret(invSecret),
		},
	}
	for _, c := range out[:6] {
		o := *c
		o.ID += "-o"
		o.AccessTokenFormat = FormatOpaque
		out = append(out, &o)
	}
	for _, c := range out {
		if c.Allows(GrantTokenExchange) {
			c.Exchange = ExchangePolicy{Audiences: []string{invAud}}
		}
	}
	return out
}

// invToken is what one way obtained.
type invToken struct {
	access  string
	refresh string // the grant's refresh token, when there is one
	client  string // the client the token was issued to
	// user is the local user the token acts for; "" for a client acting
	// for itself or an external subject.
	user string
	// external marks a subject asserted by an outside party.
	external bool
	// parentExp is the expiry of what the token was derived from (0:
	// nothing); parentClients are the clients whose revocation must kill
	// it besides its own; parentGrant is a refresh token whose revocation
	// must kill it.
	parentExp     int64
	parentClients []string
	parentGrant   string
	// parentTokens are access tokens it was derived from, by the client
	// that holds each: revoking one (RFC 7009) must kill it.
	parentTokens map[string]string
}

// invWay obtains a token one way, as the named client variant.
type invWay struct {
	name  string
	grant string
	get   func(t *testing.T, e *Engine, suffix string) invToken
}

func invPost(t *testing.T, e *Engine, client string, kv ...string) tokenResult {
	t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	tr := postTokenRaw(e, v, siBasicAuth(client, invSecret))
	wantOK(t, tr)
	return tr
}

// invPostDPoP is invPost with a fresh DPoP proof; the answer must be a
// DPoP-bound token.
func invPostDPoP(t *testing.T, e *Engine, client string, kv ...string) tokenResult {
	t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", siBasicAuth(client, invSecret))
	r.Header.Set("DPoP", newProofKey(t).proof(t, nil))
	r.RemoteAddr = loopbackAddr
	rec := httptest.NewRecorder()
	e.serveToken(rec, r)
	tr := tokenResult{status: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &tr.body)
	wantOK(t, tr)
	if tr.str("token_type") != "DPoP" {
		t.Fatalf("token_type %q, want DPoP", tr.str("token_type"))
	}
	return tr
}

// invDevice runs the device grant as client: alice approves in a
// browser, and post polls.
func invDevice(t *testing.T, e *Engine, client string, post func(*testing.T, *Engine, string, ...string) tokenResult) invToken {
	tr := devRequest(e, url.Values{"scope": {"openid read"}}, siBasicAuth(client, invSecret))
	newBrowser(t, e).deviceDecide(tr.str("user_code"), "allow")
	tr = post(t, e, client, "grant_type", GrantDeviceCode, "device_code", tr.str("device_code"))
	return invToken{access: tr.str("access_token"), refresh: tr.str("refresh_token"), client: client, user: "alice"}
}

func invExp(t *testing.T, tok string) int64 {
	t.Helper()
	if strings.HasPrefix(tok, tokens.OpaquePrefix) {
		t.Fatalf("invExp on an opaque token")
	}
	_, c := segments(t, tok)
	n, _ := c["exp"].(json.Number).Int64()
	return n
}

// invPassword is a password grant for bob as inv-pw (or inv-tx).
func invPassword(t *testing.T, e *Engine, client string) invToken {
	tr := invPost(t, e, client, "grant_type", GrantPassword, "username", "bob", "password", "bob-pw", "scope", "openid read")
	return invToken{access: tr.str("access_token"), refresh: tr.str("refresh_token"), client: client, user: "bob"}
}

// invExchange exchanges subject (of type typ) at inv-tx.
func invExchange(t *testing.T, e *Engine, suffix, subject, typ string) tokenResult {
	return invPost(t, e, "inv-tx"+suffix, "grant_type", GrantTokenExchange, "subject_token", subject, "subject_token_type", typ,
		"audience", invAud)
}

var invWays = []invWay{
	{"client_credentials", GrantClientCredentials, func(t *testing.T, e *Engine, s string) invToken {
		tr := invPost(t, e, "inv-cc"+s, "grant_type", GrantClientCredentials)
		return invToken{access: tr.str("access_token"), client: "inv-cc" + s}
	}},
	{"password", GrantPassword, func(t *testing.T, e *Engine, s string) invToken {
		return invPassword(t, e, "inv-pw"+s)
	}},
	{"authorization_code", GrantAuthorizationCode, func(t *testing.T, e *Engine, s string) invToken {
		b := newBrowser(t, e)
		code, verifier := b.getCode("c-web", "scope", "openid read")
		tr := redeem(e, "c-web", code, verifier)
		wantOK(t, tr)
		return invToken{access: tr.str("access_token"), refresh: tr.str("refresh_token"), client: "c-web", user: "alice"}
	}},
	// A pushed authorization request (RFC 9126) with a DPoP proof ends in
	// the same code, bound to the proof's key.
	{"authorization_code via PAR with DPoP", GrantAuthorizationCode, func(t *testing.T, e *Engine, s string) invToken {
		verifier, ch := newPKCE()
		k := newProofKey(t)
		push := parPost(e, "c-web", parForm("c-web", ch, "scope", "openid read"), "",
			k.proof(t, func(c map[string]any) { c["htu"] = testIssuer + PARPath }))
		uri := wantPushed(t, push, int(DefaultPushedRequestTTL/time.Second))
		loc := newBrowser(t, e).authorize(url.Values{"client_id": {"c-web"}, "request_uri": {uri}}, "alice", "alice-pw")
		tr := postTokenDPoP(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {loc.Query().Get("code")},
			"redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, k.proof(t, nil))
		wantDPoP(t, e, tr, k, "")
		return invToken{access: tr.str("access_token"), refresh: tr.str("refresh_token"), client: "c-web", user: "alice"}
	}},
	{"device_code", GrantDeviceCode, func(t *testing.T, e *Engine, s string) invToken {
		return invDevice(t, e, "inv-dev"+s, invPost)
	}},
	{"device_code with DPoP", GrantDeviceCode, func(t *testing.T, e *Engine, s string) invToken {
		return invDevice(t, e, "inv-dev"+s, invPostDPoP)
	}},
	{"refresh_token", GrantRefreshToken, func(t *testing.T, e *Engine, s string) invToken {
		first := invPassword(t, e, "inv-pw"+s)
		tr := invPost(t, e, first.client, "grant_type", GrantRefreshToken, "refresh_token", first.refresh)
		var famExp int64
		updateGrant(t, e, tr.str("refresh_token"), func(f *familyRecord, rec *storage.Record) { famExp = rec.Expires.Unix() })
		return invToken{access: tr.str("access_token"), refresh: tr.str("refresh_token"), client: first.client, user: "bob",
			parentExp: famExp}
	}},
	// DPoP-bound tokens (RFC 9449) are held to the same rules: a proof
	// changes how a token is used, not how it is revoked.
	{"client_credentials with DPoP", GrantClientCredentials, func(t *testing.T, e *Engine, s string) invToken {
		tr := invPostDPoP(t, e, "inv-cc"+s, "grant_type", GrantClientCredentials)
		return invToken{access: tr.str("access_token"), client: "inv-cc" + s}
	}},
	{"password and refresh with DPoP", GrantRefreshToken, func(t *testing.T, e *Engine, s string) invToken {
		first := invPostDPoP(t, e, "inv-pw"+s, "grant_type", GrantPassword, "username", "bob", "password", "bob-pw", "scope", "openid read")
		tr := invPostDPoP(t, e, "inv-pw"+s, "grant_type", GrantRefreshToken, "refresh_token", first.str("refresh_token"))
		var famExp int64
		updateGrant(t, e, tr.str("refresh_token"), func(f *familyRecord, rec *storage.Record) { famExp = rec.Expires.Unix() })
		return invToken{access: tr.str("access_token"), refresh: tr.str("refresh_token"), client: "inv-pw" + s, user: "bob",
			parentExp: famExp}
	}},
	{"jwt-bearer", GrantJWTBearer, func(t *testing.T, e *Engine, s string) invToken {
		a := jbAssertion(t, func(m map[string]any) { m["sub"] = "bob" })
		tr := invPost(t, e, "inv-jb"+s, "grant_type", GrantJWTBearer, "assertion", a)
		return invToken{access: tr.str("access_token"), client: "inv-jb" + s, external: true, parentExp: invExp(t, a)}
	}},
	{"saml2-bearer", GrantSAML2Bearer, func(t *testing.T, e *Engine, s string) invToken {
		var until time.Time
		a := samlGood(t, func(a *samltest.Assertion) { a.NameID, until = "alice", a.NotOnOrAfter })
		tr := invPost(t, e, "inv-saml"+s, "grant_type", GrantSAML2Bearer, "assertion", a)
		return invToken{access: tr.str("access_token"), client: "inv-saml" + s, external: true, parentExp: until.Unix()}
	}},
	{"token-exchange of a user's access token", GrantTokenExchange, func(t *testing.T, e *Engine, s string) invToken {
		parent := invPassword(t, e, "inv-pw")
		tr := invExchange(t, e, s, parent.access, TokenTypeAccessToken)
		return invToken{access: tr.str("access_token"), client: "inv-tx" + s, user: "bob",
			parentExp: invExp(t, parent.access), parentClients: []string{"inv-pw"}, parentGrant: parent.refresh,
			parentTokens: map[string]string{parent.access: "inv-pw"}}
	}},
	{"token-exchange of a client's access token", GrantTokenExchange, func(t *testing.T, e *Engine, s string) invToken {
		parent := invPost(t, e, "inv-cc", "grant_type", GrantClientCredentials).str("access_token")
		tr := invExchange(t, e, s, parent, TokenTypeAccessToken)
		return invToken{access: tr.str("access_token"), client: "inv-tx" + s, parentExp: invExp(t, parent),
			parentClients: []string{"inv-cc"}, parentTokens: map[string]string{parent: "inv-cc"}}
	}},
	{"token-exchange of an ID token", GrantTokenExchange, func(t *testing.T, e *Engine, s string) invToken {
		parent := invPost(t, e, "inv-tx"+s, "grant_type", GrantPassword, "username", "bob", "password", "bob-pw", "scope", "openid read")
		idt := parent.str("id_token")
		tr := invExchange(t, e, s, idt, TokenTypeIDToken)
		return invToken{access: tr.str("access_token"), client: "inv-tx" + s, user: "bob", parentExp: invExp(t, idt),
			parentGrant: parent.str("refresh_token")}
	}},
	{"token-exchange of a trusted issuer's JWT", GrantTokenExchange, func(t *testing.T, e *Engine, s string) invToken {
		a := jbAssertion(t, func(m map[string]any) { m["sub"] = "bob" })
		tr := invExchange(t, e, s, a, TokenTypeJWT)
		return invToken{access: tr.str("access_token"), client: "inv-tx" + s, external: true, parentExp: invExp(t, a)}
	}},
	{"token-exchange of an exchanged token", GrantTokenExchange, func(t *testing.T, e *Engine, s string) invToken {
		parent := invPassword(t, e, "inv-pw")
		mid := invExchange(t, e, "", parent.access, TokenTypeAccessToken).str("access_token")
		tr := invExchange(t, e, s, mid, TokenTypeAccessToken)
		return invToken{access: tr.str("access_token"), client: "inv-tx" + s, user: "bob",
			parentExp: invExp(t, parent.access), parentClients: []string{"inv-pw", "inv-tx"}, parentGrant: parent.refresh,
			parentTokens: map[string]string{parent.access: "inv-pw", mid: "inv-tx"}}
	}},
}

// TestInvariantsCoverEveryGrant: every grant type the engine implements
// is enabled in the fixture and has at least one way above.
func TestInvariantsCoverEveryGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withEveryGrant())
	for _, g := range SupportedGrantTypes {
		if _, ok := e.grants[g]; !ok {
			t.Errorf("grant %s is not enabled in the invariants fixture: register a client for it in invClients", g)
		}
		if !slices.ContainsFunc(invWays, func(w invWay) bool { return w.grant == g }) {
			t.Errorf("grant %s has no way in invWays: add one, so that it is held to the invariants of docs/security.md", g)
		}
	}
	for g := range e.grants {
		if !slices.Contains(SupportedGrantTypes, g) {
			t.Errorf("the engine serves grant %s, which SupportedGrantTypes does not list", g)
		}
	}
}

// invLive asserts the token verifies at the gate's verifier (which also
// fills its cache, so that a revocation must get past the cache) and is
// active at introspection.
func invLive(t *testing.T, e *Engine, tok string) *tokens.AccessClaims {
	t.Helper()
	c, err := e.verifier.Verify(tok, time.Now())
	if err != nil {
		t.Fatalf("fresh token refused by the verifier: %v", err)
	}
	if tr := opPost(e, e.serveIntrospect, IntrospectPath, "", opForm("token", tok), siBasicAuth(invRS, invSecret)); tr.body["active"] != true {
		t.Fatalf("fresh token inactive at introspection: %s", tr.raw)
	}
	return c
}

// invDead asserts the token is refused at the verifier and inactive at
// introspection.
func invDead(t *testing.T, e *Engine, tok, after string) {
	t.Helper()
	if _, err := e.verifier.Verify(tok, time.Now()); err == nil {
		t.Errorf("after %s, the gate's verifier still accepts the token", after)
	}
	if tr := opPost(e, e.serveIntrospect, IntrospectPath, "", opForm("token", tok), siBasicAuth(invRS, invSecret)); tr.body["active"] != false {
		t.Errorf("after %s, introspection says %s", after, tr.raw)
	}
}

// invRevokeToken revokes a token (RFC 7009) as the client it was issued to.
func invRevokeToken(t *testing.T, e *Engine, client, tok string) {
	t.Helper()
	secret := invSecret
	if client == "c-web" {
		secret = webSecret
	}
	if tr := opPost(e, e.serveRevoke, RevokePath, "", opForm("token", tok), siBasicAuth(client, secret)); tr.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", tr.status, tr.raw)
	}
}

func TestInvariantsEveryWay(t *testing.T) {
	t.Parallel()
	for _, w := range invWays {
		for _, suffix := range []string{"", "-o"} {
			if w.grant == GrantAuthorizationCode && suffix != "" {
				continue // c-web's format; opaque is covered by the other ways
			}
			t.Run(w.name+suffix, func(t *testing.T) {
				t.Run("subject and lifetime", func(t *testing.T) {
					e := newEngine(t, withEveryGrant())
					tok := w.get(t, e, suffix)
					c := invLive(t, e, tok.access)
					users, _ := e.users.List(t.Context())
					local := slices.ContainsFunc(users, func(u User) bool { return u.Name == c.Subject || u.Sub == c.Subject })
					_, isClient := e.clients[c.Subject]
					switch {
					case tok.external:
						if local || isClient || !IsExternalSubject(c.Subject) || c.ExtIss == "" || c.ExtSub == "" {
							t.Errorf("an external subject became %q (ext_iss %q, ext_sub %q)", c.Subject, c.ExtIss, c.ExtSub)
						}
					case tok.user != "":
						u, err := e.users.Lookup(t.Context(), tok.user)
						if err != nil || c.Subject != u.Subject() {
							t.Errorf("sub %q, want %s's subject", c.Subject, tok.user)
						}
					default:
						if !isClient {
							t.Errorf("sub %q of a client's own token is not a client id", c.Subject)
						}
					}
					if tok.parentExp != 0 && c.ExpiresAt > tok.parentExp {
						t.Errorf("the token expires at %d, after what it was derived from (%d)", c.ExpiresAt, tok.parentExp)
					}
				})
				t.Run("revoking the token", func(t *testing.T) {
					e := newEngine(t, withEveryGrant())
					tok := w.get(t, e, suffix)
					invLive(t, e, tok.access)
					invRevokeToken(t, e, tok.client, tok.access)
					invDead(t, e, tok.access, "revoking it")
				})
				t.Run("revoking its grant", func(t *testing.T) {
					e := newEngine(t, withEveryGrant())
					tok := w.get(t, e, suffix)
					invLive(t, e, tok.access)
					switch {
					case tok.refresh != "":
						invRevokeToken(t, e, tok.client, tok.refresh)
					case tok.parentGrant != "":
						// The grant of the token it was exchanged from,
						// revoked by the client that holds it.
						holder := "inv-pw"
						if strings.Contains(w.name, "ID token") {
							holder = "inv-tx" + suffix
						}
						invRevokeToken(t, e, holder, tok.parentGrant)
					default:
						return // no grant: revoking the token, its subject and its client cover it
					}
					invDead(t, e, tok.access, "revoking its grant")
				})
				t.Run("revoking its subject", func(t *testing.T) {
					e := newEngine(t, withEveryGrant())
					tok := w.get(t, e, suffix)
					c := invLive(t, e, tok.access)
					var err error
					if tok.user != "" {
						_, err = e.RevokeUser(t.Context(), tok.user)
					} else {
						_, err = e.RevokeSubject(t.Context(), c.Subject)
					}
					if err != nil {
						t.Fatal(err)
					}
					invDead(t, e, tok.access, "revoking its subject")
				})
				t.Run("revoking its client", func(t *testing.T) {
					e := newEngine(t, withEveryGrant())
					tok := w.get(t, e, suffix)
					invLive(t, e, tok.access)
					if _, err := e.RevokeClient(t.Context(), tok.client); err != nil {
						t.Fatal(err)
					}
					invDead(t, e, tok.access, "revoking its client "+tok.client)
				})
				t.Run("revoking a token it was derived from", func(t *testing.T) {
					for _, holder := range w.get(t, newEngine(t, withEveryGrant()), suffix).parentTokens {
						e := newEngine(t, withEveryGrant())
						tok := w.get(t, e, suffix)
						invLive(t, e, tok.access)
						for p, h := range tok.parentTokens {
							if h == holder {
								invRevokeToken(t, e, h, p)
							}
						}
						invDead(t, e, tok.access, "revoking the access token of "+holder+" it was derived from")
					}
				})
				t.Run("revoking a client it was derived from", func(t *testing.T) {
					for _, pc := range w.get(t, newEngine(t, withEveryGrant()), suffix).parentClients {
						e := newEngine(t, withEveryGrant())
						tok := w.get(t, e, suffix)
						invLive(t, e, tok.access)
						if _, err := e.RevokeClient(t.Context(), pc); err != nil {
							t.Fatal(err)
						}
						invDead(t, e, tok.access, "revoking "+pc+", a client it was derived from")
					}
				})
			})
		}
	}
}

// TestInvariantsRemovedUser: removing a run-time user ends what the user
// had, like revoking it: access tokens at the gate and at introspection,
// refresh tokens, and tokens exchanged from them.
func TestInvariantsRemovedUser(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withEveryGrant())
	if err := e.users.Put(t.Context(), &User{Name: "ivy", PasswordHash: testHash("ivy-pw")}, true); err != nil {
		t.Fatal(err)
	}
	tr := invPost(t, e, "inv-pw", "grant_type", GrantPassword, "username", "ivy", "password", "ivy-pw", "scope", "read")
	at, rt := tr.str("access_token"), tr.str("refresh_token")
	xt := invExchange(t, e, "", at, TokenTypeAccessToken).str("access_token")
	invLive(t, e, at)
	invLive(t, e, xt)
	if err := e.RemoveUser(t.Context(), "ivy"); err != nil {
		t.Fatal(err)
	}
	invDead(t, e, at, "removing the user")
	invDead(t, e, xt, "removing the user (exchanged token)")
	wantErr(t, postTokenRaw(e, url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {rt}}, siBasicAuth("inv-pw", invSecret)),
		http.StatusBadRequest, CodeInvalidGrant)
}
