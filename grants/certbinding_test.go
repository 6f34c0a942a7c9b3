package grants

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// overCert puts r on a TLS connection on which the client presented
// cert (none when nil).
var overCert = certtest.OverTLS

// postTokenCert is postTokenDPoP over a connection with cert.
func postTokenCert(e *Engine, clientID string, form url.Values, cert *certtest.Cert, proofs ...string) tokenResult {
	return serveResult(e, overCert(tokenRequestAs(e, clientID, form, proofs...), cert))
}

func serveResult(e *Engine, r *http.Request) tokenResult {
	rec := serve(e, r)
	tr := tokenResult{status: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &tr.body)
	return tr
}

// userinfoOver calls userinfo with authz, the proofs and cert.
func userinfoOver(e *Engine, authz string, cert *certtest.Cert, proofs ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, UserinfoPath, nil)
	r.RemoteAddr = loopbackAddr
	r.Header.Set("Authorization", authz)
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	overCert(r, cert)
	rec := httptest.NewRecorder()
	e.serveUserinfo(rec, r)
	return rec
}

// userinfoProof is a's proof for GET userinfo with the token's ath.
func userinfoProof(t *testing.T, k *proofKey, at string) string {
	sum := sha256.Sum256([]byte(at))
	return k.proof(t, func(c map[string]any) {
		c["htm"], c["htu"], c["ath"] = "GET", testIssuer+UserinfoPath, base64.RawURLEncoding.EncodeToString(sum[:])
	})
}

// RFC 8705 §3 at userinfo: a certificate-bound token only over a
// connection with that certificate; bound both ways, it needs both.
func TestCertBoundUserinfo(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	e := newEngine(t)
	redeem := func(proofs ...string) tokenResult {
		code, verifier := newBrowser(t, e).getCode("c-web", "scope", "openid read")
		return postTokenCert(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code},
			"redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, f.self, proofs...)
	}
	tr := redeem()
	wantOK(t, tr)
	at := tr.str("access_token")
	if boundTo(t, at) != tokens.CertThumbprint(f.self.Cert) {
		t.Fatalf("token redeemed over a certificate is not bound: %s", tr.raw)
	}
	if rec := userinfoOver(e, "Bearer "+at, f.self); rec.Code != http.StatusOK {
		t.Fatalf("userinfo with the certificate: %d %s", rec.Code, rec.Body)
	}
	for name, cert := range map[string]*certtest.Cert{"no certificate": nil, "another certificate": f.otherSelf} {
		rec := userinfoOver(e, "Bearer "+at, cert)
		if ch := rec.Header().Get("WWW-Authenticate"); rec.Code != http.StatusUnauthorized || !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="invalid_token"`) {
			t.Errorf("%s: %d %q, want 401 invalid_token with a Bearer challenge", name, rec.Code, ch)
		}
		if strings.Contains(rec.Body.String(), `"sub"`) {
			t.Errorf("%s: claims released: %s", name, rec.Body)
		}
	}

	// Through a trusted proxy's header (as oauth_server's client_cert_header
	// takes it before the engine): that certificate counts, and only from
	// the trusted peer.
	ch := &tokens.CertHeader{Name: "Client-Cert", TrustedProxies: []string{"127.0.0.1"}}
	if err := ch.Provision(); err != nil {
		t.Fatal(err)
	}
	viaProxy := func(peer string, cert *certtest.Cert) int {
		r := httptest.NewRequest(http.MethodGet, UserinfoPath, nil)
		r.RemoteAddr = peer
		r.Header.Set("Authorization", "Bearer "+at)
		r.Header.Set("Client-Cert", ":"+base64.StdEncoding.EncodeToString(cert.Cert.Raw)+":")
		rec := httptest.NewRecorder()
		e.serveUserinfo(rec, ch.Take(overCert(r, nil)))
		return rec.Code
	}
	if code := viaProxy("127.0.0.1:4000", f.self); code != http.StatusOK {
		t.Errorf("the certificate through the trusted proxy: %d", code)
	}
	if code := viaProxy("127.0.0.1:4000", f.otherSelf); code != http.StatusUnauthorized {
		t.Errorf("another certificate through the trusted proxy: %d", code)
	}
	if code := viaProxy("192.0.2.7:4000", f.self); code != http.StatusUnauthorized {
		t.Errorf("the certificate header from an untrusted peer: %d", code)
	}

	// Bound both ways: the proof and the certificate.
	k := newProofKey(t)
	tr = redeem(k.proof(t, nil))
	wantDPoP(t, e, tr, k, "")
	at = tr.str("access_token")
	if boundTo(t, at) != tokens.CertThumbprint(f.self.Cert) {
		t.Fatalf("DPoP token redeemed over a certificate is not bound to it: %s", tr.raw)
	}
	rec := userinfoOver(e, "DPoP "+at, nil, userinfoProof(t, k, at))
	if ch := rec.Header().Get("WWW-Authenticate"); rec.Code != http.StatusUnauthorized || !strings.Contains(ch, `DPoP realm="`) || !strings.Contains(ch, `error="invalid_token"`) {
		t.Errorf("proof without the certificate: %d %q, want 401 invalid_token with a DPoP challenge", rec.Code, ch)
	}
	if rec := userinfoOver(e, "DPoP "+at, f.self); rec.Code != http.StatusUnauthorized {
		t.Errorf("certificate without the proof: %d", rec.Code)
	}
	if rec := userinfoOver(e, "DPoP "+at, f.self, userinfoProof(t, k, at)); rec.Code != http.StatusOK {
		t.Errorf("proof and certificate: %d %s", rec.Code, rec.Body)
	}
}

// RFC 8705 §4: a public client's refresh tokens are bound to the
// certificate of the code redemption (as DPoP binds them to the key); a
// refresh with another certificate, a DPoP key or nothing is refused and
// changes nothing. A confidential client's are bound to its own
// authentication, not to a certificate.
func TestCertBoundRefresh(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	e := newEngine(t)
	code, verifier := newBrowser(t, e).getCode("c-pub", "scope", "openid read")
	tr := postTokenCert(e, "c-pub", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code},
		"redirect_uri": {testRedirect["c-pub"]}, "code_verifier": {verifier}}, f.self)
	wantOK(t, tr)
	if boundTo(t, tr.str("access_token")) != tokens.CertThumbprint(f.self.Cert) {
		t.Fatalf("not bound: %s", tr.raw)
	}
	ref := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.str("refresh_token")}}
	wantErr(t, postTokenCert(e, "c-pub", ref, nil), 400, CodeInvalidGrant)
	wantErr(t, postTokenCert(e, "c-pub", ref, f.otherSelf), 400, CodeInvalidGrant)
	wantErr(t, postTokenCert(e, "c-pub", ref, nil, newProofKey(t).proof(t, nil)), 400, CodeInvalidGrant)
	// The refusals changed nothing: the certificate's holder refreshes,
	// and the new token is bound to it.
	tr = postTokenCert(e, "c-pub", ref, f.self)
	wantOK(t, tr)
	if boundTo(t, tr.str("access_token")) != tokens.CertThumbprint(f.self.Cert) {
		t.Fatalf("refreshed token not bound: %s", tr.raw)
	}
	// The rotated refresh token is bound too.
	ref.Set("refresh_token", tr.str("refresh_token"))
	wantErr(t, postTokenCert(e, "c-pub", ref, nil), 400, CodeInvalidGrant)
	wantOK(t, postTokenCert(e, "c-pub", ref, f.self))

	// Confidential: its refresh token is not bound to the certificate.
	code, verifier = newBrowser(t, e).getCode("c-web", "scope", "openid read")
	tr = postTokenCert(e, "c-web", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code},
		"redirect_uri": {testRedirect["c-web"]}, "code_verifier": {verifier}}, f.self)
	wantOK(t, tr)
	tr = postTokenCert(e, "c-web", url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.str("refresh_token")}}, f.otherSelf)
	wantOK(t, tr)
	if boundTo(t, tr.str("access_token")) != tokens.CertThumbprint(f.otherSelf.Cert) {
		t.Fatalf("confidential refresh over another certificate: %s", tr.raw)
	}
}

// txPostOver is txPost over a connection with cert and with the proofs.
func txPostOver(e *Engine, cert *certtest.Cert, proofs []string, kv ...string) tokenResult {
	v := url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"c-tx"}, "client_secret": {postSecret}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = loopbackAddr
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	if cert != nil {
		overCert(r, cert)
	}
	return serveResult(e, r)
}

// A DPoP-bound or certificate-bound subject or actor token is exchanged
// only by a request that proves possession: a proof of the token's key,
// or the token's certificate on the connection.
func TestExchangeBoundTokens(t *testing.T) {
	t.Parallel()
	f := newMTLSFixture(t)
	e := newEngine(t, withExchange())
	k, other := newProofKey(t), newProofKey(t)
	th := tokens.CertThumbprint(f.self.Cert)
	dpopBound := txAccessToken(t, e, "alice", "read", func(c *tokens.AccessClaims) { c.Cnf = &tokens.Cnf{JKT: k.jkt} })
	certBound := txAccessToken(t, e, "alice", "read", func(c *tokens.AccessClaims) { c.Cnf = &tokens.Cnf{X5tS256: th} })
	both := txAccessToken(t, e, "alice", "read", func(c *tokens.AccessClaims) { c.Cnf = &tokens.Cnf{JKT: k.jkt, X5tS256: th} })
	actor := txAccessToken(t, e, "svc-a", "", func(c *tokens.AccessClaims) { c.Cnf = &tokens.Cnf{JKT: k.jkt} })
	plain := txAccessToken(t, e, "alice", "read", nil)
	at := TokenTypeAccessToken
	refuse := func(name string, tr tokenResult, word string) {
		t.Helper()
		if tr.status != http.StatusBadRequest || tr.str("error") != CodeInvalidRequest || !strings.Contains(tr.str("error_description"), word) {
			t.Errorf("%s: %d %s, want 400 invalid_request naming %q", name, tr.status, tr.raw, word)
		}
	}
	refuse("DPoP-bound, no proof", txPostOver(e, nil, nil, "subject_token", dpopBound, "subject_token_type", at), "DPoP")
	refuse("DPoP-bound, another key", txPostOver(e, nil, []string{other.proof(t, nil)}, "subject_token", dpopBound, "subject_token_type", at), "DPoP")
	refuse("cert-bound, no certificate", txPostOver(e, nil, nil, "subject_token", certBound, "subject_token_type", at), "certificate")
	refuse("cert-bound, another certificate", txPostOver(e, f.otherSelf, nil, "subject_token", certBound, "subject_token_type", at), "certificate")
	refuse("cert-bound, a DPoP proof instead", txPostOver(e, nil, []string{k.proof(t, nil)}, "subject_token", certBound, "subject_token_type", at), "certificate")
	refuse("both, proof only", txPostOver(e, nil, []string{k.proof(t, nil)}, "subject_token", both, "subject_token_type", at), "certificate")
	refuse("both, certificate only", txPostOver(e, f.self, nil, "subject_token", both, "subject_token_type", at), "DPoP")
	refuse("DPoP-bound actor, no proof", txPostOver(e, nil, nil, "subject_token", plain, "subject_token_type", at, "actor_token", actor, "actor_token_type", at), "actor_token")

	// With possession: the exchanged token is bound again.
	tr := txPostOver(e, nil, []string{k.proof(t, nil)}, "subject_token", dpopBound, "subject_token_type", at)
	wantDPoP(t, e, tr, k, "")
	tr = txPostOver(e, f.self, nil, "subject_token", certBound, "subject_token_type", at)
	wantOK(t, tr)
	if boundTo(t, tr.str("access_token")) != th {
		t.Errorf("exchanged over the certificate but not bound: %s", tr.raw)
	}
	wantDPoP(t, e, txPostOver(e, f.self, []string{k.proof(t, nil)}, "subject_token", both, "subject_token_type", at), k, "")
	wantOK(t, txPostOver(e, nil, []string{k.proof(t, nil)}, "subject_token", plain, "subject_token_type", at, "actor_token", actor, "actor_token_type", at))
	// An unbound token is exchanged as before.
	wantOK(t, txPostOver(e, nil, nil, "subject_token", plain, "subject_token_type", at))
}
