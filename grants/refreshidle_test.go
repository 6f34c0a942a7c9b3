package grants

import (
	"net/http"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// RFC 9700 §4.14.2: with refresh_token_idle_ttl a refresh token unused
// for that long is refused with invalid_grant, on both rotation paths, and
// introspection no longer calls it active; using it in time restarts the
// clock; refresh_token_ttl still applies.
func TestRefreshIdleTTL(t *testing.T) {
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
	for _, idle := range []time.Duration{-time.Second, time.Hour, 2 * time.Hour} {
		cfg := testConfig()
		cfg.RefreshTokenIdleTTL = idle
		if _, err := NewEngine(cfg); err == nil {
			t.Errorf("refresh_token_idle_ttl %v with refresh_token_ttl %v accepted", idle, cfg.RefreshTokenTTL)
		}
	}
}
