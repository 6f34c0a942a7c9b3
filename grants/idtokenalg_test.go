package grants

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// OIDC Discovery §3 / Core §15.1: ID tokens are RS256 by default even
// though access tokens stay ES256; a client may register the signing_alg
// instead; discovery lists both; the JWKS publishes both keys.
func TestIDTokenRS256(t *testing.T) {
	e := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-trusted" {
				cl.IDTokenSignedResponseAlg = "ES256"
			}
		}
	}))
	tr := firstGrant(t, e, "c-web", "scope", "openid read")
	if h, _ := segments(t, tr.str("access_token")); h["alg"] != "ES256" {
		t.Fatalf("access token alg = %v, want ES256", h["alg"])
	}
	hdr, claims := verifyIDToken(t, e, tr.str("id_token"))
	if hdr["alg"] != "RS256" {
		t.Fatalf("default ID token alg = %v, want RS256", hdr["alg"])
	}
	if claims["at_hash"] != leftHalfSHA256(tr.str("access_token")) {
		t.Fatalf("RS256 at_hash = %v", claims["at_hash"])
	}
	// Refreshed ID tokens too.
	r := refresh(e, "c-web", tr.str("refresh_token"))
	wantOK(t, r)
	if hdr, _ := verifyIDToken(t, e, r.str("id_token")); hdr["alg"] != "RS256" {
		t.Fatalf("refreshed ID token alg = %v", hdr["alg"])
	}
	es := firstGrant(t, e, "c-trusted", "scope", "openid read")
	if hdr, _ := verifyIDToken(t, e, es.str("id_token")); hdr["alg"] != "ES256" {
		t.Fatalf("ID token of a client registered for ES256: alg = %v", hdr["alg"])
	}

	m := testMetadata(t, e)
	if !slices.Equal(m.IDTokenSigningAlgValuesSupported, []string{"RS256", "ES256"}) {
		t.Fatalf("id_token_signing_alg_values_supported = %v", m.IDTokenSigningAlgValuesSupported)
	}
	algs := map[string]bool{}
	for _, k := range e.keyRing().All() {
		algs[k.Alg.String()] = true
	}
	if !algs["RS256"] || !algs["ES256"] {
		t.Fatalf("key ring algorithms %v", algs)
	}

	// Both kinds verify where the server reads its own ID tokens:
	// logout's id_token_hint and token exchange's subject_token.
	for _, idt := range []string{tr.str("id_token"), es.str("id_token")} {
		if sub, aud := e.idTokenHint(idt); sub != "alice" || aud == "" {
			t.Errorf("id_token_hint %s… not recognised: %q %q", idt[:20], sub, aud)
		}
		if _, idc, err := e.verifyOurIDToken(idt, time.Now()); err != nil || idc.Subject != "alice" {
			t.Errorf("verifyOurIDToken: %+v %v", idc, err)
		}
	}
}

// Token exchange accepts our ID tokens signed with either key.
func TestTokenExchangeIDTokenBothAlgs(t *testing.T) {
	e := newEngine(t, withExchange())
	u, _ := e.users.Lookup(t.Context(), "alice")
	for _, alg := range []string{"RS256", "ES256"} {
		k, ok := e.keyRing().Signer(alg)
		if !ok {
			t.Fatalf("no %s key", alg)
		}
		idt, err := k.MintIDToken(newIDClaims(testIssuer, u, "c-tx", "", []string{"openid"}, time.Now(), time.Now(), time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		tr := txPost(e, "subject_token", idt, "subject_token_type", TokenTypeIDToken)
		if tr.status != http.StatusOK {
			t.Fatalf("%s ID token as subject_token: %d %s", alg, tr.status, tr.raw)
		}
	}
}

// The key ring always holds RS256, persisted and rotated with the rest,
// and an engine with signing_alg RS256 holds one key for both.
func TestIDTokenKeyLifecycle(t *testing.T) {
	st := openStore(t)
	e := newEngine(t, withStore(st))
	rk, _ := e.keyRing().Signer("RS256")
	again := newEngine(t, withStore(st))
	if k, _ := again.keyRing().Signer("RS256"); k == nil || k.ID != rk.ID {
		t.Fatalf("RS256 key not persisted: %v vs %s", k, rk.ID)
	}
	if _, err := e.RotateKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	nk, _ := e.keyRing().Signer("RS256")
	if nk.ID == rk.ID {
		t.Fatal("RS256 key not rotated")
	}
	if _, ok := e.keyRing().Lookup(rk.ID); !ok {
		t.Fatal("rotated-out RS256 key no longer verifies")
	}

	e2 := newEngine(t, withRevocations(nil), withConfig(func(c *Config) { c.SigningAlg = "RS256" }))
	if n := len(e2.keyRing().All()); n != 1 {
		t.Fatalf("signing_alg RS256: %d keys, want one for both", n)
	}
	if m := testMetadata(t, e2); !slices.Equal(m.IDTokenSigningAlgValuesSupported, []string{"RS256"}) {
		t.Fatalf("id_token_signing_alg_values_supported = %v", m.IDTokenSigningAlgValuesSupported)
	}
}

func TestIDTokenAlgConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Clients[0].IDTokenSignedResponseAlg = "HS256"
	if _, err := NewEngine(cfg); err == nil || !strings.Contains(err.Error(), "id_token_signed_response_alg") {
		t.Fatalf("HS256 accepted: %v", err)
	}
	cfg = testConfig()
	cfg.Clients[0].IDTokenSignedResponseAlg = "EdDSA" // not the signing_alg (ES256)
	if _, err := NewEngine(cfg); err == nil || !strings.Contains(err.Error(), "signing_alg EdDSA") {
		t.Fatalf("EdDSA ID tokens without an EdDSA key: %v", err)
	}
}
