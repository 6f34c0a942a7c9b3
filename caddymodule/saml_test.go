package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// saml_idp cert_file: a PEM certificate loads; anything else is refused
// with a message that names the provider and the file.
func TestSAMLIdPConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	demo, err := filepath.Abs("../examples/saml/idp-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want string // want "" = loads
	}{
		{"demo certificate", demo, ""},
		{"missing file", filepath.Join(dir, "nope.pem"), "no such file"},
		{"not PEM", write("junk.pem", "hello"), "holds no PEM CERTIFICATE"},
		{"key only", write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "holds no PEM CERTIFICATE"},
		{"broken certificate", write("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "cert_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp, err := SAMLIdPConfig{EntityID: "https://idp.example", CertFile: tt.file}.build()
			switch {
			case tt.want == "" && (err != nil || idp.Certificate == nil):
				t.Fatalf("build: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "https://idp.example")):
				t.Fatalf("build err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
