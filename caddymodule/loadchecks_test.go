package caddymodule

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// A client secret shorter than 16 characters loads with a WARN that names
// the client and never the secret; a long one, a secret_hash or a public
// client loads quietly.
func TestShortClientSecretWarns(t *testing.T) {
	t.Setenv("SHORT_SECRET", "env-pw-12")
	spec := grants.ClientSpec{GrantTypes: []string{grants.GrantClientCredentials}}
	for _, tc := range []struct {
		cc   ClientConfig
		warn bool
	}{
		{ClientConfig{ClientSpec: withID(spec, "billing-service"), Secret: "s3cret-short"}, true},
		{ClientConfig{ClientSpec: withID(spec, "from-env"), Secret: "{env.SHORT_SECRET}"}, true},
		{ClientConfig{ClientSpec: withID(spec, "fifteen"), Secret: "ééééééééééééééé"}, true}, // 15 characters, 30 bytes
		{ClientConfig{ClientSpec: withID(spec, "sixteen"), Secret: "0123456789abcdef"}, false},
		{ClientConfig{ClientSpec: withID(spec, "hashed"), SecretHash: "sha256:" + strings.Repeat("ab", 32)}, false},
	} {
		core, logs := observer.New(zapcore.WarnLevel)
		if _, err := tc.cc.build(caddy.NewReplacer(), nil); err != nil {
			t.Fatalf("%s: %v", tc.cc.ID, err)
		}
		tc.cc.warnWeakSecret(caddy.NewReplacer(), zap.New(core))
		got := logs.All()
		if !tc.warn {
			if len(got) != 0 {
				t.Errorf("%s: unexpected warning %q", tc.cc.ID, got[0].Message)
			}
			continue
		}
		if len(got) != 1 || !strings.Contains(got[0].Message, "shorter than 16 characters") || got[0].ContextMap()["client_id"] != tc.cc.ID {
			t.Fatalf("%s: logs %+v; want one WARN naming the client", tc.cc.ID, got)
		}
		line := got[0].Message
		for k, v := range got[0].ContextMap() {
			line += " " + k + "=" + v.(string)
		}
		for _, secret := range []string{"s3cret-short", "env-pw-12", "ééééééééééééééé"} {
			if strings.Contains(line, secret) {
				t.Fatalf("%s: the warning shows the secret: %s", tc.cc.ID, line)
			}
		}
	}
}

// Through Provision: the app's logger (Caddy's development logger, on
// standard error, in tests without a config) gets the warning.
func TestShortClientSecretWarnsAtLoad(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	_, err = provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n" +
		" client billing-service {\n  secret hunter2-hunter\n  grant_types client_credentials\n }\n}")
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`WARN.*client secret is shorter than 16 characters.*"client_id": "billing-service"`).Match(out) || bytes.Contains(out, []byte("hunter2")) {
		t.Fatalf("log at load:\n%s", out)
	}
}

func withID(s grants.ClientSpec, id string) grants.ClientSpec { s.ID = id; return s }

// An invalid key encryption key from the environment is named in its
// error: too short at load, or not the one the stored keys were sealed
// with at start.
func TestKEKErrorNamesItsSource(t *testing.T) {
	t.Setenv("OAUTH_KEK", "too-short")
	_, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n}")
	if err == nil || !strings.Contains(err.Error(), "the OAUTH_KEK environment variable") || !strings.Contains(err.Error(), "at least 32") ||
		strings.Contains(err.Error(), "too-short") {
		t.Fatalf("short OAUTH_KEK: %v", err)
	}
	t.Setenv("OAUTH_KEK", "")
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n}"); err == nil || !strings.Contains(err.Error(), "set but empty") {
		t.Fatalf("OAUTH_KEK set but empty: %v", err)
	}
	t.Setenv("MY_KEK", "too-short")
	_, err = provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n key_encryption_key {env.MY_KEK}\n}")
	if err == nil || !strings.Contains(err.Error(), "key_encryption_key {env.MY_KEK} is 9 bytes") {
		t.Fatalf("short {env.MY_KEK}: %v", err)
	}

	// Keys sealed with one OAUTH_KEK, then started with another.
	cfg := "oauth {\n issuer https://as.test\n storage_path " + filepath.Join(t.TempDir(), "oauth.db") + "\n}"
	t.Setenv("OAUTH_KEK", strings.Repeat("a", 32))
	first, err := provisionApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.ready(); err != nil {
		t.Fatal(err)
	}
	if err := first.Cleanup(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OAUTH_KEK", strings.Repeat("b", 32))
	second, err := provisionApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Cleanup()
	if _, err := second.ready(); err == nil || !strings.Contains(err.Error(), "the OAUTH_KEK environment variable") {
		t.Fatalf("a different OAUTH_KEK: %v", err)
	}
}
