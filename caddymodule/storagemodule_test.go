package caddymodule

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// provisionJSON provisions an oauth app from its JSON config, the way
// Caddy loads apps.oauth.
func provisionJSON(t *testing.T, cfg string) (*App, error) {
	t.Helper()
	app := new(App)
	if err := json.Unmarshal([]byte(cfg), app); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return app, app.Provision(ctx)
}

// TestStorageModuleCaddyfile: `storage bolt { path … }` adapts to the
// module map, and the app opens that file.
func TestStorageModuleCaddyfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "o.db")
	app, err := parseOAuth(t, "oauth {\n issuer https://as.test\n storage bolt {\n path "+path+"\n }\n sweep_interval 2m\n}")
	if err != nil {
		t.Fatal(err)
	}
	got, want := string(app.StorageRaw), `{"module":"bolt","path":"`+path+`"}`
	if got != want {
		t.Fatalf("storage = %s, want %s", got, want)
	}
	if app.SweepInterval == 0 {
		t.Fatal("the option after the storage block was not read")
	}

	app, err = provisionApp("oauth {\n issuer https://as.test\n storage bolt {\n path " + path + "\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	if app.store.StoreKey() != "bolt:"+path {
		t.Fatalf("store key %q, want bolt:%s", app.store.StoreKey(), path)
	}
	if _, err := app.ready(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Cleanup() })
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the storage module's file was not created: %v", err)
	}
}

// TestStorageModuleJSON: the JSON module map and the storage_path
// shorthand reach the same bbolt file, and so share one handle.
func TestStorageModuleJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "o.db")
	byModule, err := provisionJSON(t, `{"issuer":"https://as.test","storage":{"module":"bolt","path":"`+path+`"}}`)
	if err != nil {
		t.Fatal(err)
	}
	// Another spelling of the same file.
	byPath, err := provisionJSON(t, `{"issuer":"https://as.test","storage_path":"`+dir+`/./o.db"}`)
	if err != nil {
		t.Fatal(err)
	}
	if byModule.store.StoreKey() != byPath.store.StoreKey() {
		t.Fatalf("keys differ: %q and %q", byModule.store.StoreKey(), byPath.store.StoreKey())
	}
	if _, err := byModule.ready(); err != nil {
		t.Fatal(err)
	}
	// bbolt would refuse a second handle on the file (it locks it), so
	// this start succeeds only through the shared pool entry.
	if _, err := byPath.ready(); err != nil {
		t.Fatal(err)
	}
	if byModule.life.store != byPath.life.store {
		t.Fatal("the two configs opened two stores on one file")
	}
	for _, a := range []*App{byModule, byPath} {
		if err := a.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := stores.References(byModule.store.StoreKey()); ok {
		t.Fatal("the store is still open after both configs released it")
	}
}

// TestStorageModuleDefault: with neither storage nor storage_path, the
// store is bolt in Caddy's data directory.
func TestStorageModuleDefault(t *testing.T) {
	app, err := provisionJSON(t, `{"issuer":"https://as.test"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := "bolt:" + filepath.Join(caddy.AppDataDir(), "oauth", "oauth.db")
	if app.store.StoreKey() != want {
		t.Fatalf("default store %q, want %q", app.store.StoreKey(), want)
	}
}

// TestStorageModuleErrors: each mistake is refused with an error that
// says what to fix, in the Caddyfile and in JSON.
func TestStorageModuleErrors(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{"storage nosuch", `storage module "nosuch" is not in this Caddy build; available: bolt, postgres`},
		{"storage", "storage needs a module name (available: bolt, postgres)"},
		{"storage bolt extra", "storage bolt takes no arguments"},
		{"storage bolt {\n nosuch x\n }", `unknown option "nosuch" in storage bolt (it takes: path)`},
		{"storage bolt {\n path\n }", "path needs a file name"},
		{"storage bolt\n storage bolt", "storage is given twice"},
		{"storage bolt\n storage_path /tmp/x.db", "storage and storage_path are both set"},
		{"storage_path /tmp/x.db\n storage bolt", "storage and storage_path are both set"},
	} {
		_, err := parseOAuth(t, "oauth {\n issuer https://as.test\n "+tc.cfg+"\n}")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	for _, tc := range []struct{ cfg, want string }{
		{`"storage":{"module":"nosuch"}`, `storage module "nosuch" is not in this Caddy build; available: bolt, postgres`},
		{`"storage":{"path":"/tmp/x.db"}`, "storage needs a module name (available: bolt, postgres)"},
		{`"storage":{"module":"bolt","path":"/tmp/x.db"},"storage_path":"/tmp/x.db"`, "storage and storage_path are both set"},
		{`"storage":{"module":"bolt","paht":"/tmp/x.db"}`, "paht"},
		{`"storage":"bolt"`, "storage must be an object"},
	} {
		_, err := provisionJSON(t, `{"issuer":"https://as.test",`+tc.cfg+`}`)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
}
