package grants

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// pwRequest is a password grant request from addr, as c-ropc.
func pwRequest(e *Engine, addr string, kv ...string) *httptest.ResponseRecorder {
	v := url.Values{"grant_type": {GrantPassword}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	r := tokenRequest(v.Encode())
	r.RemoteAddr = addr
	r.Header.Set("Authorization", siBasicAuth("c-ropc", pwSecret))
	return serve(e, r)
}

func TestPasswordGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withROPC())
	const ip = "192.0.2.10:1234"

	t.Run("success with ID and refresh token", func(t *testing.T) {
		m := checkToken(t, pwRequest(e, ip, "username", "alice", "password", "alice-pw", "scope", "openid email"))
		_, at := segments(t, m["access_token"].(string))
		if at["sub"] != "alice" || at["client_id"] != "c-ropc" || at["scope"] != "openid email" {
			t.Errorf("access token claims %v", at)
		}
		_, id := verifyIDToken(t, e, m["id_token"].(string))
		if id["sub"] != "alice" || id["aud"] != "c-ropc" || id["email"] != "alice@example.test" {
			t.Errorf("ID token claims %v", id)
		}
		rt, _ := m["refresh_token"].(string)
		if rt == "" {
			t.Fatal("no refresh token")
		}
		// The refresh token rotates like one from the code grant.
		form := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {rt}}
		wantOK(t, postTokenRaw(e, form, siBasicAuth("c-ropc", pwSecret)))
		wantErr(t, postTokenRaw(e, form, siBasicAuth("c-ropc", pwSecret)), 400, CodeInvalidGrant)
	})
	t.Run("no openid, no ID token", func(t *testing.T) {
		m := checkToken(t, pwRequest(e, ip, "username", "bob", "password", "bob-pw", "scope", "read"))
		if _, ok := m["id_token"]; ok {
			t.Error("ID token without openid")
		}
	})
	t.Run("no refresh token unless registered", func(t *testing.T) {
		r := tokenRequest(url.Values{"grant_type": {GrantPassword}, "username": {"alice"}, "password": {"alice-pw"},
			"client_id": {"c-ropc-once"}, "client_secret": {pwSecret}}.Encode())
		m := checkToken(t, serve(e, r))
		if _, ok := m["refresh_token"]; ok {
			t.Error("refresh token for a client without refresh_token")
		}
	})

	families := countRecords(t, e, storage.KindFamilies)
	tests := []struct {
		name   string
		kv     []string
		status int
		code   string
	}{
		{"ROPC-03 wrong password", []string{"username", "alice", "password", "nope"}, 400, CodeInvalidGrant},
		{"ROPC-03 unknown user", []string{"username", "mallory", "password", "nope"}, 400, CodeInvalidGrant},
		{"no username", []string{"password", "alice-pw"}, 400, CodeInvalidRequest},
		{"no password", []string{"username", "alice"}, 400, CodeInvalidRequest},
		{"scope not allowed", []string{"username", "alice", "password", "alice-pw", "scope", "write"}, 400, CodeInvalidScope},
		{"resource not allowed", []string{"username", "alice", "password", "alice-pw", "resource", "https://x.test"}, 400, CodeInvalidTarget},
		{"huge password", []string{"username", "alice", "password", strings.Repeat("p", 2000)}, 400, CodeInvalidGrant},
	}
	var bodies []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := pwRequest(e, "192.0.2.20:1", tt.kv...)
			checkError(t, w, tt.status, tt.code)
			if strings.HasPrefix(tt.name, "ROPC-03") {
				bodies = append(bodies, w.Body.String())
			}
		})
	}
	if len(bodies) == 2 && bodies[0] != bodies[1] {
		t.Errorf("unknown user and wrong password differ: %s vs %s", bodies[0], bodies[1])
	}
	if n := countRecords(t, e, storage.KindFamilies); n != families {
		t.Errorf("refused requests stored grants: %d -> %d families", families, n)
	}
}

// RFC 9700 §2.4, RFC 6749 §4.3.2: off unless a client is registered for it.
func TestPasswordGrantOffByDefault(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	wantErr(t, postToken(e, "c-basic", url.Values{"grant_type": {GrantPassword}, "username": {"alice"}, "password": {"alice-pw"}}),
		400, CodeUnsupportedGrantType)
	if contains(testMetadata(t, e).GrantTypesSupported, GrantPassword) {
		t.Error("password advertised without a client for it")
	}
	e = newEngine(t, withROPC())
	if !contains(testMetadata(t, e).GrantTypesSupported, GrantPassword) {
		t.Error("password not advertised")
	}
	wantErr(t, postToken(e, "c-basic", url.Values{"grant_type": {GrantPassword}, "username": {"alice"}, "password": {"alice-pw"}}),
		400, CodeUnauthorizedClient)
	pub := &Client{ClientSpec: ClientSpec{ID: "c-p", AuthMethod: AuthNone, GrantTypes: []string{GrantPassword}}}
	if err := pub.Validate(); err == nil || !strings.Contains(err.Error(), "public client") {
		t.Errorf("public password client: Validate = %v", err)
	}
}

// RFC 6749 §4.3.2 (brute-force protection): failures lock the user name from that address, and
// (past UserMaxFailures) from any address; a locked answer is 429 with
// Retry-After. The address itself is never locked: bob signs in from it.
// The throttle is shared with the login page.
func TestPasswordGrantThrottle(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withROPC(), withConfig(func(c *Config) {
		c.Web.Throttle = ThrottleConfig{MaxFailures: 3, UserMaxFailures: 5, IPDelay: time.Millisecond}
	}))
	for range 3 {
		checkError(t, pwRequest(e, "192.0.2.30:1", "username", "alice", "password", "wrong"), 400, CodeInvalidGrant)
	}
	locked := pwRequest(e, "192.0.2.30:1", "username", "alice", "password", "alice-pw")
	checkError(t, locked, http.StatusTooManyRequests, CodeInvalidGrant)
	if ra, err := strconv.Atoi(locked.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 30 {
		t.Errorf("locked answer: Retry-After %q, want 1..30 seconds", locked.Header().Get("Retry-After"))
	}
	if !strings.Contains(locked.Body.String(), "too many") {
		t.Errorf("locked answer %s", locked.Body.String())
	}
	checkToken(t, pwRequest(e, "192.0.2.30:1", "username", "bob", "password", "bob-pw"))
	// From another address alice is not locked yet (3 of 5 for the name).
	checkToken(t, pwRequest(e, "192.0.2.31:1", "username", "alice", "password", "alice-pw"))
	// Five failures from five addresses lock the name everywhere.
	for i := range 5 {
		checkError(t, pwRequest(e, fmt.Sprintf("192.0.2.%d:1", 50+i), "username", "alice", "password", "wrong"), 400, CodeInvalidGrant)
	}
	checkError(t, pwRequest(e, "192.0.2.60:1", "username", "alice", "password", "alice-pw"), http.StatusTooManyRequests, CodeInvalidGrant)
	// Unknown users are throttled the same way, so a lock reveals nothing.
	for range 3 {
		checkError(t, pwRequest(e, "192.0.2.40:1", "username", "ghost", "password", "x"), 400, CodeInvalidGrant)
	}
	if w := pwRequest(e, "192.0.2.40:1", "username", "ghost", "password", "x"); w.Code != http.StatusTooManyRequests {
		t.Errorf("unknown user not throttled: %d %s", w.Code, w.Body.String())
	}
}

// RFC 6749 §10.3: neither passwords nor tokens reach the logs, even at debug.
func TestPasswordGrantLogs(t *testing.T) {
	t.Parallel()
	logger, logs := observedLogger()
	e := newEngine(t, withROPC(), withLogger(logger))
	m := checkToken(t, pwRequest(e, "192.0.2.50:1", "username", "alice", "password", "alice-pw"))
	pwRequest(e, "192.0.2.50:1", "username", "alice", "password", "wrong-pw-secret")
	for _, entry := range logs.All() {
		text := entry.Message
		for _, f := range entry.Context {
			text += " " + f.String
		}
		for _, secret := range []string{"alice-pw", "wrong-pw-secret", pwSecret, m["access_token"].(string), m["refresh_token"].(string)} {
			if strings.Contains(text, secret) {
				t.Errorf("log entry %q contains a secret", text)
			}
		}
	}
	if logs.Len() == 0 {
		t.Error("no debug log at all: the test checks nothing")
	}
}
