package gate

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// withCert is r over a TLS connection on which the client presented
// cert (none when nil).
func withCert(r *http.Request, cert *certtest.Cert) *http.Request {
	r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert.Cert}
	}
	return r
}

// TestGateCertBound: MTLS-01. A token the authorization server bound to
// a certificate (the client presented it at the token endpoint) passes
// the gate only over a connection with exactly that certificate, every
// time (the verified-token cache does not skip the check); certificate
// headers neither stand in for the certificate nor reach the upstream.
func TestGateCertBound(t *testing.T) {
	app := startedIssuer(t)
	ca := certtest.NewCA(t, "Test CA")
	mine := certtest.Issue(t, ca, certtest.Names{CN: "svc"})
	other := certtest.Issue(t, ca, certtest.Names{CN: "svc"})
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token",
		strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", svcSecret)
	w := httptest.NewRecorder()
	app.eng.ServeHTTP(w, withCert(r, mine))
	var tr grants.TokenResponse
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
		t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	p := provisionedWith(t, app, "oauth_protect {\n audience https://api.test\n}")
	call := func(cert *certtest.Cert, hdr bool) (*httptest.ResponseRecorder, *http.Request) {
		r := httptest.NewRequest(http.MethodGet, "https://api.test/", nil)
		r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		if hdr {
			r.Header.Set("Client-Cert", ":"+base64.StdEncoding.EncodeToString(mine.Cert.Raw)+":")
			r.Header.Set("X-SSL-Client-Cert", "forged")
			r.Header.Set("X_Forwarded_Client_Cert", "forged")
		}
		r, _ = caddyRequest(withCert(r, cert))
		return gateCall(t, p, r)
	}
	for i := range 2 { // the second time from the verified-token cache
		if w, seen := call(mine, true); w.Code != http.StatusOK || seen == nil {
			t.Fatalf("round %d: the bound token with its certificate: %d", i, w.Code)
		} else {
			for name := range seen.Header {
				if n := strings.ToLower(name); strings.Contains(n, "cert") {
					t.Fatalf("certificate header %s reached the upstream", name)
				}
			}
		}
		for _, tt := range []struct {
			name string
			cert *certtest.Cert
			hdr  bool
		}{
			{"another certificate", other, false},
			{"no certificate", nil, false},
			{"no certificate, a forged Client-Cert header", nil, true},
		} {
			w, seen := call(tt.cert, tt.hdr)
			if w.Code != http.StatusUnauthorized || seen != nil || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("round %d, %s: %d %q, upstream reached %v", i, tt.name, w.Code, w.Header().Get("WWW-Authenticate"), seen != nil)
			}
		}
	}
}

// TestGatePRMCertBound: the protected resource metadata says the gate
// checks certificate-bound tokens (RFC 8705 §3.4, PRM-03).
func TestGatePRMCertBound(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://api.test\n}")
	var m map[string]any
	if err := json.Unmarshal(p.prm, &m); err != nil || m["tls_client_certificate_bound_access_tokens"] != true {
		t.Fatalf("protected resource metadata %s", p.prm)
	}
}

func provisionedWith(t *testing.T, app testIssuer, src string) *Protect {
	t.Helper()
	p := provisioned(t, src)
	if err := p.provisionWith(app); err != nil {
		t.Fatal(err)
	}
	return p
}
