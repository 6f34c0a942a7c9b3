package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestAuditLinesInCaddyLog runs a real Caddy whose global log block
// selects the audit logger as docs/audit.md shows (`include oauth.audit`),
// causes a refresh-token reuse, a failed sign-in and a lockout, and finds
// their lines in the file Caddy wrote: the documented messages, levels
// and fields, and none of the passwords, tokens or secrets used.
func TestAuditLinesInCaddyLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "audit.log")
	base := signinCaddyfile(t, t.TempDir())
	cfg := strings.Replace(base, "\toauth {\n", "\tlog audit {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t\tinclude oauth.audit\n\t}\n"+
		"\toauth {\n\t\tlogin_max_failures 2\n", 1)
	if cfg == base {
		t.Fatal("the log block was not inserted")
	}
	startCaddy(t, cfg)

	// A refresh token presented after it was rotated.
	verifier := oauth2.GenerateVerifier()
	code := codeFor(t, oauth2.S256ChallengeFromVerifier(verifier))
	post := func(form url.Values) (int, map[string]any) {
		req := newRequest(t, http.MethodPost, signinIssuer+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("trusted-app", "trusted-secret")
		resp, body := httpDo(t, req)
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		return resp.StatusCode, m
	}
	status, tok := post(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1:7/callback"},
		"code_verifier": {verifier}})
	rt, _ := tok["refresh_token"].(string)
	at, _ := tok["access_token"].(string)
	if status != http.StatusOK || rt == "" {
		t.Fatalf("redeeming the code: %d %v", status, tok)
	}
	status, tok2 := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	rt2, _ := tok2["refresh_token"].(string)
	if status != http.StatusOK || rt2 == "" {
		t.Fatalf("refreshing: %d %v", status, tok2)
	}
	if status, m := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reusing the rotated refresh token: %d %v", status, m)
	}
	_, claims := jwtParts(t, at)

	// Two wrong passwords at the login page lock alice from this address
	// (login_max_failures 2); the third attempt is refused unchecked.
	wrong := []string{"wrong-pw-Audit-1", "wrong-pw-Audit-2", "alice-password"}
	for i, pw := range wrong {
		page := loginAttempt(t, "alice", pw)
		want := "wrong"
		if i == 2 {
			want = "too many"
		}
		if !strings.Contains(strings.ToLower(page), want) {
			t.Fatalf("attempt %d: the page does not say %q:\n%.600s", i+1, want, page)
		}
	}

	want := map[string]struct {
		level  string
		fields map[string]any
	}{
		"refresh token reuse detected; grant revoked": {"warn", map[string]any{"client_id": "trusted-app", "subject": "alice", "grant_id": claims["gid"]}},
		"sign-in failed":              {"info", map[string]any{"user": "alice", "client_ip": "127.0.0.1", "client_id": "trusted-app", "via": "login_page"}},
		"sign-in locked out":          {"warn", map[string]any{"user": "alice", "client_ip": "127.0.0.1", "lock": "user_and_address"}},
		"sign-in refused: locked out": {"info", map[string]any{"user": "alice", "client_ip": "127.0.0.1"}},
	}
	var raw []byte
	found := map[string]map[string]any{}
	for deadline := time.Now().Add(5 * time.Second); len(found) < len(want) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		raw, _ = os.ReadFile(logFile)
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("the audit log has a line that is not JSON: %s", sc.Text())
			}
			if line["logger"] != "oauth.audit" {
				t.Fatalf("the audit log has a line of logger %v: include oauth.audit let it through: %s", line["logger"], sc.Text())
			}
			if msg, _ := line["msg"].(string); want[msg].level != "" {
				found[msg] = line
			}
		}
	}
	for msg, w := range want {
		line, ok := found[msg]
		if !ok {
			t.Errorf("no audit line %q in Caddy's log:\n%s", msg, raw)
			continue
		}
		if line["level"] != w.level {
			t.Errorf("%q at level %v, want %s", msg, line["level"], w.level)
		}
		for k, v := range w.fields {
			if fmt.Sprint(line[k]) != fmt.Sprint(v) {
				t.Errorf("%q: %s = %v, want %v", msg, k, line[k], v)
			}
		}
	}
	if n := strings.Count(string(raw), `"sign-in failed"`); n != 2 {
		t.Errorf("%d failed sign-in lines, want 2", n)
	}
	// The same events are counted at Caddy's /metrics.
	resp, metrics := httpDo(t, newRequest(t, http.MethodGet, "http://"+adminAddr+"/metrics", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{`caddy_oauth_signins_total{result="success"}`, `caddy_oauth_signins_total{result="failure"}`,
		`caddy_oauth_signins_total{result="locked"}`, `caddy_oauth_refresh_token_reuse_total`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range append(wrong, "trusted-secret", rt, rt2, at, code, verifier) {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the audit log contains a secret (%.8s…)", secret)
		}
	}
}

// loginAttempt starts a code request for trusted-app in a fresh browser
// session and posts the login form; it returns the page answered.
func loginAttempt(t *testing.T, user, pw string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {"trusted-app"}, "redirect_uri": {"http://127.0.0.1:7/callback"}, "response_type": {"code"},
		"scope": {"openid"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}, "state": {"st"}}
	resp, err := c.Get(signinIssuer + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := formFields(t, string(page))
	form.Set("username", user)
	form.Set("password", pw)
	resp, err = c.PostForm(signinIssuer+"/oauth/authorize/login", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ = io.ReadAll(resp.Body)
	return string(page)
}
