package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// TestMTLSClientOptions: the RFC 8705 client options parse, keep their
// RFC 8705 JSON names, and build a client with its CAs (its own file or
// the app's); a misconfigured one is refused with what to fix.
func TestMTLSClientOptions(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certtest.NewCA(t, "Test CA").PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	app, err := parseOAuth(t, "oauth {\n tls_client_ca_file "+caFile+"\n client svc {\n auth_method tls_client_auth\n tls_client_auth_san_dns svc.test\n grant_types client_credentials\n }\n client own {\n auth_method tls_client_auth\n tls_client_auth_subject_dn CN=own,O=Example\n tls_client_ca_file "+caFile+"\n grant_types client_credentials\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	if app.TLSClientCAFile != caFile || app.Clients[0].TLSClientSubject.SANDNS != "svc.test" || app.Clients[1].TLSClientSubject.SubjectDN != "CN=own,O=Example" {
		t.Fatalf("parsed %+v", app)
	}
	pool, err := loadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range app.Clients {
		c, err := cc.build(caddy.NewReplacer(), pool)
		if err != nil || c.TLSClientCAs == nil || c.AuthMethod != grants.AuthTLSClient {
			t.Fatalf("build %s: %+v %v", cc.ID, c, err)
		}
	}
	selfFile := filepath.Join(dir, "self.pem")
	if err := os.WriteFile(selfFile, certtest.Issue(t, nil, certtest.Names{CN: "self"}).PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	selfSpec := grants.ClientSpec{ID: "self", AuthMethod: grants.AuthSelfSignedTLSClient, GrantTypes: []string{grants.GrantClientCredentials}}
	if c, err := (ClientConfig{ClientSpec: selfSpec, TLSClientCertFile: selfFile}).build(caddy.NewReplacer(), nil); err != nil || c.Keys == nil {
		t.Fatalf("tls_client_cert_file: %+v %v", c, err)
	}
	spec := grants.ClientSpec{ID: "svc", AuthMethod: grants.AuthTLSClient, GrantTypes: []string{grants.GrantClientCredentials},
		TLSClientSubject: grants.TLSClientSubject{SANDNS: "svc.test"}}
	for _, tt := range []struct {
		name string
		cc   ClientConfig
		want string
	}{
		{"no CAs anywhere", ClientConfig{ClientSpec: spec}, "tls_client_ca_file"},
		{"CA file without certificates", ClientConfig{ClientSpec: spec, TLSClientCAFile: junk}, "no PEM CERTIFICATE"},
		{"CA file that is not there", ClientConfig{ClientSpec: spec, TLSClientCAFile: filepath.Join(dir, "nope.pem")}, "nope.pem"},
		{"CA file for a secret client", ClientConfig{ClientSpec: grants.ClientSpec{ID: "b", GrantTypes: spec.GrantTypes}, Secret: "0123456789abcdef0123", TLSClientCAFile: caFile}, "is for auth_method tls_client_auth"},
		{"tls_client_cert_file for tls_client_auth", ClientConfig{ClientSpec: spec, TLSClientCAFile: caFile, TLSClientCertFile: selfFile}, "is for auth_method self_signed_tls_client_auth"},
		{"tls_client_cert_file and jwks", ClientConfig{ClientSpec: selfSpec, TLSClientCertFile: selfFile, JWKSSource: JWKSSource{JWKSURI: "https://self.test/jwks"}}, "not both"},
		{"tls_client_cert_file without certificates", ClientConfig{ClientSpec: selfSpec, TLSClientCertFile: junk}, "no PEM CERTIFICATE"},
		{"self-signed without jwks", ClientConfig{ClientSpec: grants.ClientSpec{ID: "s", AuthMethod: grants.AuthSelfSignedTLSClient, GrantTypes: spec.GrantTypes}}, "jwks"},
	} {
		if _, err := tt.cc.build(caddy.NewReplacer(), nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}
