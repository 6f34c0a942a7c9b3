package grants

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// TestRevokeRequestRules covers RFC 7009 §2.1 and §2.2.
func TestRevokeRequestRules(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	at := opClientToken(t, e)
	opRunRules(t, e, e.serveRevoke, RevokePath, []opRule{
		{"no token", "c-basic", url.Values{}, "", 400, CodeInvalidRequest},
		{"no credentials", "", url.Values{"token": {at}}, "", 401, CodeInvalidClient},
		{"wrong secret in Basic", "", url.Values{"token": {at}}, siBasicAuth("c-basic", "nope"), 401, CodeInvalidClient},
		{"unknown client", "", url.Values{"token": {at}}, siBasicAuth("nobody", "x"), 401, CodeInvalidClient},
		{"repeated token", "c-basic", url.Values{"token": {at, at}}, "", 400, CodeInvalidRequest},
		{"garbage", "c-basic", url.Values{"token": {"garbage"}}, "", 200, ""},
		{"unknown hint", "c-basic", url.Values{"token": {"garbage"}, "token_type_hint": {"foo"}}, "", 200, ""},
		{"public client, unknown token", "c-pub", url.Values{"token": {"x"}}, "", 200, ""},
	})
	if !verifies(e, at) {
		t.Fatalf("a refused revocation revoked the token")
	}
}

// TestRevokeAccessToken: the jti is refused at once, and stays refused
// for a new engine on the same store (RFC 7009 §2, §2.2).
func TestRevokeAccessToken(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	at := opClientToken(t, e)
	for _, hint := range []string{"", "refresh_token", "access_token", "foo"} {
		other := opClientToken(t, e)
		if tr := opRevoke(e, "c-basic", "token", other, "token_type_hint", hint); tr.status != http.StatusOK {
			t.Fatalf("hint %q: %d %s", hint, tr.status, tr.raw)
		}
		if verifies(e, other) {
			t.Fatalf("hint %q: revoked token still verifies", hint)
		}
	}
	if !verifies(e, at) {
		t.Fatalf("revoking one token revoked another")
	}
	if tr := opRevoke(e, "c-basic", "token", at); tr.status != http.StatusOK {
		t.Fatalf("%d %s", tr.status, tr.raw)
	}
	if tr := opRevoke(e, "c-basic", "token", at); tr.status != http.StatusOK {
		t.Fatalf("second revocation: %d %s", tr.status, tr.raw)
	}
	rev, err := tokens.LoadRevocations(t.Context(), e.store)
	if err != nil {
		t.Fatal(err)
	}
	if !rev.Revoked(jtiOf(t, at)) {
		t.Fatalf("the revocation was not persisted")
	}
}

// TestRevokeRefreshToken: revoking a refresh token kills its family and
// the family's access tokens, whatever the hint (RFC 7009 §2.2, §2.1, §2.2.1).
func TestRevokeRefreshToken(t *testing.T) {
	t.Parallel()
	for _, hint := range []string{"", "access_token", "refresh_token", "foo"} {
		t.Run("hint="+hint, func(t *testing.T) {
			e := newEngine(t, withResourceServers())
			tr := firstGrant(t, e, "c-web")
			rt, at := tr.str("refresh_token"), tr.str("access_token")
			if got := opRevoke(e, "c-web", "token", rt, "token_type_hint", hint); got.status != http.StatusOK {
				t.Fatalf("%d %s", got.status, got.raw)
			}
			wantErr(t, refresh(e, "c-web", rt), 400, CodeInvalidGrant)
			if verifies(e, at) {
				t.Fatalf("the family's access token still verifies")
			}
			opInactive(t, opIntrospect(e, "c-web", "token", at))
		})
	}
}

// TestRevokeRotatedRefreshToken: a refresh token the grant rotated away
// from still names the grant: revoking it (a client signing out with the
// token it kept) ends the grant and the newer tokens, as presenting it at
// the token endpoint would; another client's stale token is refused.
func TestRevokeRotatedRefreshToken(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	tr := firstGrant(t, e, "c-web")
	old := tr.str("refresh_token")
	next := refresh(e, "c-web", old)
	wantOK(t, next)
	rt, at := next.str("refresh_token"), next.str("access_token")
	// Another client learns nothing (200, as for an unknown token) and
	// revokes nothing.
	if got := opRevoke(e, "c-trusted", "token", old); got.status != http.StatusOK {
		t.Fatalf("another client's stale token: %d %s, want 200", got.status, got.raw)
	}
	if !verifies(e, at) {
		t.Fatal("another client's revocation ended the grant")
	}
	if got := opRevoke(e, "c-web", "token", old); got.status != http.StatusOK {
		t.Fatalf("%d %s", got.status, got.raw)
	}
	if verifies(e, at) {
		t.Fatal("the newer access token still verifies after the rotated refresh token was revoked")
	}
	wantErr(t, refresh(e, "c-web", rt), 400, CodeInvalidGrant)
}

// TestRevokeOtherClientsToken: refused, and the token stays valid (RFC 7009 §2.1).
func TestRevokeOtherClientsToken(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	tr := firstGrant(t, e, "c-web")
	rt, at := tr.str("refresh_token"), tr.str("access_token")
	for _, tok := range []string{rt, at} {
		wantErr(t, opRevoke(e, "c-trusted", "token", tok), 400, CodeUnauthorizedClient)
		wantErr(t, opRevoke(e, "c-pub", "token", tok), 400, CodeUnauthorizedClient)
	}
	if !verifies(e, at) {
		t.Fatalf("access token revoked by another client")
	}
	wantOK(t, refresh(e, "c-web", rt))
}
