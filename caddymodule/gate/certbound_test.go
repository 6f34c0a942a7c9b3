package gate

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// withCert is r over a TLS connection on which the client presented
// cert (none when nil).
var withCert = certtest.OverTLS

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
// takes certificate-bound tokens (RFC 8705 §3.4, PRM-03) only where a
// certificate can reach it: an https resource, or a trusted proxy's
// header; scopes_supported is left out rather than null without scopes.
func TestGatePRMCertBound(t *testing.T) {
	for _, tc := range []struct {
		gate string
		want bool
	}{
		{"audience https://api.test", true},
		{"audience http://api.test", false},
		{"audience http://api.test\n client_cert_header Client-Cert {\n  trusted_proxies 10.0.0.1\n }", true},
	} {
		p := provisioned(t, "oauth_protect {\n "+tc.gate+"\n}")
		var m map[string]any
		if err := json.Unmarshal(p.prm, &m); err != nil || m["tls_client_certificate_bound_access_tokens"] != tc.want {
			t.Errorf("%s: protected resource metadata %s, want tls_client_certificate_bound_access_tokens %v", tc.gate, p.prm, tc.want)
		}
		if _, ok := m["scopes_supported"]; ok {
			t.Errorf("%s: scopes_supported without scopes: %s", tc.gate, p.prm)
		}
	}
	p := provisioned(t, "oauth_protect {\n audience https://api.test\n scopes read\n}")
	if !strings.Contains(string(p.prm), `"scopes_supported":["read"]`) {
		t.Errorf("scopes_supported missing: %s", p.prm)
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

// RFC 8705 / CA-15: no certificate header a client sends reaches the
// upstream, whoever's proxy spells it (attack round 2 of issue 15 found
// Traefik's and others' passing), with or without client_cert_header.
func TestGateStripsCertHeaders(t *testing.T) {
	names := []string{
		"Client-Cert", "Client-Cert-Chain", "X-Client-Cert", "X-Client-Certificate", "X-Ssl-Client-Cert", "X_ssl_client_cert",
		"X-Ssl-Cert", "X-Ssl-Cert-Hash", "X-Ssl-Client-S-Dn", "X-Ssl-Client-Verify", "X-Forwarded-Client-Cert",
		"X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info", "X-Client-Verify", "X-Client-Cert-Dn",
		"X-Client-Cert-Subject", "X-Client-Cert-Sha256", "X-Client-Cert-Fingerprint", "X-Client-Dn", "X-Client-S-Dn",
		"X-Tls-Client-Cert", "X-Mtls-Client-Cert", "Cf-Client-Cert-Sha256", "X-Amzn-Mtls-Clientcert",
		"X-Amzn-Mtls-Clientcert-Leaf", "X-Amzn-Mtls-Clientcert-Subject", "X-Arr-Clientcert", "Ssl-Client-Cert",
		"Tls-Client-Cert", "X-Forwarded-Ssl-Client-Cert",
	}
	for _, gate := range []string{
		"oauth_protect {\n audience https://app.test\n}",
		"oauth_protect {\n audience https://app.test\n client_cert_header Client-Cert {\n  trusted_proxies 127.0.0.1\n }\n}",
	} {
		p := provisioned(t, gate)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, n := range names {
			r.Header[n] = []string{"forged"}
		}
		r.Header["X-Client-Version"] = []string{"3"} // an app's own header
		p.stripIdentityHeaders(r)
		if len(r.Header) != 1 || r.Header.Get("X-Client-Version") != "3" {
			t.Errorf("%q: headers after strip = %v; want only X-Client-Version", gate, r.Header)
		}
		for _, n := range names {
			if !tokens.IsClientCertHeader(n) {
				t.Errorf("tokens.IsClientCertHeader(%q) = false", n)
			}
		}
	}
}
