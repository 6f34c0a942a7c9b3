package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
	"golang.org/x/oauth2"
)

// stoppedConfig runs no apps but keeps the admin endpoint where caddytest
// expects it (an empty config would move it to the default :2019).
const stoppedConfig = `{"admin":{"listen":"localhost:2999"},"apps":{}}`

// tokenTTL returns exp - iat of a freshly issued token, which shows which
// config's oauth app answered.
func tokenTTL(t *testing.T) int64 {
	t.Helper()
	_, claims := jwtParts(t, fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken)
	iat, _ := claims["iat"].(json.Number).Int64()
	exp, _ := claims["exp"].(json.Number).Int64()
	return exp - iat
}

// tokenKid returns the kid of a freshly issued token.
func tokenKid(t *testing.T) string {
	t.Helper()
	hdr, _ := jwtParts(t, fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken)
	kid, _ := hdr["kid"].(string)
	return kid
}

// assertPasses checks that tok still gets through oauth_protect to the
// upstream as basicID.
func assertPasses(t *testing.T, up *upstream, tok, when string) {
	t.Helper()
	before := up.count()
	resp, body := callAPI(t, apiURL+"/", "Bearer "+tok)
	if resp.StatusCode != http.StatusOK || up.count() != before+1 {
		t.Fatalf("%s: old token got %d %q (upstream calls %d), want 200 via the upstream", when, resp.StatusCode, body, up.count()-before)
	}
	if u := up.last().Header.Get("X-Forwarded-User"); u != basicID {
		t.Errorf("%s: upstream X-Forwarded-User = %q, want %q", when, u, basicID)
	}
}

// TestReload changes the config twice through the admin API, as
// `caddy reload` does. Caddy provisions and starts the new config while
// the old one still holds the bbolt file, so this hangs and then fails
// unless the handle is shared; tokens and keys must survive.
func TestReload(t *testing.T) {
	up := newUpstream(t)
	path := storagePath(t)
	cfg := render(baseCaddyfile, path, up.addr())
	startCaddy(t, cfg)

	kids := jwksKids(t) // the access-token key and the RS256 ID-token key
	atKid := tokenKid(t)
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken
	assertPasses(t, up, tok, "before the reloads")
	if ttl := tokenTTL(t); ttl != 600 {
		t.Fatalf("ttl %d before the reloads, want 600", ttl)
	}

	for i, change := range []struct {
		ttl     string
		seconds int64
		echo    string
	}{
		{"5m", 300, "first reload"},
		{"7m", 420, "second reload"},
	} {
		next := strings.Replace(cfg, "access_token_ttl 10m", "access_token_ttl "+change.ttl, 1)
		next = strings.Replace(next, `respond "sub=`, `respond "`+change.echo+` sub=`, 1)
		if next == cfg {
			t.Fatal("the reload config is unchanged; Caddy would skip the reload")
		}
		status, body, took := loadConfig(t, next, "text/caddyfile")
		t.Logf("reload %d took %s", i+1, took)
		if status != http.StatusOK {
			t.Fatalf("reload %d: /load answered %d: %s", i+1, status, body)
		}
		// Without a shared handle the new config waits for the bbolt lock
		// (3s) and then fails; a working reload takes milliseconds.
		if took > 2500*time.Millisecond {
			t.Errorf("reload %d took %s: is the new config waiting for the storage file lock?", i+1, took)
		}
		// The new config is the one answering.
		if ttl := tokenTTL(t); ttl != change.seconds {
			t.Errorf("reload %d: new tokens live %ds, want %ds: the oauth app did not take the new config", i+1, ttl, change.seconds)
		}
		resp, echo := callAPI(t, echoURL+"/", "Bearer "+tok)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(echo, change.echo+" sub="+basicID) {
			t.Errorf("reload %d: echo answered %d %q", i+1, resp.StatusCode, echo)
		}
		assertPasses(t, up, tok, "after reload")
		if got := jwksKids(t); !reflect.DeepEqual(got, kids) {
			t.Errorf("reload %d: JWKS kids %q, want the same as before %q", i+1, got, kids)
		}
		if kid := tokenKid(t); kid != atKid {
			t.Errorf("reload %d: new tokens are signed with kid %q, want %q", i+1, kid, atKid)
		}
	}

	// A reload that changes signing_alg adds a key; the old one keeps
	// verifying the tokens it signed (RFC 7517 §5).
	next := strings.Replace(cfg, "access_token_ttl 10m", "access_token_ttl 10m\n\t\tsigning_alg EdDSA", 1)
	if status, body, _ := loadConfig(t, next, "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("reload with signing_alg EdDSA: /load answered %d: %s", status, body)
	}
	hdr, _ := jwtParts(t, fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken)
	if hdr["alg"] != "EdDSA" || hdr["kid"] == atKid {
		t.Errorf("after switching to EdDSA new tokens have alg %v kid %v", hdr["alg"], hdr["kid"])
	}
	got := jwksKids(t)
	if len(got) != len(kids)+1 || !slices.Contains(got, atKid) {
		t.Errorf("after switching to EdDSA the JWKS has kids %q, want the old %q and a new one", got, kids)
	}
	assertPasses(t, up, tok, "after switching signing_alg")
}

// lateGateCaddyfile runs oauth_protect only once a slow upstream has
// answered (handle_response), so a request can reach the gate of a config
// that a reload has already stopped and cleaned up.
const lateGateCaddyfile = `{
	skip_install_trust
	admin localhost:2999
	http_port 19080
	https_port 19443
	grace_period 1ns
	oauth {
		issuer http://localhost:19100
		storage_path @STORAGE@
		client billing-service {
			secret "s3cr:et%+"
			grant_types client_credentials
			scopes invoices:read
		}
	}
}

http://:19100 {
	bind 127.0.0.1
	oauth_server
}

http://localhost:19103 {
	bind 127.0.0.1
	reverse_proxy @UPSTREAM@ {
		@answered status 200
		handle_response @answered {
			oauth_protect {
				audience http://localhost:19101
			}
			respond "gated late"
		}
	}
}
`

// TestRequestAfterCleanupReleasesStorage: Caddy does not wait for
// in-flight requests on a reload (grace period or not), so a handler of
// the old config can run after the old oauth app's Cleanup. It must not
// take a new reference to the storage file that nobody will release:
// after every app is stopped the file must be free.
func TestRequestAfterCleanupReleasesStorage(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "slow upstream")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(unblock) // runs before slow.Close, which waits for the handler

	path := storagePath(t)
	startCaddy(t, render(lateGateCaddyfile, path, strings.TrimPrefix(slow.URL, "http://")))
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken

	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://localhost:19103/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := testClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{status: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the slow upstream")
	}

	// Stop every app while the request is in flight; the old oauth app is
	// cleaned up and its last reference to the file released.
	if status, body, _ := loadConfig(t, stoppedConfig, "application/json"); status != http.StatusOK {
		t.Fatalf("stopping the apps: /load answered %d: %s", status, body)
	}
	// Now the old config's oauth_protect runs.
	unblock()
	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight request never finished")
	}
	t.Logf("in-flight request after cleanup: %d %q %v", a.status, a.body, a.err)

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("no config runs, yet the storage file is still locked (a reference taken after Cleanup was never released): %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestart stops every app, checks the storage file was released, and
// starts again on the same storage_path: the key, and so every token
// issued before, survive.
func TestRestart(t *testing.T) {
	up := newUpstream(t)
	path := storagePath(t)
	cfg := render(baseCaddyfile, path, up.addr())
	startCaddy(t, cfg)

	kids := jwksKids(t) // the access-token key and the RS256 ID-token key
	atKid := tokenKid(t)
	tok := fetchToken(t, basicID, basicSecret, oauth2.AuthStyleInHeader).AccessToken
	assertPasses(t, up, tok, "before the restart")

	status, body, _ := loadConfig(t, stoppedConfig, "application/json")
	if status != http.StatusOK {
		t.Fatalf("stopping the apps: /load answered %d: %s", status, body)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:19100", time.Second); err == nil {
		c.Close()
		t.Fatal("the authorization server still listens after its config was removed")
	}
	// The last reference is gone, so the bbolt handle must be closed and
	// its file lock free for anyone.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("storage file still locked after the oauth app stopped: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	startCaddy(t, cfg)
	if got := jwksKids(t); !reflect.DeepEqual(got, kids) {
		t.Errorf("after restart JWKS kids %q, want %q", got, kids)
	}
	if kid := tokenKid(t); kid != atKid {
		t.Errorf("after restart new tokens use kid %q, want %q", kid, atKid)
	}
	assertPasses(t, up, tok, "after the restart")
}
