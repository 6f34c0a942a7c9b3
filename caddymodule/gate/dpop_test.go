package gate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/dpoptest"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// DPoPSettings gives the test issuer the oauth app's DPoP settings.
func (i testIssuer) DPoPSettings() ([]string, *tokens.DPoPNonces) {
	if i.eng == nil {
		return nil, nil
	}
	return i.eng.DPoPAlgs(), i.eng.DPoPNonces()
}

var _ DPoPIssuer = testIssuer{}

// gateKey is a DPoP key of a test client.
type gateKey struct{ *dpoptest.Key }

func newGateKey(t *testing.T) *gateKey {
	t.Helper()
	k, err := dpoptest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &gateKey{k}
}

// proof is an ES256 proof with claims c (jti and iat added unless set;
// a nil value removes a claim).
func (k *gateKey) proof(t *testing.T, c map[string]any) string {
	t.Helper()
	s, err := k.Proof(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ath(tok string) string { return dpoptest.ATH(tok) }

// dpopIssuer is startedIssuer with DPoP nonces on or off.
func dpopIssuer(t *testing.T, nonce bool) testIssuer {
	t.Helper()
	eng, err := grants.NewEngine(grants.Config{Issuer: "https://as.test", AccessTokenTTL: time.Hour,
		DPoP: grants.DPoPConfig{Nonce: nonce},
		Clients: []*grants.Client{{ClientSpec: grants.ClientSpec{ID: "svc", AuthMethod: grants.AuthSecretBasic, GrantTypes: []string{grants.GrantClientCredentials},
			Scopes: []string{"read", "write"}, Audience: []string{"https://api.test"}}, SecretHash: grants.HashSecret(svcSecret)}}})
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
	return testIssuer{eng: eng}
}

// issue gets a token from the issuer's token endpoint: DPoP-bound to k
// (retrying once with the server's nonce), or a bearer token for k nil.
func issue(t *testing.T, app testIssuer, k *gateKey) string {
	t.Helper()
	nonce := ""
	for range 2 {
		r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token", strings.NewReader("grant_type=client_credentials&scope=read"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("svc", svcSecret)
		if k != nil {
			c := map[string]any{"htm": "POST", "htu": "https://as.test/oauth/token"}
			if nonce != "" {
				c["nonce"] = nonce
			}
			r.Header.Set("DPoP", k.proof(t, c))
		}
		w := httptest.NewRecorder()
		app.eng.ServeHTTP(w, r)
		if n := w.Header().Get("DPoP-Nonce"); w.Code == http.StatusBadRequest && n != "" && nonce == "" {
			nonce = n
			continue
		}
		var tr grants.TokenResponse
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
			t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
		}
		return tr.AccessToken
	}
	t.Fatal("no token after the nonce retry")
	return ""
}

// gateWith provisions a gate from Caddyfile text on app.
func gateWith(t *testing.T, app testIssuer, gate string) *Protect {
	t.Helper()
	toks, err := caddyfile.Tokenize([]byte(gate), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	p := new(Protect)
	if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(toks)); err != nil {
		t.Fatal(err)
	}
	if err := p.provisionWith(app); err != nil {
		t.Fatal(err)
	}
	return p
}

// dpopCall sends method target through p with the Authorization value
// and DPoP proofs (extra headers in hdr); it returns the answer and the
// request the upstream saw (nil when refused).
func dpopCall(t *testing.T, p *Protect, method, target, authz string, proofs []string, hdr map[string]string) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	for _, pr := range proofs {
		r.Header.Add("DPoP", pr)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	r, _ = caddyRequest(r)
	w := httptest.NewRecorder()
	var seen *http.Request
	if err := p.ServeHTTP(w, r, handlerFunc(func(_ http.ResponseWriter, r *http.Request) error { seen = r; return nil })); err != nil {
		t.Fatal(err)
	}
	return w, seen
}

// RFC 9449 §7 at the gate: every refusal (DPOP-08, -09, -11..-14, -18,
// -19), each with a DPoP challenge carrying algs and the error, and the
// accepted case, which reaches the upstream without the token or proof.
func TestGateDPoPRefusals(t *testing.T) {
	app := dpopIssuer(t, false)
	p := gateWith(t, app, "oauth_protect {\n audience https://api.test\n scopes read\n}")
	a, b := newGateKey(t), newGateKey(t)
	bound := issue(t, app, a)
	otherBound := issue(t, app, a)
	bearer := issue(t, app, nil)
	const url = "https://api.test/orders/7"
	good := func(mod map[string]any) []string {
		c := map[string]any{"htm": "GET", "htu": url, "ath": ath(bound)}
		for k, v := range mod {
			c[k] = v
		}
		return []string{a.proof(t, c)}
	}
	replayed := good(nil)
	if w, seen := dpopCall(t, p, "GET", url+"?page=2", "DPoP "+bound, replayed, nil); seen == nil {
		t.Fatalf("a valid DPoP request: %d %s %q", w.Code, w.Body, w.Header().Get("WWW-Authenticate"))
	} else if seen.Header.Get("Authorization") != "" || seen.Header.Get("DPoP") != "" {
		t.Errorf("the upstream got Authorization %q, DPoP %q", seen.Header.Get("Authorization"), seen.Header.Get("DPoP"))
	}
	for _, tc := range []struct {
		name   string
		method string
		authz  string
		proofs []string
		hdr    map[string]string
		code   string
	}{
		{"wrong ath", "GET", "DPoP " + bound, good(map[string]any{"ath": ath("another")}), nil, "invalid_dpop_proof"},
		{"no ath", "GET", "DPoP " + bound, good(map[string]any{"ath": nil}), nil, "invalid_dpop_proof"},
		{"other key", "GET", "DPoP " + bound, []string{b.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bound)})}, nil, "invalid_dpop_proof"},
		{"replayed proof", "GET", "DPoP " + bound, replayed, nil, "invalid_dpop_proof"},
		{"wrong htm", "POST", "DPoP " + bound, good(nil), nil, "invalid_dpop_proof"},
		{"wrong htu path", "GET", "DPoP " + bound, good(map[string]any{"htu": "https://api.test/orders/8"}), nil, "invalid_dpop_proof"},
		{"htu of another host", "GET", "DPoP " + bound, good(map[string]any{"htu": "https://evil.test/orders/7"}), nil, "invalid_dpop_proof"},
		{"htu of a spoofed Host", "GET", "DPoP " + bound, good(map[string]any{"htu": "https://evil.test/orders/7"}),
			map[string]string{"Host": "evil.test", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"}, "invalid_dpop_proof"},
		{"stale iat", "GET", "DPoP " + bound, good(map[string]any{"iat": time.Now().Add(-10 * time.Minute).Unix()}), nil, "invalid_dpop_proof"},
		{"future iat", "GET", "DPoP " + bound, good(map[string]any{"iat": time.Now().Add(10 * time.Minute).Unix()}), nil, "invalid_dpop_proof"},
		{"Bearer downgrade", "GET", "Bearer " + bound, nil, nil, "invalid_token"},
		{"Bearer downgrade with a proof", "GET", "Bearer " + bound, good(nil), nil, "invalid_token"},
		{"DPoP scheme without proof", "GET", "DPoP " + bound, nil, nil, "invalid_dpop_proof"},
		{"two proofs", "GET", "DPoP " + bound, append(good(nil), good(nil)...), nil, "invalid_dpop_proof"},
		{"proof for another token", "GET", "DPoP " + otherBound, good(nil), nil, "invalid_dpop_proof"},
		{"Bearer token with the DPoP scheme", "GET", "DPoP " + bearer, []string{a.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bearer)})}, nil, "invalid_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, seen := dpopCall(t, p, tc.method, url, tc.authz, tc.proofs, tc.hdr)
			if seen != nil || w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, forwarded %v; want 401", w.Code, seen != nil)
			}
			ch := w.Header().Get("WWW-Authenticate")
			if !strings.Contains(ch, `DPoP realm="https://api.test", algs="ES256 `) || !strings.Contains(ch, `error="`+tc.code+`"`) {
				t.Errorf("WWW-Authenticate %q, want a DPoP challenge with algs and error=%q", ch, tc.code)
			}
			if !strings.HasPrefix(ch, `Bearer realm="https://api.test"`) {
				t.Errorf("WWW-Authenticate %q: the Bearer challenge is missing (both schemes are acceptable)", ch)
			}
			if w.Header().Get("DPoP-Nonce") != "" {
				t.Errorf("a nonce without dpop_nonce")
			}
		})
	}
	// The bearer token still passes as Bearer, and the 401 without a
	// token offers both schemes (RFC 9449 §7.1).
	if _, seen := dpopCall(t, p, "GET", url, "Bearer "+bearer, nil, nil); seen == nil {
		t.Error("a bearer token as Bearer was refused")
	}
	w, _ := dpopCall(t, p, "GET", url, "", nil, nil)
	if ch := w.Header().Get("WWW-Authenticate"); w.Code != 401 || !strings.HasPrefix(ch, `Bearer realm="https://api.test", resource_metadata="`) ||
		!strings.Contains(ch, `, DPoP realm="https://api.test", algs="ES256 ES384`) || strings.Contains(ch, "error=") {
		t.Errorf("no token: %d %q", w.Code, ch)
	}
}

// The verified-token cache does not carry the proof: the same token,
// verified (and cached) once, needs a fresh proof on every request.
func TestGateDPoPCachedTokenNeedsProof(t *testing.T) {
	app := dpopIssuer(t, false)
	p := gateWith(t, app, "oauth_protect {\n audience https://api.test\n}")
	a := newGateKey(t)
	bound := issue(t, app, a)
	const url = "https://api.test/"
	proof := []string{a.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bound)})}
	if _, seen := dpopCall(t, p, "GET", url, "DPoP "+bound, proof, nil); seen == nil {
		t.Fatal("first request refused")
	}
	for name, proofs := range map[string][]string{"no proof": nil, "the same proof": proof} {
		if w, seen := dpopCall(t, p, "GET", url, "DPoP "+bound, proofs, nil); seen != nil || w.Code != 401 {
			t.Errorf("%s, token cached: %d, forwarded %v", name, w.Code, seen != nil)
		}
	}
	fresh := []string{a.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bound)})}
	if _, seen := dpopCall(t, p, "GET", url, "DPoP "+bound, fresh, nil); seen == nil {
		t.Error("a fresh proof was refused")
	}
}

// DPOP-10 at the gate: with the app's dpop_nonce, a proof without the
// server's nonce, or with a stale one, gets 401 use_dpop_nonce with a
// DPoP-Nonce header; the retry with it passes. The nonce is the token
// endpoint's (stateless), so the token request's nonce works here too.
func TestGateDPoPNonce(t *testing.T) {
	app := dpopIssuer(t, true)
	p := gateWith(t, app, "oauth_protect {\n audience https://api.test\n}")
	a := newGateKey(t)
	bound := issue(t, app, a)
	const url = "https://api.test/x"
	mk := func(nonce any) []string {
		return []string{a.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bound), "nonce": nonce})}
	}
	var nonce string
	for name, proofs := range map[string][]string{"no nonce": mk(nil), "stale nonce": mk("AAAAAAAAAAAAAAAAAAAAAAAA")} {
		w, seen := dpopCall(t, p, "GET", url, "DPoP "+bound, proofs, nil)
		ch := w.Header().Get("WWW-Authenticate")
		if seen != nil || w.Code != 401 || !strings.Contains(ch, `DPoP realm="https://api.test"`) || !strings.Contains(ch, `error="use_dpop_nonce"`) {
			t.Fatalf("%s: %d %q", name, w.Code, ch)
		}
		if nonce = w.Header().Get("DPoP-Nonce"); nonce == "" {
			t.Fatalf("%s: no DPoP-Nonce", name)
		}
	}
	if w, seen := dpopCall(t, p, "GET", url, "DPoP "+bound, mk(nonce), nil); seen == nil {
		t.Fatalf("retry with the nonce: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}

// The path checked is the one the client sent, before handle_path or a
// rewrite changed the request's.
func TestGateDPoPOriginalPath(t *testing.T) {
	app := dpopIssuer(t, false)
	p := gateWith(t, app, "oauth_protect {\n audience https://api.test\n}")
	a := newGateKey(t)
	bound := issue(t, app, a)
	r := httptest.NewRequest("GET", "https://api.test/api/v1/items", nil)
	r.Header.Set("Authorization", "DPoP "+bound)
	r.Header.Set("DPoP", a.proof(t, map[string]any{"htm": "GET", "htu": "https://api.test/api/v1/items", "ath": ath(bound)}))
	r, _ = caddyRequest(r)
	orig := *r // as Caddy's server keeps it
	u := *r.URL
	orig.URL = &u
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, orig))
	r.URL.Path = "/items" // handle_path /api/v1/*
	passed := false
	_ = p.ServeHTTP(httptest.NewRecorder(), r, handlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil }))
	if !passed {
		t.Fatal("a proof for the path the client sent was refused after a rewrite")
	}
}

// require_dpop: bearer tokens are refused with the DPoP challenge alone,
// and the metadata says so; without it, the metadata lists the
// algorithms and says DPoP is not required. A gate whose audience is no
// URL takes DPoP only with dpop_origin.
func TestGateDPoPRequireAndMetadata(t *testing.T) {
	app := dpopIssuer(t, false)
	a := newGateKey(t)
	bound, bearer := issue(t, app, a), issue(t, app, nil)
	prm := func(p *Protect) map[string]any {
		w, _ := dpopCall(t, p, "GET", "https://api.test/.well-known/oauth-protected-resource", "", nil, nil)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	opt := gateWith(t, app, "oauth_protect {\n audience https://api.test\n}")
	if m := prm(opt); m["dpop_bound_access_tokens_required"] != false || !strings.Contains(jsonString(m["dpop_signing_alg_values_supported"]), `"ES256"`) {
		t.Errorf("metadata without require_dpop: %v", m)
	}
	req := gateWith(t, app, "oauth_protect {\n audience https://api.test\n require_dpop\n}")
	if m := prm(req); m["dpop_bound_access_tokens_required"] != true {
		t.Errorf("metadata with require_dpop: %v", m)
	}
	for name, authz := range map[string]string{"bearer token": "Bearer " + bearer, "no token": ""} {
		w, seen := dpopCall(t, req, "GET", "https://api.test/", authz, nil, nil)
		if ch := w.Header().Get("WWW-Authenticate"); seen != nil || w.Code != 401 || !strings.HasPrefix(ch, `DPoP realm="https://api.test", algs="`) || strings.Contains(ch, "Bearer") {
			t.Errorf("require_dpop, %s: %d %q", name, w.Code, ch)
		}
	}
	proof := func() []string {
		return []string{a.proof(t, map[string]any{"htm": "GET", "htu": "https://api.test/", "ath": ath(bound)})}
	}
	if _, seen := dpopCall(t, req, "GET", "https://api.test/", "DPoP "+bound, proof(), nil); seen == nil {
		t.Error("require_dpop refused a DPoP request")
	}
	noURL := gateWith(t, app, "oauth_protect {\n audience any\n}")
	if w, seen := dpopCall(t, noURL, "GET", "https://api.test/", "DPoP "+bound, proof(), nil); seen != nil || w.Code != 401 {
		t.Errorf("audience any without dpop_origin took a DPoP token: %d", w.Code)
	}
	withOrigin := gateWith(t, app, "oauth_protect {\n audience any\n dpop_origin https://api.test\n}")
	if w, seen := dpopCall(t, withOrigin, "GET", "https://api.test/", "DPoP "+bound, proof(), nil); seen == nil {
		t.Errorf("dpop_origin: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	for _, bad := range []string{"oauth_protect {\n audience any\n require_dpop\n}", "oauth_protect {\n audience any\n dpop_origin https://api.test/path\n}", "oauth_protect {\n audience any\n dpop_origin api.test\n}"} {
		toks, _ := caddyfile.Tokenize([]byte(bad), "Caddyfile")
		p := new(Protect)
		if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(toks)); err == nil {
			if err = p.provisionWith(app); err == nil {
				t.Errorf("accepted: %q", bad)
			}
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A trusted external issuer's DPoP-bound token (cnf.jkt in its JWT) gets
// the same rules at a gate without the oauth app: it passes as DPoP with
// its proof, and is refused as Bearer and with another key's proof.
func TestGateDPoPExternalIssuer(t *testing.T) {
	prov := newTestProvider(t)
	p := externalGate(t, prov, nil, "")
	a, b := newGateKey(t), newGateKey(t)
	tok := sign(t, prov.key("k1"), nil, prov.claims(map[string]any{"cnf": map[string]string{"jkt": a.JKT}}))
	const url = "https://api.test/"
	proof := func(k *gateKey) []string {
		return []string{k.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(tok)})}
	}
	if w, seen := dpopCall(t, p, "GET", url, "DPoP "+tok, proof(a), nil); seen == nil {
		t.Fatalf("external DPoP token with its proof: %d %s", w.Code, w.Body)
	}
	for name, tc := range map[string]struct {
		authz  string
		proofs []string
	}{"as Bearer": {"Bearer " + tok, nil}, "another key": {"DPoP " + tok, proof(b)}} {
		if w, seen := dpopCall(t, p, "GET", url, tc.authz, tc.proofs, nil); seen != nil || w.Code != http.StatusUnauthorized {
			t.Errorf("external DPoP token %s: %d, forwarded %v", name, w.Code, seen != nil)
		}
	}
}

// RFC 9449 §7.1: every refusal of a token sent with the DPoP scheme uses
// the DPoP challenge, the 403s (a missing scope, allow_users) and a
// malformed header too, so a client learns which algorithms to use.
func TestGateDPoPChallengeScheme(t *testing.T) {
	app := dpopIssuer(t, false)
	a := newGateKey(t)
	bound := issue(t, app, a)
	const url = "https://api.test/orders/7"
	proof := func() []string {
		return []string{a.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bound)})}
	}
	for _, tc := range []struct {
		name   string
		gate   string
		authz  string
		proofs []string
		status int
		want   string
	}{
		{"missing scope", "scopes write", "DPoP " + bound, proof(), 403, `error="insufficient_scope", scope="write"`},
		{"allow_users", "allow_users somebody-else", "DPoP " + bound, proof(), 403, `error="insufficient_scope"`},
		{"empty DPoP token", "scopes read", "DPoP ", nil, 400, "as DPoP, with a DPoP proof"},
		{"DPoP token of another issuer", "scopes read", "DPoP not-a-token", nil, 401, `error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := gateWith(t, app, "oauth_protect {\n audience https://api.test\n "+tc.gate+"\n}")
			w, seen := dpopCall(t, p, "GET", url, tc.authz, tc.proofs, nil)
			ch := w.Header().Get("WWW-Authenticate")
			if seen != nil || w.Code != tc.status {
				t.Fatalf("status %d, forwarded %v; want %d (%q)", w.Code, seen != nil, tc.status, ch)
			}
			if !strings.HasPrefix(ch, `DPoP realm="https://api.test", algs="ES256 `) || !strings.Contains(ch, tc.want) || strings.Contains(ch, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want the DPoP challenge only, with %q", ch, tc.want)
			}
		})
	}
}

// A gate with no URL to check proofs against (no http(s) audience, no
// dpop_origin) offers no DPoP: a DPoP-bound token, with a proof or as
// Bearer, is a plain Bearer invalid_token, with no DPoP challenge and no
// nonce, even when the app's nonces are on.
func TestGateWithoutDPoPURL(t *testing.T) {
	app := dpopIssuer(t, true)
	p := gateWith(t, app, "oauth_protect {\n audience any\n}")
	a := newGateKey(t)
	bound := issue(t, app, a)
	const url = "https://api.test/x"
	for name, authz := range map[string]string{"DPoP scheme": "DPoP " + bound, "Bearer": "Bearer " + bound} {
		proof := []string{a.proof(t, map[string]any{"htm": "GET", "htu": url, "ath": ath(bound)})}
		w, seen := dpopCall(t, p, "GET", url, authz, proof, nil)
		ch := w.Header().Get("WWW-Authenticate")
		if seen != nil || w.Code != http.StatusUnauthorized || !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="invalid_token"`) ||
			strings.Contains(ch, "DPoP") || w.Header().Get("DPoP-Nonce") != "" {
			t.Errorf("%s: %d %q nonce %q, forwarded %v", name, w.Code, ch, w.Header().Get("DPoP-Nonce"), seen != nil)
		}
	}
	if _, seen := dpopCall(t, p, "GET", url, "Bearer "+issue(t, app, nil), nil, nil); seen == nil {
		t.Error("a bearer token was refused")
	}
}
