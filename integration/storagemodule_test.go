package integration

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"golang.org/x/oauth2"
)

// TestReloadToStorageModule: a config that says `storage bolt { path … }`
// names the same file as storage_path, so a reload from one form to the
// other shares the open handle (a second bbolt handle would wait for the
// file lock and fail) and keeps the keys and the tokens they signed.
func TestReloadToStorageModule(t *testing.T) {
	up := newUpstream(t)
	path := storagePath(t)
	cfg := render(baseCaddyfile, path, up.addr())
	startCaddy(t, cfg)
	kids := jwksKids(t)
	atKid := tokenKid(t)
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken
	assertPasses(t, up, tok, "before the reload")

	next := strings.Replace(cfg, "storage_path "+path, "storage bolt {\n\t\t\tpath "+path+"\n\t\t}", 1)
	next = strings.Replace(next, "access_token_ttl 10m", "access_token_ttl 5m", 1)
	if next == cfg || !strings.Contains(next, "storage bolt") {
		t.Fatal("the reload config does not use the storage module")
	}
	status, body, took := loadConfig(t, next, "text/caddyfile")
	if status != http.StatusOK {
		t.Fatalf("reload to the storage module: /load answered %d: %s", status, body)
	}
	if took > 2500*time.Millisecond {
		t.Errorf("reload took %s: is the new config waiting for the storage file lock?", took)
	}
	if ttl := tokenTTL(t); ttl != 300 {
		t.Errorf("new tokens live %ds, want 300: the oauth app did not take the new config", ttl)
	}
	assertPasses(t, up, tok, "after the reload to the storage module")
	if got := jwksKids(t); !reflect.DeepEqual(got, kids) {
		t.Errorf("JWKS kids %q, want the same as before %q", got, kids)
	}
	if kid := tokenKid(t); kid != atKid {
		t.Errorf("new tokens are signed with kid %q, want %q (the same file, so the same key)", kid, atKid)
	}

	// A config with both forms is refused, and the running one stays.
	both := strings.Replace(next, "storage bolt {", "storage_path "+path+"\n\t\tstorage bolt {", 1)
	if status, body, _ := loadConfig(t, both, "text/caddyfile"); status == http.StatusOK || !strings.Contains(body, "storage and storage_path are both set") {
		t.Errorf("a config with storage and storage_path: /load answered %d: %s", status, body)
	}
	// In JSON, a module this build does not have is refused with the
	// list of those it has.
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(next), nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(adapted, &doc); err != nil {
		t.Fatal(err)
	}
	oauth := doc["apps"].(map[string]any)["oauth"].(map[string]any)
	if st, _ := oauth["storage"].(map[string]any); st["module"] != "bolt" || st["path"] != path {
		t.Fatalf("adapted storage is %v, want the bolt module map at %s", oauth["storage"], path)
	}
	oauth["storage"] = map[string]any{"module": "nosuch", "dsn": "postgres://localhost/oauth"}
	unknown, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if status, body, _ := loadConfig(t, string(unknown), "application/json"); status == http.StatusOK ||
		!strings.Contains(body, `storage module "nosuch" is not in this Caddy build; available: bolt`) {
		t.Errorf("a JSON config with an unknown storage module: /load answered %d: %s", status, body)
	}
	assertPasses(t, up, tok, "after the refused configs")
}
