package gate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// signingKey is one key of a test provider.
type signingKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

// testProvider is an external authorization server over TLS: discovery,
// JWKS, RFC 7662 introspection, with counters of what the gate fetched.
type testProvider struct {
	srv *httptest.Server
	// docIssuer, when set, is the issuer the discovery document claims.
	docIssuer string

	mu          sync.Mutex
	keys        []signingKey
	active      map[string]map[string]any // introspection answers by token
	introDown   bool
	jwksHits    atomic.Int64
	discHits    atomic.Int64
	introHits   atomic.Int64
	strangeHits atomic.Int64 // any URL no gate may fetch (a token's jku)
}

func newTestProvider(t *testing.T) *testProvider {
	t.Helper()
	p := &testProvider{active: map[string]map[string]any{}}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.addKey(t, "k1", "RS256")
	return p
}

func (p *testProvider) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		p.discHits.Add(1)
		iss := p.srv.URL
		if p.docIssuer != "" {
			iss = p.docIssuer
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks",
			"introspection_endpoint": p.srv.URL + "/introspect"})
	case "/jwks":
		p.jwksHits.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		set := jwk.NewSet()
		for _, k := range p.keys {
			pub, err := jwk.Import(k.priv.Public())
			if err != nil {
				panic(err)
			}
			_ = pub.Set(jwk.KeyIDKey, k.kid)
			_ = pub.Set(jwk.AlgorithmKey, jwa.NewSignatureAlgorithm(k.alg))
			_ = pub.Set(jwk.KeyUsageKey, "sig")
			_ = set.AddKey(pub)
		}
		_ = json.NewEncoder(w).Encode(set)
	case "/introspect":
		p.introHits.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.introDown {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if id, secret, ok := r.BasicAuth(); !ok || id != "gate" || secret != "gate-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ans, ok := p.active[r.PostFormValue("token")]
		if !ok {
			ans = map[string]any{"active": false}
		}
		_ = json.NewEncoder(w).Encode(ans)
	default:
		p.strangeHits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (p *testProvider) addKey(t *testing.T, kid, alg string) {
	t.Helper()
	var priv crypto.Signer
	var err error
	if strings.HasPrefix(alg, "ES") {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys = append(p.keys, signingKey{kid: kid, alg: alg, priv: priv})
	p.mu.Unlock()
}

func (p *testProvider) key(kid string) signingKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.keys {
		if k.kid == kid {
			return k
		}
	}
	panic("no key " + kid)
}

// claims are a good access token's claims for the gate's audience.
func (p *testProvider) claims(extra map[string]any) map[string]any {
	now := time.Now().Unix()
	c := map[string]any{"iss": p.srv.URL, "sub": "alice", "aud": []string{"https://api.test", "other"},
		"exp": now + 600, "iat": now, "jti": tokens.RandomID(8), "client_id": "svc", "scope": "read write"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// sign makes a JWS with the key kid (its alg unless hdr says another),
// the given header fields and claims.
func sign(t *testing.T, k signingKey, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	_ = h.Set(jws.KeyIDKey, k.kid)
	_ = h.Set(jws.TypeKey, "at+jwt")
	for name, v := range hdr {
		if err := h.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.NewSignatureAlgorithm(k.alg), k.priv, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// externalGate provisions a gate that trusts prov, with the oauth app
// (app non-nil) or without it.
func externalGate(t *testing.T, prov *testProvider, app Issuer, trustBlock string) *Protect {
	t.Helper()
	src := "oauth_protect {\n audience https://api.test\n scopes read\n forward_header X-Forwarded-User sub\n forward_header X-Scope scope\n trust_issuer " + prov.srv.URL + " " + trustBlock + "\n}"
	toks, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	p := new(Protect)
	if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(toks)); err != nil {
		t.Fatal(err)
	}
	client := prov.srv.Client()
	client.CheckRedirect = sameOriginRedirect
	client.Timeout = trustFetchTimeout
	p.trustClient = client
	if err := p.provisionWith(app); err != nil {
		t.Fatal(err)
	}
	return p
}

// callGate sends one GET with the bearer token through the gate.
func callGate(t *testing.T, p *Protect, token string) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://api.test/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("X-Forwarded-User", "mallory") // a client's forged identity
	r, _ = caddyRequest(r)
	return gateCall(t, p, r)
}

// TestTrustIssuerAccepts: an external access token passes with the same
// identity headers, scope rule and challenges as the app's own tokens.
func TestTrustIssuerAccepts(t *testing.T) {
	prov := newTestProvider(t)
	p := externalGate(t, prov, nil, "")
	k1 := prov.key("k1")

	w, seen := callGate(t, p, sign(t, k1, nil, prov.claims(nil)))
	if w.Code != http.StatusOK || seen == nil {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	if got := seen.Header.Get("X-Forwarded-User"); got != "alice" {
		t.Errorf("X-Forwarded-User %q, want alice (the client's copy removed)", got)
	}
	if seen.Header.Get("Authorization") != "" {
		t.Error("the token reached the upstream")
	}

	// scp as an array (Entra ID, Okta) counts as scope; typ JWT and no typ pass.
	for _, hdr := range []map[string]any{{"typ": "JWT"}, {"typ": "application/at+jwt"}} {
		w, seen = callGate(t, p, sign(t, k1, hdr, prov.claims(map[string]any{"scope": nil, "scp": []string{"read", "x"}})))
		if w.Code != http.StatusOK || seen.Header.Get("X-Scope") != "read x" {
			t.Fatalf("scp array, %v: status %d, X-Scope %q", hdr, w.Code, seen.Header.Get("X-Scope"))
		}
	}

	// Keycloak's access tokens: payload typ Bearer, and a nonce beside the scope.
	w, _ = callGate(t, p, sign(t, k1, map[string]any{"typ": "JWT"}, prov.claims(map[string]any{"typ": "Bearer", "nonce": "n"})))
	if w.Code != http.StatusOK {
		t.Fatalf("Keycloak-style access token: status %d", w.Code)
	}

	w, seen = callGate(t, p, sign(t, k1, nil, prov.claims(map[string]any{"scope": "write"})))
	if w.Code != http.StatusForbidden || seen != nil || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("missing scope: status %d, %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if prov.discHits.Load() != 1 || prov.jwksHits.Load() != 1 {
		t.Errorf("discovery %d and JWKS %d fetches, want 1 each", prov.discHits.Load(), prov.jwksHits.Load())
	}
}

// TestTrustIssuerRefuses: every token that must not pass gets 401
// invalid_token, never 500, and nothing it names is fetched.
func TestTrustIssuerRefuses(t *testing.T) {
	prov := newTestProvider(t)
	prov.addKey(t, "ec", "ES256")
	p := externalGate(t, prov, nil, "")
	k1 := prov.key("k1")
	now := time.Now().Unix()

	// An attacker's own key, published at a URL the token names.
	evil := newTestProvider(t)
	evilKey := evil.key("k1")

	// HS256 keyed with the issuer's public key (the classic confusion).
	der, err := x509.MarshalPKIXPublicKey(k1.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	hsPayload, _ := json.Marshal(prov.claims(nil))
	hsHdr := jws.NewHeaders()
	_ = hsHdr.Set(jws.KeyIDKey, "k1")
	hs, err := jws.Sign(hsPayload, jws.WithKey(jwa.HS256(), der, jws.WithProtectedHeaders(hsHdr)))
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, k1, nil, prov.claims(nil))
	parts := strings.Split(good, ".")

	for name, tok := range map[string]string{
		"wrong iss (untrusted issuer)": sign(t, k1, nil, prov.claims(map[string]any{"iss": "https://evil.test"})),
		"wrong aud":                    sign(t, k1, nil, prov.claims(map[string]any{"aud": "https://other.test"})),
		"expired beyond leeway":        sign(t, k1, nil, prov.claims(map[string]any{"exp": now - 31})),
		"no exp":                       sign(t, k1, nil, prov.claims(map[string]any{"exp": nil})),
		"no sub":                       sign(t, k1, nil, prov.claims(map[string]any{"sub": nil})),
		"empty sub":                    sign(t, k1, nil, prov.claims(map[string]any{"sub": ""})),
		"blank sub":                    sign(t, k1, nil, prov.claims(map[string]any{"sub": " "})),
		"nbf in the future":            sign(t, k1, nil, prov.claims(map[string]any{"nbf": now + 3600})),
		"iat in the future":            sign(t, k1, nil, prov.claims(map[string]any{"iat": now + 3600})),
		"typ id_token":                 sign(t, k1, map[string]any{"typ": "id_token"}, prov.claims(nil)),
		"typ logout+jwt":               sign(t, k1, map[string]any{"typ": "logout+jwt"}, prov.claims(nil)),
		"typ dpop+jwt":                 sign(t, k1, map[string]any{"typ": "dpop+jwt"}, prov.claims(nil)),
		"alg not pinned (ES256)":       sign(t, prov.key("ec"), nil, prov.claims(nil)),
		"HS256 with the public key":    string(hs),
		"alg none":                     "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ." + parts[1] + ".",
		"signature of another key":     parts[0] + "." + parts[1] + "." + strings.Split(sign(t, evilKey, nil, prov.claims(nil)), ".")[2],
		"jku to the attacker's keys": sign(t, signingKey{kid: "evil", alg: "RS256", priv: evilKey.priv},
			map[string]any{"jku": evil.srv.URL + "/jwks", "x5u": evil.srv.URL + "/x5u"}, prov.claims(nil)),
		"scope of the wrong type": sign(t, k1, nil, prov.claims(map[string]any{"scope": 7})),
		// ID tokens (and Keycloak's refresh tokens) whose aud is the API.
		"ID token with at_hash":         sign(t, k1, map[string]any{"typ": "JWT"}, prov.claims(map[string]any{"at_hash": "x"})),
		"ID token with c_hash":          sign(t, k1, map[string]any{"typ": "JWT"}, prov.claims(map[string]any{"c_hash": "x"})),
		"Keycloak typ ID":               sign(t, k1, map[string]any{"typ": "JWT"}, prov.claims(map[string]any{"typ": "ID"})),
		"Keycloak typ Refresh":          sign(t, k1, map[string]any{"typ": "JWT"}, prov.claims(map[string]any{"typ": "Refresh"})),
		"nonce and no scope":            sign(t, k1, map[string]any{"typ": "JWT"}, prov.claims(map[string]any{"nonce": "n", "scope": nil})),
		"nonce and no scope, no header": sign(t, k1, map[string]any{"typ": ""}, prov.claims(map[string]any{"nonce": "n", "scope": nil})),
		"not a JWT at all":              "opaque-token-without-introspection",
		// An array entry with a space would become two scopes.
		"scope array entry with a space": sign(t, k1, nil, prov.claims(map[string]any{"scope": []string{"x read"}})),
		"scp array entry with a tab":     sign(t, k1, nil, prov.claims(map[string]any{"scope": nil, "scp": []string{"x\tread"}})),
		"scope array entry empty":        sign(t, k1, nil, prov.claims(map[string]any{"scope": []string{"read", ""}})),
		// RFC 7515 §4.1.11: the gate understands no extension.
		"crit extension": sign(t, k1, map[string]any{"crit": []string{"urn:example:ext"}, "urn:example:ext": "must be understood"}, prov.claims(nil)),
		"crit empty":     sign(t, k1, map[string]any{"crit": []string{}}, prov.claims(nil)),
	} {
		w, seen := callGate(t, p, tok)
		if w.Code != http.StatusUnauthorized || seen != nil || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: status %d, forwarded %v, %q", name, w.Code, seen != nil, w.Header().Get("WWW-Authenticate"))
		}
	}
	if n := evil.jwksHits.Load() + evil.strangeHits.Load() + evil.discHits.Load(); n != 0 {
		t.Errorf("the gate fetched %d URLs a token named", n)
	}
	// Within the leeway, an expired token still passes.
	if w, _ := callGate(t, p, sign(t, k1, nil, prov.claims(map[string]any{"exp": now - 5}))); w.Code != http.StatusOK {
		t.Errorf("expired 5s ago with a 30s leeway: status %d", w.Code)
	}
}

// TestTrustIssuerRotation: a key the issuer adds is picked up on the
// first token that names it, but an unknown kid fetches the keys at most
// once per 10s, however many such tokens come, at once or one by one.
func TestTrustIssuerRotation(t *testing.T) {
	prov := newTestProvider(t)
	p := externalGate(t, prov, nil, "")
	t0 := time.Now()
	check := func(at time.Duration, kid string, want bool, fetches int64) {
		t.Helper()
		k := prov.key(kid)
		tok := sign(t, k, nil, prov.claims(map[string]any{"exp": t0.Unix() + 3600, "iat": t0.Unix()}))
		c, handled, err := p.externalClaims(tok, t0.Add(at))
		if !handled || (err == nil) != want || (want && c.Subject != "alice") {
			t.Fatalf("%s at +%s: handled %v, err %v; want accepted=%v", kid, at, handled, err, want)
		}
		if got := prov.jwksHits.Load(); fetches >= 0 && got != fetches {
			t.Fatalf("%s at +%s: %d JWKS fetches, want %d", kid, at, got, fetches)
		}
	}
	check(0, "k1", true, 1)
	prov.addKey(t, "k2", "RS256")
	check(time.Second, "k2", false, 1) // the keys are a second old
	forged := signingKey{kid: "forged", alg: "RS256", priv: prov.key("k1").priv}
	for range 50 {
		if _, _, err := p.externalClaims(sign(t, forged, nil, prov.claims(nil)), t0.Add(2*time.Second)); err == nil {
			t.Fatal("a forged kid passed")
		}
	}
	check(3*time.Second, "k1", true, 1)
	check(11*time.Second, "k2", true, 2)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, _, _ = p.externalClaims(sign(t, forged, nil, prov.claims(nil)), t0.Add(30*time.Second))
		})
	}
	wg.Wait()
	if got := prov.jwksHits.Load(); got != 3 {
		t.Fatalf("20 concurrent unknown kids: %d JWKS fetches in all, want 3", got)
	}
	// Past the refresh interval, the keys are fetched again in the
	// background while the current ones keep serving.
	check(16*time.Minute, "k1", true, -1) // the refresh may have begun
	for deadline := time.Now().Add(5 * time.Second); prov.jwksHits.Load() != 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no background refresh after 15 min: %d fetches", prov.jwksHits.Load())
		}
	}
	if prov.discHits.Load() != 1 {
		t.Errorf("%d discoveries, want 1", prov.discHits.Load())
	}
}

// TestTrustIssuerUnavailable: an issuer that cannot be reached, or whose
// discovery speaks for another issuer, is 503 with Retry-After, tried at
// most once per interval, and the log has no token.
func TestTrustIssuerUnavailable(t *testing.T) {
	t.Run("discovery for another issuer", func(t *testing.T) {
		prov := newTestProvider(t)
		prov.docIssuer = "https://impostor.test"
		p := externalGate(t, prov, nil, "")
		tok := sign(t, prov.key("k1"), nil, prov.claims(nil))
		for range 3 {
			w, seen := callGate(t, p, tok)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || seen != nil {
				t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
			}
		}
		if prov.discHits.Load() != 1 || prov.jwksHits.Load() != 0 {
			t.Fatalf("%d discoveries and %d JWKS fetches, want 1 and 0", prov.discHits.Load(), prov.jwksHits.Load())
		}
	})
	t.Run("issuer down", func(t *testing.T) {
		prov := newTestProvider(t)
		p := externalGate(t, prov, nil, "")
		tok := sign(t, prov.key("k1"), nil, prov.claims(nil))
		prov.srv.Close()
		w, _ := callGate(t, p, tok)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("status %d", w.Code)
		}
		_, _, err := p.externalClaims(tok, time.Now())
		if !errors.Is(err, errIssuerUnavailable) || strings.Contains(err.Error(), tok) {
			t.Fatalf("error %v", err)
		}
	})
}

// TestTrustIssuerIntrospection: opaque tokens are checked at the
// issuer's RFC 7662 endpoint; answers are cached by the token's hash for
// at most the configured time (and no longer than the token lives),
// inactive ones briefly; an issuer that fails is 503, not 401.
func TestTrustIssuerIntrospection(t *testing.T) {
	prov := newTestProvider(t)
	t.Setenv("GATE_INTROSPECT_TEST_SECRET", "gate-secret") // the secret as Caddyfiles give it
	p := externalGate(t, prov, nil, "{\n introspect gate {env.GATE_INTROSPECT_TEST_SECRET}\n introspection_cache_ttl 30s\n }")
	t0 := time.Now()
	prov.mu.Lock()
	prov.active["opaque-good"] = map[string]any{"active": true, "sub": "bob", "aud": "https://api.test", "scope": "read",
		"client_id": "svc", "exp": t0.Unix() + 3600, "iss": prov.srv.URL}
	prov.active["opaque-short"] = map[string]any{"active": true, "sub": "bob", "aud": "https://api.test", "scope": "read", "exp": t0.Unix() + 5}
	prov.active["opaque-other-aud"] = map[string]any{"active": true, "sub": "bob", "aud": "https://other.test", "scope": "read"}
	prov.active["opaque-other-iss"] = map[string]any{"active": true, "sub": "bob", "aud": "https://api.test", "iss": "https://evil.test"}
	prov.mu.Unlock()

	w, seen := callGate(t, p, "opaque-good")
	if w.Code != http.StatusOK || seen.Header.Get("X-Forwarded-User") != "bob" {
		t.Fatalf("active: status %d", w.Code)
	}
	hits := func(want int64) {
		t.Helper()
		if got := prov.introHits.Load(); got != want {
			t.Fatalf("%d introspection requests, want %d", got, want)
		}
	}
	hits(1)
	claims := func(tok string, at time.Duration) error {
		_, handled, err := p.externalClaims(tok, t0.Add(at))
		if !handled {
			t.Fatalf("%s not handled", tok)
		}
		return err
	}
	if err := claims("opaque-good", 29*time.Second); err != nil {
		t.Fatal(err)
	}
	hits(1) // cached
	if err := claims("opaque-good", 31*time.Second); err != nil {
		t.Fatal(err)
	}
	hits(2) // the 30s cache ran out
	if err := claims("opaque-short", 0); err != nil {
		t.Fatal(err)
	}
	if err := claims("opaque-short", 6*time.Second); err == nil {
		t.Fatal("cached past its exp")
	}
	hits(4)
	for _, tok := range []string{"opaque-unknown", "opaque-other-aud", "opaque-other-iss"} {
		if w, _ := callGate(t, p, tok); w.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d", tok, w.Code)
		}
	}
	hits(7)
	if err := claims("opaque-unknown", 9*time.Second); err == nil {
		t.Fatal("inactive passed")
	}
	hits(7) // inactive answers are cached too
	if err := claims("opaque-unknown", 11*time.Second); err == nil {
		t.Fatal("inactive passed")
	}
	hits(8) // but briefly

	prov.mu.Lock()
	prov.introDown = true
	prov.mu.Unlock()
	w, _ = callGate(t, p, "opaque-new")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("issuer down: status %d", w.Code)
	}
	if p.trusted.introspect.cache.len() > maxIntrospectEntries {
		t.Fatal("cache over its bound")
	}
}

// TestIntrospectCacheBound: the cache never holds more than its bound.
func TestIntrospectCacheBound(t *testing.T) {
	c := newIntrospectCache(time.Minute)
	now := time.Now()
	for i := range maxIntrospectEntries + 100 {
		var sum [32]byte
		sum[0], sum[1], sum[2] = byte(i), byte(i>>8), byte(i>>16)
		c.put(sum, introspectEntry{until: now.Add(time.Minute)}, now)
	}
	if c.len() != maxIntrospectEntries {
		t.Fatalf("%d entries", c.len())
	}
}

// TestTrustIssuerWithApp: with the oauth app, its own tokens still pass
// beside the trusted issuer's; without it, only the issuer's do.
func TestTrustIssuerWithApp(t *testing.T) {
	prov := newTestProvider(t)
	_, own := startedGate(t, "oauth_protect {\n audience https://api.test\n}")
	app := startedIssuer(t)
	withApp := externalGate(t, prov, app, "")
	ext := sign(t, prov.key("k1"), nil, prov.claims(nil))
	// The token minted by another engine instance is signed by other keys:
	// mint one from this app instead.
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", svcSecret)
	rec := httptest.NewRecorder()
	app.eng.ServeHTTP(rec, r)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token: %s", rec.Body)
	}
	for name, tok := range map[string]string{"own": tr.AccessToken, "external": ext} {
		if w, _ := callGate(t, withApp, tok); w.Code != http.StatusOK {
			t.Errorf("with the app, %s token: status %d", name, w.Code)
		}
	}
	without := externalGate(t, prov, nil, "")
	if w, _ := callGate(t, without, own); w.Code != http.StatusUnauthorized {
		t.Errorf("without the app, an own token: status %d", w.Code)
	}
	if w, _ := callGate(t, without, ext); w.Code != http.StatusOK {
		t.Errorf("without the app, the external token: status %d", w.Code)
	}
}

// TestTrustIssuerConfig: every trust_issuer mistake is an error that
// says what to fix.
func TestTrustIssuerConfig(t *testing.T) {
	for _, tt := range []struct{ block, want string }{
		{"trust_issuer https://login.test", ""},
		{"trust_issuer http://localhost:8080/realms/x {\n algs RS256 ES256 EdDSA\n leeway 1m\n}", ""},
		{"trust_issuer https://login.test {\n audience api://legacy\n jwks_uri https://login.test/keys?v=2\n introspect gate s3cret\n introspection_cache_ttl 2m\n}", ""},
		{"trust_issuer", "needs the issuer identifier"},
		{"trust_issuer https://a.test https://b.test", "takes one issuer"},
		{"trust_issuer http://login.test", "must be an https URL (plain http only for a loopback host: localhost, 127.0.0.1 or ::1)"},
		{"trust_issuer http://127.0.0.1:8080/realms/x", ""},
		{"trust_issuer http://[::1]:8080/realms/x {\n jwks_uri http://127.0.0.1:8080/keys\n}", ""},
		{"trust_issuer http://127.0.0.2:8080", "must be an https URL"},
		{"trust_issuer https://login.test?x=1", "must not have a query"},
		{"trust_issuer https://login.test#x", "fragment"},
		{"trust_issuer https://login.test {\n algs HS256\n}", `algorithm "HS256" is not accepted`},
		{"trust_issuer https://login.test {\n algs none\n}", `algorithm "none" is not accepted`},
		{"trust_issuer https://login.test {\n jwks_uri http://keys.test\n}", "jwks_uri"},
		{"trust_issuer https://login.test {\n introspect gate\n}", "introspect needs a client id and a secret"},
		{"trust_issuer https://login.test {\n leeway 1h\n}", "leeway"},
		{"trust_issuer https://login.test {\n introspection_cache_ttl 1h\n}", "introspection_cache_ttl"},
		// Entra ID v2 puts the API's client id (a GUID) in aud.
		{"trust_issuer https://login.test {\n audience billing\n}", ""},
		{"trust_issuer https://login.test {\n audience 6f1e0c1a-0000-0000-0000-000000000000\n}", ""},
		{"trust_issuer https://login.test {\n audience \"two words\"\n}", "audience"},
		{"trust_issuer https://login.test {\n audience `say\"what`\n}", "audience"},
		{"trust_issuer https://login.test {\n audience \"tab\tbed\"\n}", "audience"},
		{"trust_issuer https://login.test {\n bogus\n}", `unknown option "bogus"`},
		{"trust_issuer https://login.test\n trust_issuer https://login.test", "given twice"},
		// Every opaque token would be sent to each introspecting issuer:
		// one issuer would receive another's live tokens.
		{"trust_issuer https://a.test {\n introspect gate s1\n}\n trust_issuer https://b.test {\n introspect gate s2\n}", "at most one trust_issuer may introspect"},
		{"trust_issuer https://a.test {\n introspect gate s1\n}\n trust_issuer https://b.test", ""},
	} {
		_, err := provisionProtect("oauth_protect {\n audience https://api.test\n " + tt.block + "\n}")
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.block, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want one containing %q", tt.block, err, tt.want)
		}
	}
	if _, err := provisionProtect("oauth_protect {\n audience any\n trust_issuer https://login.test\n}"); err == nil || !strings.Contains(err.Error(), "needs an audience") {
		t.Errorf("audience any without a trust_issuer audience: %v", err)
	}
	p, err := provisionProtect("oauth_protect {\n audience https://api.test\n trust_issuer https://login.test\n}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p.prm), `"https://login.test"`) {
		t.Errorf("the protected resource metadata does not name the trusted issuer: %s", p.prm)
	}
}

// TestTrustIssuerForeignOpaque: on a gate with the oauth app, an opaque
// token with this server's prefix that the app does not know (another
// caddy-oauthgate's) goes to the introspecting issuer; the app's own
// tokens still pass without it.
func TestTrustIssuerForeignOpaque(t *testing.T) {
	prov := newTestProvider(t)
	app := startedIssuer(t)
	p := externalGate(t, prov, app, "{\n introspect gate gate-secret\n }")
	foreign := tokens.OpaquePrefix + "foreign-live-token"
	prov.mu.Lock()
	prov.active[foreign] = map[string]any{"active": true, "sub": "carol", "aud": "https://api.test", "scope": "read",
		"exp": time.Now().Unix() + 600}
	prov.mu.Unlock()

	w, seen := callGate(t, p, foreign)
	if w.Code != http.StatusOK || seen == nil || seen.Header.Get("X-Forwarded-User") != "carol" {
		t.Fatalf("another oauthgate's opaque token: status %d", w.Code)
	}
	if got := prov.introHits.Load(); got != 1 {
		t.Fatalf("%d introspection requests, want 1", got)
	}
	if w, _ := callGate(t, p, tokens.OpaquePrefix+"nobody-knows-it"); w.Code != http.StatusUnauthorized {
		t.Errorf("an opaque token no one knows: status %d", w.Code)
	}
	prov.mu.Lock()
	prov.introDown = true
	prov.mu.Unlock()
	if w, _ := callGate(t, p, tokens.OpaquePrefix+"while-down"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("introspecting issuer down: status %d, want 503", w.Code)
	}
	// Without introspection, such a token is simply refused.
	plain := externalGate(t, prov, app, "")
	if w, _ := callGate(t, plain, foreign); w.Code != http.StatusUnauthorized {
		t.Errorf("no introspection: status %d", w.Code)
	}

	// The app's own opaque tokens pass and are never sent out.
	eng, err := grants.NewEngine(grants.Config{Issuer: "https://as.test", AccessTokenTTL: time.Hour,
		Clients: []*grants.Client{{ClientSpec: grants.ClientSpec{ID: "svc", AuthMethod: grants.AuthSecretBasic, GrantTypes: []string{grants.GrantClientCredentials},
			Scopes: []string{"read"}, Audience: []string{"https://api.test"}, AccessTokenFormat: grants.FormatOpaque}, SecretHash: grants.HashSecret(svcSecret)}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := eng.Start(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	prov.mu.Lock()
	prov.introDown = false
	prov.mu.Unlock()
	own := externalGate(t, prov, testIssuer{eng: eng}, "{\n introspect gate gate-secret\n }")
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", svcSecret)
	rec := httptest.NewRecorder()
	eng.ServeHTTP(rec, r)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || !strings.HasPrefix(tr.AccessToken, tokens.OpaquePrefix) {
		t.Fatalf("opaque token: %s", rec.Body)
	}
	before := prov.introHits.Load()
	if w, _ := callGate(t, own, tr.AccessToken); w.Code != http.StatusOK {
		t.Errorf("the app's own opaque token: status %d", w.Code)
	}
	if prov.introHits.Load() != before {
		t.Error("the app's own opaque token was sent to the trusted issuer")
	}
	// Storage failing: the token cannot be looked up, and may be good:
	// 503, neither refused nor sent to the trusted issuer.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if w, _ := callGate(t, own, tr.AccessToken); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("the app's own opaque token while storage fails: status %d, want 503 with Retry-After", w.Code)
	}
	if prov.introHits.Load() != before {
		t.Error("the app's own opaque token was sent to the trusted issuer while storage failed")
	}
}

// TestTrustIssuerDocExamples: every oauth_protect example of
// docs/external-tokens.md loads exactly as written.
func TestTrustIssuerDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "external-tokens.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(doc), "```caddyfile\n")[1:] {
		src, _, _ := strings.Cut(block, "```")
		if !strings.HasPrefix(src, "oauth_protect {") {
			continue
		}
		n++
		if _, err := provisionProtect(src); err != nil {
			t.Errorf("the example\n%s\ndoes not load: %v", src, err)
		}
	}
	// The plain-http rule as the code applies it (tokens.IsLoopbackHost).
	if !strings.Contains(strings.Join(strings.Fields(string(doc)), " "), "plain http only for a loopback host: `localhost`, `127.0.0.1` or `::1`") {
		t.Error("docs/external-tokens.md does not state which hosts may be fetched over plain http")
	}
	if n < 3 {
		t.Fatalf("%d oauth_protect examples found in docs/external-tokens.md, want the Keycloak, Entra ID and Auth0 ones", n)
	}
}

// TestTrustIssuerIntrospectionTokenType: an active introspection answer
// for another kind of token (a refresh token the issuer also
// introspects) is refused; access_token and Bearer, in any case, pass.
func TestTrustIssuerIntrospectionTokenType(t *testing.T) {
	prov := newTestProvider(t)
	p := externalGate(t, prov, nil, "{\n introspect gate gate-secret\n }")
	exp := time.Now().Unix() + 600
	cases := map[string]int{
		"refresh_token": http.StatusUnauthorized,
		"Refresh":       http.StatusUnauthorized,
		"id_token":      http.StatusUnauthorized,
		"DPoP":          http.StatusUnauthorized,
		"":              http.StatusUnauthorized, // present but empty
		"access_token":  http.StatusOK,
		"Bearer":        http.StatusOK,
		"BEARER":        http.StatusOK,
	}
	prov.mu.Lock()
	for tt := range cases {
		prov.active["opaque-"+tt] = map[string]any{"active": true, "sub": "bob", "aud": "https://api.test", "scope": "read", "exp": exp, "token_type": tt}
	}
	prov.active["opaque-none"] = map[string]any{"active": true, "sub": "bob", "aud": "https://api.test", "scope": "read", "exp": exp}
	prov.active["opaque-keycloak-refresh"] = map[string]any{"active": true, "sub": "bob", "aud": "https://api.test", "scope": "read", "exp": exp, "typ": "Refresh"}
	prov.mu.Unlock()
	cases["none"] = http.StatusOK
	cases["keycloak-refresh"] = http.StatusUnauthorized
	for tt, want := range cases {
		if w, _ := callGate(t, p, "opaque-"+tt); w.Code != want {
			t.Errorf("token_type %q: status %d, want %d", tt, w.Code, want)
		}
	}
}

// TestTrustIssuerGroups: allow_groups reads an external token's groups
// claim as an array, or as a single string (one group), and refuses a
// token without the group.
func TestTrustIssuerGroups(t *testing.T) {
	prov := newTestProvider(t)
	p := externalGate(t, prov, nil, "")
	p.AllowGroups = []string{"admins"}
	if err := p.provisionWith(nil); err != nil {
		t.Fatal(err)
	}
	k1 := prov.key("k1")
	for _, tt := range []struct {
		groups any
		want   int
	}{
		{[]string{"staff", "admins"}, http.StatusOK},
		{"admins", http.StatusOK},
		{"staff", http.StatusForbidden},
		{nil, http.StatusForbidden},
	} {
		w, _ := callGate(t, p, sign(t, k1, nil, prov.claims(map[string]any{"groups": tt.groups})))
		if w.Code != tt.want {
			t.Errorf("groups %v: status %d, want %d", tt.groups, w.Code, tt.want)
		}
	}
}
