package grants

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// firstGrant signs alice in for the client and redeems the code.
func firstGrant(t *testing.T, e *Engine, client string, kv ...string) tokenResult {
	t.Helper()
	b := newBrowser(t, e)
	code, verifier := b.getCode(client, kv...)
	tr := redeem(e, client, code, verifier)
	wantOK(t, tr)
	if tr.str("refresh_token") == "" {
		t.Fatalf("no refresh token")
	}
	return tr
}

// updateGrant rewrites the stored grant of a refresh token.
func updateGrant(t *testing.T, e *Engine, rt string, fn func(f *familyRecord, rec *storage.Record)) {
	t.Helper()
	_, key, _, ok := splitRefreshToken(rt)
	if !ok {
		t.Fatalf("%q is not a refresh token", rt)
	}
	err := e.store.Update(context.Background(), func(tx storage.Tx) error {
		var f familyRecord
		rec, err := getJSON(tx, storage.KindFamilies, key, &f)
		if err != nil {
			return err
		}
		fn(&f, &rec)
		return putJSON(tx, storage.KindFamilies, key, &f, rec.Expires)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// RFC 9700 §4.14.2, OIDC Core §12.2: rotation, and reuse revokes the family.
func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "openid read write", "nonce", "n-1")
	rt1, at1 := g.str("refresh_token"), g.str("access_token")
	_, id1 := verifyIDToken(t, e, g.str("id_token"))

	r2 := refresh(e, "c-web", rt1)
	wantOK(t, r2)
	rt2, at2 := r2.str("refresh_token"), r2.str("access_token")
	if rt2 == "" || rt2 == rt1 {
		t.Fatalf("refresh token not rotated: %q", rt2)
	}
	if r2.str("scope") != "openid read write" {
		t.Fatalf("scope %q", r2.str("scope"))
	}
	_, id2 := verifyIDToken(t, e, r2.str("id_token"))
	for _, k := range []string{"iss", "sub", "aud", "azp", "auth_time"} {
		if id1[k] != id2[k] {
			t.Errorf("refreshed id_token %s = %v, was %v", k, id2[k], id1[k])
		}
	}
	if _, ok := id2["nonce"]; ok {
		t.Errorf("refreshed id_token carries the nonce")
	}
	if num(id2["iat"]) < num(id1["iat"]) {
		t.Errorf("refreshed id_token iat went back")
	}
	if id2["at_hash"] != leftHalfSHA256(at2) {
		t.Errorf("refreshed at_hash wrong")
	}
	if !verifies(e, at1) || !verifies(e, at2) {
		t.Fatalf("live access tokens refused")
	}

	// Reuse of the rotated token.
	wantErr(t, refresh(e, "c-web", rt1), http.StatusBadRequest, CodeInvalidGrant)
	wantErr(t, refresh(e, "c-web", rt2), http.StatusBadRequest, CodeInvalidGrant)
	if verifies(e, at1) || verifies(e, at2) {
		t.Fatalf("access tokens of a revoked family still verify")
	}
	if verifiesAfterRestart(t, e, at1) || verifiesAfterRestart(t, e, at2) {
		t.Fatalf("family revocation not persisted")
	}
	// Families are independent: another grant of the same user still works.
	other := firstGrant(t, e, "c-web", "scope", "read")
	wantOK(t, refresh(e, "c-web", other.str("refresh_token")))
}

// A refresh token is its grant's handle and a secret. The handle is in
// no other token, so a wrong secret with it is a rotated or tampered
// token: reuse, which revokes the grant. A malformed token is merely
// invalid, and the grant's public id (gid) is not its handle.
func TestRefreshHandle(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "read")
	rt := g.str("refresh_token")
	ac, err := e.verifier.Verify(g.str("access_token"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	handle, _, _, _ := splitRefreshToken(rt)
	if ac.Grant == "" || strings.Contains(rt, ac.Grant) {
		t.Fatalf("gid %q is empty or part of the refresh token", ac.Grant)
	}
	for _, bad := range []string{rt[:len(rt)-1], rt + "A", ac.Grant + rt[handleLen:]} {
		wantErr(t, refresh(e, "c-web", bad), http.StatusBadRequest, CodeInvalidGrant)
	}
	r2 := refresh(e, "c-web", rt)
	wantOK(t, r2)
	forged, _ := newRefreshToken(handle)
	wantErr(t, refresh(e, "c-web", forged), http.StatusBadRequest, CodeInvalidGrant)
	wantErr(t, refresh(e, "c-web", r2.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	if verifies(e, r2.str("access_token")) {
		t.Fatalf("access token of a revoked grant verifies")
	}
}

// The file holds no handle: grants are stored under the handle's hash,
// and a spent code names its grant by that key too. With a copy of the
// file alone, no grant can be revoked by presenting its handle.
func TestRefreshHandleNotStored(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	b := newBrowser(t, e)
	code, verifier := b.getCode("c-web")
	g := redeem(e, "c-web", code, verifier)
	wantOK(t, g)
	handle, key, _, _ := splitRefreshToken(g.str("refresh_token"))
	err := e.store.View(context.Background(), func(tx storage.Tx) error {
		for _, kind := range []storage.Kind{storage.KindFamilies, storage.KindCodes} {
			err := tx.ForEach(kind, func(k string, rec storage.Record) error {
				if strings.Contains(k, handle) || strings.Contains(string(rec.Value), handle) {
					t.Errorf("%s %q holds the handle", kind, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		_, err := tx.Get(storage.KindFamilies, key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A rotated or forged secret is reuse before anything else: asking for a
// scope the grant lacks does not turn it into invalid_scope (which would
// tell the sender the grant is alive) or spare the grant.
func TestRefreshReuseBeforeScope(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "read")
	r2 := refresh(e, "c-web", g.str("refresh_token"))
	wantOK(t, r2)
	wantErr(t, refresh(e, "c-web", g.str("refresh_token"), "scope", "admin"), http.StatusBadRequest, CodeInvalidGrant)
	wantErr(t, refresh(e, "c-web", r2.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
}

// A grant stored before grant ids existed is named in its access tokens
// by its storage key; revoking it must revoke that, never "g.".
func TestRevokeLegacyGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	var revoked map[string]int64
	err := e.store.Update(context.Background(), func(tx storage.Tx) error {
		if err := putJSON(tx, storage.KindFamilies, "legacy-family", &familyRecord{ClientID: "c-web", Subject: "alice"}, time.Now().Add(time.Hour)); err != nil {
			return err
		}
		var err error
		revoked, err = e.revokeFamily(tx, "legacy-family")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := revoked[tokens.GrantRevocationKey("legacy-family")]; !ok || len(revoked) != 1 {
		t.Fatalf("revocation entries %v, want %q", revoked, tokens.GrantRevocationKey("legacy-family"))
	}
}

// RFC 6749 §6: narrowing, widening and the family's original scope.
func TestRefreshScope(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "openid read write")

	narrow := refresh(e, "c-web", g.str("refresh_token"), "scope", "read")
	wantOK(t, narrow)
	if narrow.str("scope") != "read" || narrow.str("id_token") != "" {
		t.Fatalf("narrowed: %s", narrow.raw)
	}
	ac, err := e.verifier.Verify(narrow.str("access_token"), time.Now())
	if err != nil || ac.Scope != "read" {
		t.Fatalf("narrowed access token scope: %v %v", ac, err)
	}

	back := refresh(e, "c-web", narrow.str("refresh_token"))
	wantOK(t, back)
	if back.str("scope") != "openid read write" || back.str("id_token") == "" {
		t.Fatalf("refresh without scope after narrowing: %s", back.raw)
	}
	rt := back.str("refresh_token")

	for _, s := range []string{"read admin", "email", "openid read write profile", `read"`, "read  write"} {
		wantErr(t, refresh(e, "c-web", rt, "scope", s), http.StatusBadRequest, CodeInvalidScope)
	}
	// A refused request changes nothing: the token still works.
	again := refresh(e, "c-web", rt, "scope", "write read")
	wantOK(t, again)
	if again.str("scope") != "write read" && again.str("scope") != "read write" {
		t.Fatalf("scope %q", again.str("scope"))
	}
}

// RFC 6749 §6: a refresh token works only for its client.
func TestRefreshOtherClient(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "openid read")
	wantErr(t, refresh(e, "c-trusted", g.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	wantErr(t, refresh(e, "c-pub", g.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)

	p := firstGrant(t, e, "c-pub", "scope", "openid read")
	wantErr(t, refresh(e, "c-web", p.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	// A public client refreshes with its client_id alone (its tokens rotate).
	wantOK(t, refresh(e, "c-pub", p.str("refresh_token")))
}

// RFC 6749 §6, RFC 9700 §4.14.2: rotated tokens, and junk.
func TestRefreshInvalid(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "read")
	for _, rt := range []string{"AAAA", g.str("access_token"), g.str("refresh_token") + "x"} {
		wantErr(t, refresh(e, "c-web", rt), http.StatusBadRequest, CodeInvalidGrant)
	}
	wantErr(t, postToken(e, "c-web", map[string][]string{"grant_type": {"refresh_token"}}), http.StatusBadRequest, CodeInvalidRequest)

	updateGrant(t, e, g.str("refresh_token"), func(_ *familyRecord, rec *storage.Record) {
		rec.Expires = time.Now().Add(-time.Second)
	})
	wantErr(t, refresh(e, "c-web", g.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
}

// RFC 9700 §4.14 with a grace period: a lost response may be retried while its
// successor is unused; never two live tokens of a family.
func TestRefreshGrace(t *testing.T) {
	t.Parallel()
	grace := func(c *Config) { c.RefreshGrace = 30 * time.Second }
	// rotated starts a grant and rotates its first refresh token once.
	rotated := func(t *testing.T) (*Engine, string, tokenResult) {
		t.Helper()
		e := newEngine(t, withConfig(grace))
		rt1 := firstGrant(t, e, "c-web", "scope", "read").str("refresh_token")
		r2 := refresh(e, "c-web", rt1)
		wantOK(t, r2)
		return e, rt1, r2
	}

	// The replaced successor is dead; as it was issued, presenting it
	// later is reuse like any other rotated token's.
	t.Run("successor unused: a new pair, the successor dies", func(t *testing.T) {
		e, rt1, r2 := rotated(t)
		r3 := refresh(e, "c-web", rt1)
		wantOK(t, r3)
		rt3 := r3.str("refresh_token")
		if rt3 == r2.str("refresh_token") || rt3 == rt1 {
			t.Fatalf("grace retry did not mint a new refresh token")
		}
		r4 := refresh(e, "c-web", rt3)
		wantOK(t, r4)
		wantErr(t, refresh(e, "c-web", r2.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
		wantErr(t, refresh(e, "c-web", r4.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	})
	// "Works once more": concurrent or repeated retries of the previous
	// token cannot mint more than one replacement.
	t.Run("the previous token works once", func(t *testing.T) {
		e := newEngine(t, withConfig(grace))
		g := firstGrant(t, e, "c-web", "scope", "read")
		rt1 := g.str("refresh_token")
		wantOK(t, refresh(e, "c-web", rt1))
		r3 := refresh(e, "c-web", rt1)
		wantOK(t, r3)
		wantErr(t, refresh(e, "c-web", rt1), http.StatusBadRequest, CodeInvalidGrant)
		wantErr(t, refresh(e, "c-web", r3.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	})
	// The client that lost the rotation's answer holds only the previous
	// token; revoking with it must end the grant, successor included.
	t.Run("revoking with the previous token in the grace period", func(t *testing.T) {
		e, rt1, r2 := rotated(t)
		if tr := opRevoke(e, "c-web", "token", rt1); tr.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", tr.status, tr.raw)
		}
		wantErr(t, refresh(e, "c-web", rt1), http.StatusBadRequest, CodeInvalidGrant)
		wantErr(t, refresh(e, "c-web", r2.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
		if verifies(e, r2.str("access_token")) {
			t.Fatalf("access token of a revoked grant verifies")
		}
	})
	t.Run("successor used: reuse revokes", func(t *testing.T) {
		e := newEngine(t, withConfig(grace))
		g := firstGrant(t, e, "c-web", "scope", "read")
		rt1 := g.str("refresh_token")
		r2 := refresh(e, "c-web", rt1)
		wantOK(t, r2)
		r3 := refresh(e, "c-web", r2.str("refresh_token"))
		wantOK(t, r3)
		wantErr(t, refresh(e, "c-web", rt1), http.StatusBadRequest, CodeInvalidGrant)
		wantErr(t, refresh(e, "c-web", r3.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
		for _, at := range []string{g.str("access_token"), r2.str("access_token"), r3.str("access_token")} {
			if verifies(e, at) {
				t.Fatalf("access token of a revoked family verifies")
			}
		}
	})
	t.Run("after the grace: reuse revokes", func(t *testing.T) {
		e, rt1, r2 := rotated(t)
		updateGrant(t, e, rt1, func(f *familyRecord, _ *storage.Record) { f.RotatedAt -= 31 })
		wantErr(t, refresh(e, "c-web", rt1), http.StatusBadRequest, CodeInvalidGrant)
		wantErr(t, refresh(e, "c-web", r2.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
		if verifies(e, r2.str("access_token")) {
			t.Fatalf("access token of a revoked family verifies")
		}
	})
	t.Run("no grace: immediate reuse revokes", func(t *testing.T) {
		e := newEngine(t)
		g := firstGrant(t, e, "c-web", "scope", "read")
		r2 := refresh(e, "c-web", g.str("refresh_token"))
		wantOK(t, r2)
		wantErr(t, refresh(e, "c-web", g.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
		wantErr(t, refresh(e, "c-web", r2.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	})
}

// A refused retry inside the grace period must change nothing. BUG:
// refreshToken deletes the unused successor (tx.Delete of r.Next) before it
// checks the requested scope, and the invalid_scope path returns nil, so
// the transaction commits the deletion: the client's real successor is
// gone, and the next retry of the old token (successor not found) revokes
// the whole grant.
func TestRefreshGraceRefusedRetryKeepsSuccessor(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.RefreshGrace = 30 * time.Second }))
	g := firstGrant(t, e, "c-web", "scope", "read")
	rt1 := g.str("refresh_token")
	r2 := refresh(e, "c-web", rt1)
	wantOK(t, r2)
	wantErr(t, refresh(e, "c-web", rt1, "scope", "read write admin"), http.StatusBadRequest, CodeInvalidScope)
	wantOK(t, refresh(e, "c-web", r2.str("refresh_token")))
}

// RFC 9700 §4.14 (a replay race): exactly one of many concurrent refreshes succeeds.
func TestRefreshConcurrent(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	g := firstGrant(t, e, "c-web", "scope", "openid read")
	ok := exactlyOne(t, 50, "refreshes", func() tokenResult { return refresh(e, "c-web", g.str("refresh_token")) })
	// The others were reuses: the family is revoked, the winner included.
	wantErr(t, refresh(e, "c-web", ok.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	if verifies(e, ok.str("access_token")) {
		t.Fatalf("winner's access token survived the reuse")
	}
}

// RFC 9700 §4.14.2: removing a user ends that user's grants. With openid the refresh
// fails (the ID token needs the user); BUG: without openid the engine
// keeps minting access tokens for a user that no longer exists.
func TestRefreshRemovedUser(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true); err != nil {
		t.Fatal(err)
	}
	grant := func(scope string) string {
		b := newBrowser(t, e)
		v, ch := newPKCE()
		code := b.authorize(authzQuery("c-trusted", ch, "scope", scope), "carol", "carol-pw").Query().Get("code")
		tr := redeem(e, "c-trusted", code, v)
		wantOK(t, tr)
		return tr.str("refresh_token")
	}
	withOpenID, withoutOpenID := grant("openid read"), grant("read")
	if _, err := e.users.Remove(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, refresh(e, "c-trusted", withOpenID), http.StatusBadRequest, CodeInvalidGrant)
	wantErr(t, refresh(e, "c-trusted", withoutOpenID), http.StatusBadRequest, CodeInvalidGrant)
}

// A grant without refresh tokens lives as long as its access token still
// verifies (leeway included), so revoking it, by a code replay say,
// reaches that token to its last second.
func TestGrantLifetime(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	noRefresh := &Client{ClientSpec: ClientSpec{ID: "x", GrantTypes: []string{GrantAuthorizationCode}}}
	if got, want := e.grantLifetime(noRefresh), e.accessTokenTTL+e.verifier.Leeway(); got != want || e.verifier.Leeway() == 0 {
		t.Fatalf("grant without refresh lives %v, want %v (leeway %v)", got, want, e.verifier.Leeway())
	}
	withRefresh := &Client{ClientSpec: ClientSpec{ID: "y", GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}}}
	if got := e.grantLifetime(withRefresh); got != e.refreshTokenTTL {
		t.Fatalf("grant with refresh lives %v, want %v", got, e.refreshTokenTTL)
	}
}

// RFC 8707 §2.2: a refresh stays within the resources of the original
// grant: another resource is invalid_target, none is the grant's own
// audience, not every audience of the client.
func TestRefreshKeepsGrantAudience(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withROPC(), withTwoAPIs())
	g := firstGrant(t, e, "c-web", "scope", "read", "resource", "https://app.test")
	if aud := audOf(t, e, g.str("access_token")); len(aud) != 1 || aud[0] != "https://app.test" {
		t.Fatalf("first aud = %v", aud)
	}
	rt := g.str("refresh_token")
	wantErr(t, refresh(e, "c-web", rt, "resource", "https://billing.test/api"), http.StatusBadRequest, CodeInvalidTarget)
	// The refused request changed nothing; without resource the grant's
	// own audience comes back.
	r := refresh(e, "c-web", rt)
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 1 || aud[0] != "https://app.test" {
		t.Fatalf("refresh without resource: aud = %v, want the grant's [https://app.test]", aud)
	}
	r = refresh(e, "c-web", r.str("refresh_token"), "resource", "https://app.test")
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 1 || aud[0] != "https://app.test" {
		t.Fatalf("refresh with the grant's resource: aud = %v", aud)
	}

	// A grant made without resource holds the client's audience, and may
	// be narrowed to one of it.
	g = firstGrant(t, e, "c-web", "scope", "read")
	r = refresh(e, "c-web", g.str("refresh_token"), "resource", "https://billing.test/api")
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 1 || aud[0] != "https://billing.test/api" {
		t.Fatalf("narrowed aud = %v", aud)
	}
	// Narrowing one access token does not narrow the grant.
	r = refresh(e, "c-web", r.str("refresh_token"))
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 2 {
		t.Fatalf("aud after a narrowed refresh = %v, want the grant's two", aud)
	}
}

// The password grant stores its audience on the grant as well.
func TestRefreshKeepsPasswordGrantAudience(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withROPC(), withTwoAPIs())
	m := checkToken(t, pwRequest(e, loopbackAddr, "username", "alice", "password", "alice-pw", "scope", "read",
		"resource", "https://billing.test/api"))
	rt := m["refresh_token"].(string)
	wantErr(t, refresh(e, "c-ropc", rt, "resource", "https://app.test"), http.StatusBadRequest, CodeInvalidTarget)
	r := refresh(e, "c-ropc", rt)
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 1 || aud[0] != "https://billing.test/api" {
		t.Fatalf("aud = %v", aud)
	}
}

// A grant stored by a build without granted resources still refreshes,
// with the client's registered audience (what that build granted).
func TestRefreshLegacyGrantAudience(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withROPC(), withTwoAPIs())
	g := firstGrant(t, e, "c-web", "scope", "read", "resource", "https://app.test")
	updateGrant(t, e, g.str("refresh_token"), func(f *familyRecord, _ *storage.Record) { f.Resources = nil })
	r := refresh(e, "c-web", g.str("refresh_token"))
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 2 {
		t.Fatalf("legacy grant aud = %v, want the client's audience", aud)
	}
	wantOK(t, refresh(e, "c-web", r.str("refresh_token"), "resource", "https://billing.test/api"))
}

// A resource the operator no longer allows the client leaves its grants
// too; a grant left with none refreshes no more.
func TestRefreshAudienceFollowsClientConfig(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withROPC(), withTwoAPIs())
	g := firstGrant(t, e, "c-web", "scope", "read")
	e.clients["c-web"].Audience = []string{"https://app.test"}
	r := refresh(e, "c-web", g.str("refresh_token"))
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 1 || aud[0] != "https://app.test" {
		t.Fatalf("aud = %v", aud)
	}
	wantErr(t, refresh(e, "c-web", r.str("refresh_token"), "resource", "https://billing.test/api"), http.StatusBadRequest, CodeInvalidTarget)
	e.clients["c-web"].Audience = []string{"https://elsewhere.test"}
	wantErr(t, refresh(e, "c-web", r.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
}

// RFC 9700 §4.14.2: with refresh_token_idle_ttl a refresh token unused
// for that long is refused with invalid_grant, on both rotation paths, and
// introspection no longer calls it active; using it in time restarts the
// clock; refresh_token_ttl still applies.
func TestRefreshIdleTTL(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.RefreshTokenIdleTTL, c.RefreshTokenTTL = time.Hour, 24*time.Hour }))
	g := firstGrant(t, e, "c-web", "scope", "read")
	rt := g.str("refresh_token")

	// Used 50 minutes after issue: fine, and the clock restarts.
	updateGrant(t, e, rt, func(f *familyRecord, _ *storage.Record) { f.Issued = time.Now().Add(-50 * time.Minute).Unix() })
	r := refresh(e, "c-web", rt)
	wantOK(t, r)
	rt = r.str("refresh_token")
	if got := opIntrospect(e, "c-web", "token", rt); got.body["active"] != true {
		t.Fatalf("fresh refresh token inactive: %s", got.raw)
	}

	// Idle for more than an hour: refused, and inactive at introspection.
	updateGrant(t, e, rt, func(f *familyRecord, _ *storage.Record) { f.Issued = time.Now().Add(-61 * time.Minute).Unix() })
	if got := opIntrospect(e, "c-web", "token", rt); got.body["active"] != false {
		t.Fatalf("idle refresh token active at introspection: %s", got.raw)
	}
	wantErr(t, refresh(e, "c-web", rt), http.StatusBadRequest, CodeInvalidGrant)
	// Refused, not rotated: it stays refused.
	wantErr(t, refresh(e, "c-web", rt), http.StatusBadRequest, CodeInvalidGrant)

	// Opaque-token clients take the one-transaction path: same rule.
	e.clients["c-web"].AccessTokenFormat = FormatOpaque
	g = firstGrant(t, e, "c-web", "scope", "read")
	updateGrant(t, e, g.str("refresh_token"), func(f *familyRecord, _ *storage.Record) { f.Issued = time.Now().Add(-2 * time.Hour).Unix() })
	wantErr(t, refresh(e, "c-web", g.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
	e.clients["c-web"].AccessTokenFormat = ""

	// The absolute lifetime still applies to a token in constant use.
	g = firstGrant(t, e, "c-web", "scope", "read")
	updateGrant(t, e, g.str("refresh_token"), func(_ *familyRecord, rec *storage.Record) { rec.Expires = time.Now().Add(-time.Second) })
	wantErr(t, refresh(e, "c-web", g.str("refresh_token")), http.StatusBadRequest, CodeInvalidGrant)
}

// A grant stored before rt_iat existed counts as issued at its last
// rotation, or at its creation (record expiry less refresh_token_ttl).
func TestRefreshIdleTTLLegacyGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) { c.RefreshTokenIdleTTL = 10 * time.Minute }))
	old := firstGrant(t, e, "c-web", "scope", "read").str("refresh_token")
	updateGrant(t, e, old, func(f *familyRecord, rec *storage.Record) {
		f.Issued, f.RotatedAt, f.AuthTime = 0, 0, time.Now().Add(-time.Hour).Unix()
		rec.Expires = time.Now().Add(e.refreshTokenTTL - 11*time.Minute) // made 11 minutes ago
	})
	wantErr(t, refresh(e, "c-web", old), http.StatusBadRequest, CodeInvalidGrant)

	recent := firstGrant(t, e, "c-web", "scope", "read").str("refresh_token")
	updateGrant(t, e, recent, func(f *familyRecord, rec *storage.Record) {
		f.Issued, f.RotatedAt = 0, time.Now().Add(-time.Minute).Unix()
		rec.Expires = time.Now().Add(time.Minute) // made long ago, rotated a minute ago
	})
	wantOK(t, refresh(e, "c-web", recent))
}

func TestRefreshIdleTTLConfig(t *testing.T) {
	t.Parallel()
	for _, idle := range []time.Duration{-time.Second, time.Hour, 2 * time.Hour} {
		cfg := testConfig()
		cfg.RefreshTokenIdleTTL = idle
		if _, err := NewEngine(cfg); err == nil {
			t.Errorf("refresh_token_idle_ttl %v with refresh_token_ttl %v accepted", idle, cfg.RefreshTokenTTL)
		}
	}
}
