package caddymodule

import (
	"strings"
	"testing"
)

// TestPostgresOtherKEKRefused: a node started with a key_encryption_key
// other than the one the keys in the shared database were sealed with
// fails at start, naming where its key came from and never the key.
func TestPostgresOtherKEKRefused(t *testing.T) {
	t.Setenv("PGKEK_DSN", postgresDSN(t))
	const kekA, kekB = "node-a-kek-0123456789abcdef012345", "node-b-kek-0123456789abcdef012345"
	cfg := `{"issuer":"https://as.test","key_encryption_key":"{env.PGKEK_KEY}","storage":{"module":"postgres","dsn":"{env.PGKEK_DSN}"}}`

	t.Setenv("PGKEK_KEY", kekA)
	first, err := provisionJSON(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.ready(); err != nil {
		t.Fatal(err)
	}
	defer first.Cleanup() // node A keeps running

	t.Setenv("PGKEK_KEY", kekB)
	second, err := provisionJSON(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Cleanup()
	_, err = second.ready()
	if err == nil {
		t.Fatal("a node with another key_encryption_key started on the shared database")
	}
	msg := err.Error()
	for _, want := range []string{"cannot decrypt the stored signing keys", "key_encryption_key {env.PGKEK_KEY}", "same key_encryption_key on every node"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	for _, secret := range []string{kekA, kekB, "s3cret", "password="} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q shows %q", msg, secret)
		}
	}
}
