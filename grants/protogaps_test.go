package grants

import (
	"net/http"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// RFC 8707 §2.2: a refresh stays within the resources of the original
// grant: another resource is invalid_target, none is the grant's own
// audience, not every audience of the client.
func TestRefreshKeepsGrantAudience(t *testing.T) {
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

func init() { testSecrets["c-ropc"] = pwSecret }

// A resource the operator no longer allows the client leaves its grants
// too; a grant left with none refreshes no more.
func TestRefreshAudienceFollowsClientConfig(t *testing.T) {
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
