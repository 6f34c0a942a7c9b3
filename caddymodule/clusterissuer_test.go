package caddymodule

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestPostgresOtherIssuerRefused: a node configured with another issuer
// than the one recorded in the shared database fails at start, naming
// both issuers and how to change the issuer on purpose; a bbolt file
// (one process) takes a config with a new issuer, as a reload does.
func TestPostgresOtherIssuerRefused(t *testing.T) {
	t.Setenv("PGISS_DSN", postgresDSN(t))
	t.Setenv("PGISS_KEK", "issuer-test-kek-0123456789abcdef0123")
	cfg := func(iss string) string {
		return `{"issuer":"` + iss + `","key_encryption_key":"{env.PGISS_KEK}","storage":{"module":"postgres","dsn":"{env.PGISS_DSN}"}}`
	}
	first, err := provisionJSON(t, cfg("https://as.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Cleanup()
	if _, err := first.ready(); err != nil {
		t.Fatal(err)
	}
	second, err := provisionJSON(t, cfg("https://other.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Cleanup()
	_, err = second.ready()
	if err == nil {
		t.Fatal("a node with another issuer started on the shared database")
	}
	for _, want := range []string{`"https://other.test"`, `"https://as.test"`, "DELETE FROM oauthgate_records WHERE kind = 'secrets' AND key = 'issuer'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	path := filepath.Join(t.TempDir(), "o.db")
	for _, iss := range []string{"https://as.test", "https://other.test"} {
		app, err := provisionJSON(t, `{"issuer":"`+iss+`","storage":{"module":"bolt","path":"`+path+`"}}`)
		if err != nil {
			t.Fatal(err)
		}
		defer app.Cleanup()
		if _, err := app.ready(); err != nil {
			t.Fatalf("bbolt, issuer %s: %v", iss, err)
		}
	}
}
