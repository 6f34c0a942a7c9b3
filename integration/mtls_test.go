package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// Mutual TLS (RFC 8705) over real TLS: 19400 the authorization server
// and 19404 a gated API, each asking for client certificates
// (client_auth mode request); 19401/19402 http_port/https_port.
const (
	mtlsIssuer = "https://localhost:19400"
	mtlsAPI    = "https://localhost:19404"
)

func mtlsCaddyfile(t *testing.T, caFile, selfJWKS, selfPEM string) string {
	return fmt.Sprintf(`{
	skip_install_trust
	admin %[1]s
	default_bind 127.0.0.1
	http_port 19401
	https_port 19402
	grace_period 1ns
	oauth {
		issuer %[2]s
		storage_path %[3]s
		tls_client_ca_file %[4]s
		client c-mtls {
			auth_method tls_client_auth
			tls_client_auth_san_dns c-mtls.test
			grant_types client_credentials
			audience %[5]s
		}
		client c-self {
			auth_method self_signed_tls_client_auth
			jwks `+"`%[6]s`"+`
			grant_types client_credentials
			audience %[5]s
		}
		client c-self-pem {
			auth_method self_signed_tls_client_auth
			tls_client_cert_file %[7]s
			grant_types client_credentials
			audience %[5]s
		}
	}
}

%[2]s {
	tls internal {
		client_auth {
			mode request
		}
	}
	oauth_server
}

%[5]s {
	tls internal {
		client_auth {
			mode request
		}
	}
	oauth_protect {
		audience %[5]s
	}
	respond "sub={oauth.sub} cert={http.request.header.Client-Cert}"
}
`, adminAddr, mtlsIssuer, storagePath(t), caFile, mtlsAPI, selfJWKS, selfPEM)
}

// mtlsClient is a Go net/http client that presents cert (none when nil)
// in every TLS handshake. Caddy's internal CA is not in the trust store
// here, so the server certificate is not checked.
func mtlsClient(cert *certtest.Cert) *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS()}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

type mtlsAnswer struct {
	status int
	hdr    http.Header
	body   string
	json   map[string]any
}

func mtlsDo(t *testing.T, c *http.Client, method, u string, form url.Values, hdr map[string]string) mtlsAnswer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := newRequest(t, method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := mtlsAnswer{status: resp.StatusCode, hdr: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &a.json)
	return a
}

// TestMTLS: a Go client holding a certificate made by a test CA gets a
// certificate-bound token from a real Caddy over real TLS
// (tls_client_auth and self_signed_tls_client_auth) and uses it through
// the gate; every refusal of RFC 8705 §2 and §3 is a 401.
func TestMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "Test client CA")
	mtls := certtest.Issue(t, ca, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	wrongSAN := certtest.Issue(t, ca, certtest.Names{CN: "c-mtls", DNS: []string{"other.test"}})
	self := certtest.Issue(t, nil, certtest.Names{CN: "c-self"})
	otherSelf := certtest.Issue(t, nil, certtest.Names{CN: "c-self"})
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(self.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	selfJWKS, _ := json.Marshal(map[string]any{"keys": []jwk.Key{k}})
	selfPEM := certtest.Issue(t, nil, certtest.Names{CN: "c-self-pem"})
	selfPEMFile := filepath.Join(dir, "c-self-pem.pem")
	if err := os.WriteFile(selfPEMFile, selfPEM.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, mtlsCaddyfile(t, caFile, string(selfJWKS), selfPEMFile))

	// Caddy issues the internal certificates in the background.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r1, err1 := mtlsClient(nil).Get(mtlsIssuer + "/.well-known/oauth-authorization-server")
		r2, err2 := mtlsClient(nil).Get(mtlsAPI + "/")
		if err1 == nil && err2 == nil {
			r1.Body.Close()
			r2.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS at %s / %s: %v %v", mtlsIssuer, mtlsAPI, err1, err2)
		}
	}

	tokenURL := mtlsIssuer + "/oauth/token"
	getToken := func(cert *certtest.Cert, clientID string, hdr map[string]string) mtlsAnswer {
		return mtlsDo(t, mtlsClient(cert), http.MethodPost, tokenURL,
			url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}}, hdr)
	}
	bound := map[string]string{}
	for _, tt := range []struct {
		client string
		cert   *certtest.Cert
	}{{"c-mtls", mtls}, {"c-self", self}, {"c-self-pem", selfPEM}} {
		a := getToken(tt.cert, tt.client, nil)
		tok, _ := a.json["access_token"].(string)
		if a.status != http.StatusOK || tok == "" || a.json["token_type"] != "Bearer" {
			t.Fatalf("%s: token request: %d %s", tt.client, a.status, a.body)
		}
		// RFC 8705 §3.1: cnf x5t#S256 is the certificate's thumbprint.
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims struct {
			Cnf map[string]string `json:"cnf"`
		}
		_ = json.Unmarshal(payload, &claims)
		if want := thumbprint(tt.cert); claims.Cnf["x5t#S256"] != want {
			t.Fatalf("%s: cnf = %v, want x5t#S256 %s", tt.client, claims.Cnf, want)
		}
		bound[tt.client] = tok
		// Through the gate with the same certificate.
		a = mtlsDo(t, mtlsClient(tt.cert), http.MethodGet, mtlsAPI+"/", nil, map[string]string{"Authorization": "Bearer " + tok})
		if a.status != http.StatusOK || a.body != "sub="+tt.client+" cert=" {
			t.Fatalf("%s: the bound token through the gate with its certificate: %d %q", tt.client, a.status, a.body)
		}
		// INT-07: introspection (authenticated by the same certificate).
		a = mtlsDo(t, mtlsClient(tt.cert), http.MethodPost, mtlsIssuer+"/oauth/introspect",
			url.Values{"client_id": {tt.client}, "token": {tok}}, nil)
		if cnf, _ := a.json["cnf"].(map[string]any); a.status != http.StatusOK || a.json["active"] != true || cnf["x5t#S256"] != claims.Cnf["x5t#S256"] {
			t.Fatalf("%s: introspection: %d %s", tt.client, a.status, a.body)
		}
	}

	forged := map[string]string{
		"Client-Cert":       ":" + base64.StdEncoding.EncodeToString(mtls.Cert.Raw) + ":",
		"X-SSL-Client-Cert": url.QueryEscape(string(mtls.PEM())),
	}
	t.Run("token endpoint refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name, client string
			cert         *certtest.Cert
			hdr          map[string]string
		}{
			{"CA-13 wrong certificate (SAN other.test)", "c-mtls", wrongSAN, nil},
			{"CA-13 no certificate", "c-mtls", nil, nil},
			{"CA-14 another self-signed certificate", "c-self", otherSelf, nil},
			{"CA-14 the other client's certificate", "c-self", mtls, nil},
			{"CA-14 another client's self-signed certificate", "c-self-pem", self, nil},
			{"CA-15 forged Client-Cert header, no certificate", "c-mtls", nil, forged},
			{"CA-15 forged Client-Cert header, another certificate", "c-mtls", otherSelf, forged},
		} {
			a := getToken(tt.cert, tt.client, tt.hdr)
			if a.status != http.StatusUnauthorized || a.json["error"] != "invalid_client" || a.json["access_token"] != nil {
				t.Errorf("%s: %d %s", tt.name, a.status, a.body)
			}
		}
	})
	t.Run("gate refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			tok  string
			cert *certtest.Cert
			hdr  map[string]string
		}{
			{"MTLS-01 bound token without a certificate", bound["c-mtls"], nil, nil},
			{"MTLS-01 bound token over another client's certificate", bound["c-mtls"], self, nil},
			{"MTLS-01 bound token over a wrong certificate of the same CA", bound["c-mtls"], wrongSAN, nil},
			{"MTLS-01 self-signed client's token over another self-signed certificate", bound["c-self"], otherSelf, nil},
			{"CA-15 bound token with a forged Client-Cert header", bound["c-mtls"], nil, forged},
		} {
			hdr := map[string]string{"Authorization": "Bearer " + tt.tok}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			a := mtlsDo(t, mtlsClient(tt.cert), http.MethodGet, mtlsAPI+"/", nil, hdr)
			if a.status != http.StatusUnauthorized || !strings.Contains(a.hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s: %d %q %q", tt.name, a.status, a.hdr.Get("WWW-Authenticate"), a.body)
			}
		}
		// The certificate header never reaches what is behind the gate.
		hdr := map[string]string{"Authorization": "Bearer " + bound["c-mtls"]}
		for k, v := range forged {
			hdr[k] = v
		}
		if a := mtlsDo(t, mtlsClient(mtls), http.MethodGet, mtlsAPI+"/", nil, hdr); a.status != http.StatusOK || a.body != "sub=c-mtls cert=" {
			t.Errorf("with its certificate and a Client-Cert header: %d %q", a.status, a.body)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		a := mtlsDo(t, mtlsClient(nil), http.MethodGet, mtlsIssuer+"/.well-known/oauth-authorization-server", nil, nil)
		methods, _ := a.json["token_endpoint_auth_methods_supported"].([]any)
		if a.json["tls_client_certificate_bound_access_tokens"] != true ||
			!slices.Contains(methods, any("tls_client_auth")) || !slices.Contains(methods, any("self_signed_tls_client_auth")) {
			t.Errorf("authorization server metadata: %s", a.body)
		}
		if _, ok := a.json["mtls_endpoint_aliases"]; ok {
			t.Errorf("mtls_endpoint_aliases listed though the endpoints serve mTLS themselves: %s", a.body)
		}
		a = mtlsDo(t, mtlsClient(nil), http.MethodGet, mtlsAPI+"/.well-known/oauth-protected-resource", nil, nil)
		if a.status != http.StatusOK || a.json["tls_client_certificate_bound_access_tokens"] != true {
			t.Errorf("protected resource metadata: %d %s", a.status, a.body)
		}
	})
}

// thumbprint is the RFC 8705 §3.1 x5t#S256 of the certificate, computed
// here independently of the server's code.
func thumbprint(c *certtest.Cert) string {
	return base64.RawURLEncoding.EncodeToString(sha256Of(c.Cert.Raw))
}

func sha256Of(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

// TestMTLSTrustedProxy: behind a TLS-terminating proxy, the certificate
// comes from the proxy's RFC 9440 Client-Cert header, believed only from
// the proxies client_cert_header lists (here the test itself, on
// 127.0.0.1, plays the proxy): 19406 the authorization server, 19407 a
// gate that trusts 127.0.0.1, 19408 one that trusts 10.0.0.1 only.
func TestMTLSTrustedProxy(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "Test client CA")
	mtls := certtest.Issue(t, ca, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	other := certtest.Issue(t, ca, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, fmt.Sprintf(`{
	skip_install_trust
	admin %[1]s
	default_bind 127.0.0.1
	http_port 19401
	https_port 19402
	grace_period 1ns
	oauth {
		issuer http://localhost:19406
		storage_path %[2]s
		tls_client_ca_file %[3]s
		client_cert_header Client-Cert {
			trusted_proxies 127.0.0.1/32 ::1
		}
		client c-mtls {
			auth_method tls_client_auth
			tls_client_auth_san_dns c-mtls.test
			grant_types client_credentials
			audience http://localhost:19407 http://localhost:19408
		}
	}
}

http://localhost:19406 {
	oauth_server
}

http://localhost:19407 {
	oauth_protect {
		audience http://localhost:19407
		client_cert_header Client-Cert {
			trusted_proxies 127.0.0.1
		}
	}
	respond "sub={oauth.sub} cert={http.request.header.Client-Cert}"
}

http://localhost:19408 {
	oauth_protect {
		audience http://localhost:19408
		client_cert_header Client-Cert {
			trusted_proxies 10.0.0.1
		}
	}
	respond "sub={oauth.sub}"
}
`, adminAddr, storagePath(t), caFile))
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	header := func(c *certtest.Cert) string { return ":" + base64.StdEncoding.EncodeToString(c.Cert.Raw) + ":" }
	tokenReq := func(vals ...string) mtlsAnswer {
		req := newRequest(t, http.MethodPost, "http://localhost:19406/oauth/token",
			strings.NewReader("grant_type=client_credentials&client_id=c-mtls"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, v := range vals {
			req.Header.Add("Client-Cert", v)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := mtlsAnswer{status: resp.StatusCode, body: string(b)}
		_ = json.Unmarshal(b, &a.json)
		return a
	}
	a := tokenReq(header(mtls))
	tok, _ := a.json["access_token"].(string)
	if a.status != http.StatusOK || tok == "" {
		t.Fatalf("token request through the trusted proxy: %d %s", a.status, a.body)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if !strings.Contains(string(payload), `"x5t#S256":"`+thumbprint(mtls)+`"`) {
		t.Fatalf("the token is not bound to the proxy's certificate: %s", payload)
	}
	for name, vals := range map[string][]string{
		"no header":         nil,
		"two headers":       {header(mtls), header(mtls)},
		"PEM, not RFC 9440": {url.QueryEscape(string(mtls.PEM()))},
	} {
		if a := tokenReq(vals...); a.status != http.StatusUnauthorized || a.json["error"] != "invalid_client" {
			t.Errorf("token request, %s: %d %s", name, a.status, a.body)
		}
	}
	for _, tt := range []struct {
		name, gate, hdr string
		status          int
	}{
		{"trusted proxy, the certificate", "http://localhost:19407/", header(mtls), http.StatusOK},
		{"trusted proxy, another certificate", "http://localhost:19407/", header(other), http.StatusUnauthorized},
		{"trusted proxy, no certificate", "http://localhost:19407/", "", http.StatusUnauthorized},
		{"untrusted peer, the certificate", "http://localhost:19408/", header(mtls), http.StatusUnauthorized},
	} {
		hdr := map[string]string{"Authorization": "Bearer " + tok}
		if tt.hdr != "" {
			hdr["Client-Cert"] = tt.hdr
		}
		a := mtlsDo(t, plain, http.MethodGet, tt.gate, nil, hdr)
		if a.status != tt.status {
			t.Errorf("gate, %s: %d %q", tt.name, a.status, a.body)
		}
		if a.status == http.StatusOK && a.body != "sub=c-mtls cert=" {
			t.Errorf("gate, %s: the header reached the upstream: %q", tt.name, a.body)
		}
	}
}

// TestMTLSVerifyIfGiven: the stricter Caddy setting docs/mtls.md
// describes for CA-issued certificates only (client_auth mode
// verify_if_given with a trust_pool): tls_client_auth works, Caddy ends
// the handshake of a self-signed certificate, and a client without one
// still reaches the server. 19409 the authorization server.
func TestMTLSVerifyIfGiven(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "Test client CA")
	mtls := certtest.Issue(t, ca, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	self := certtest.Issue(t, nil, certtest.Names{CN: "c-mtls", DNS: []string{"c-mtls.test"}})
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	const iss = "https://localhost:19409"
	startCaddy(t, fmt.Sprintf(`{
	skip_install_trust
	admin %[1]s
	default_bind 127.0.0.1
	http_port 19401
	https_port 19402
	grace_period 1ns
	oauth {
		issuer %[2]s
		storage_path %[3]s
		tls_client_ca_file %[4]s
		client c-mtls {
			auth_method tls_client_auth
			tls_client_auth_san_dns c-mtls.test
			grant_types client_credentials
		}
	}
}

%[2]s {
	tls internal {
		client_auth {
			mode verify_if_given
			trust_pool inline {
				trust_der %[5]s
			}
		}
	}
	oauth_server
}
`, adminAddr, iss, storagePath(t), caFile, base64.StdEncoding.EncodeToString(ca.Cert.Raw)))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, err := mtlsClient(nil).Get(iss + "/.well-known/oauth-authorization-server")
		if err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS at %s: %v", iss, err)
		}
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"c-mtls"}}
	if a := mtlsDo(t, mtlsClient(mtls), http.MethodPost, iss+"/oauth/token", form, nil); a.status != http.StatusOK {
		t.Fatalf("tls_client_auth with verify_if_given: %d %s", a.status, a.body)
	}
	if a := mtlsDo(t, mtlsClient(nil), http.MethodPost, iss+"/oauth/token", form, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d %s", a.status, a.body)
	}
	// A self-signed certificate: Go's client does not even offer it (the
	// server asked for certificates of the trust pool's CA), so the
	// request arrives without one; a client that offers it anyway (as
	// curl does) has its handshake ended by Caddy.
	c := mtlsClient(nil)
	c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		crt := self.TLS()
		return &crt, nil
	}
	req := newRequest(t, http.MethodPost, iss+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a self-signed certificate offered anyway: the handshake went through (%d)", resp.StatusCode)
	}
	if a := mtlsDo(t, mtlsClient(self), http.MethodPost, iss+"/oauth/token", form, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("a self-signed certificate held by a Go client: %d %s", a.status, a.body)
	}
}
