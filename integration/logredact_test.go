package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"golang.org/x/oauth2"
)

// TestAccessLogRedaction runs the access log of examples/log-redact.caddyfile
// (the one the README documents) in a real Caddy, signs alice in, redeems
// the code, signs out with the ID token both as a GET id_token_hint and as
// a POST, and visits a client callback URL with the code on the same
// site: the log has a line for each, and neither the code nor the ID
// token (nor a part of it) appears in it.
func TestAccessLogRedaction(t *testing.T) {
	snippet, err := os.ReadFile(filepath.Join("..", "examples", "log-redact.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	// As documented: imported into the site block as it is.
	abs, err := filepath.Abs(filepath.Join("..", "examples", "log-redact.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("http://localhost:19280 {\n\timport "+abs+"\n\toauth_server\n}\n"), nil)
	if err != nil || !strings.Contains(string(adapted), `"id_token_hint"`) {
		t.Fatalf("importing the snippet into a site: %v\n%s", err, adapted)
	}
	logFile := filepath.Join(t.TempDir(), "access.log")
	logBlock := strings.Replace(string(snippet), "log {", "log {\n\t\toutput file "+logFile, 1)
	cfg := strings.Replace(signinCaddyfile(t, t.TempDir()), "http://localhost:19280 {\n", "http://localhost:19280 {\n"+logBlock+"\n", 1)
	if cfg == signinCaddyfile(t, t.TempDir()) || !strings.Contains(cfg, "format filter") {
		t.Fatal("the log block was not inserted into the site")
	}
	startCaddy(t, cfg)

	verifier := oauth2.GenerateVerifier()
	code := codeFor(t, oauth2.S256ChallengeFromVerifier(verifier))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1:7/callback"},
		"code_verifier": {verifier}}
	req := newRequest(t, http.MethodPost, signinIssuer+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("trusted-app", "trusted-secret")
	resp, body := httpDo(t, req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id_token") {
		t.Fatalf("redeeming the code: %d %s", resp.StatusCode, body)
	}
	var tok struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.IDToken == "" {
		t.Fatalf("token answer %s: %v", body, err)
	}
	idToken := tok.IDToken

	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) {
		resp, err := noRedirect.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get(signinIssuer + "/oauth/logout?" + url.Values{"id_token_hint": {idToken}}.Encode())
	resp, err = noRedirect.PostForm(signinIssuer+"/oauth/logout", url.Values{"id_token_hint": {idToken}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "signed out") {
		t.Fatalf("POST logout with id_token_hint in the body: %d %.200s", resp.StatusCode, page)
	}
	get(signinIssuer + "/callback?" + url.Values{"code": {code}, "state": {"st"}}.Encode())
	// Secrets a client puts in a query string: the server refuses them
	// there, but Caddy logs the request anyway, URI and Referer.
	querySecrets := url.Values{}
	for _, p := range []string{"token", "refresh_token", "password", "assertion", "client_assertion",
		"subject_token", "actor_token", "client_secret", "access_token", "request_uri"} {
		querySecrets.Set(p, "query-secret-"+strings.ReplaceAll(p, "_", "-")+"-0123456789")
	}
	qreq := newRequest(t, http.MethodPost, signinIssuer+"/oauth/token?"+querySecrets.Encode(), strings.NewReader("grant_type=password"))
	qreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	qreq.Header.Set("Referer", "https://app.test/page?"+querySecrets.Encode())
	if resp, err := noRedirect.Do(qreq); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	var logs string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(logFile)
		logs = string(b)
		if strings.Count(logs, "/oauth/logout") >= 2 && strings.Contains(logs, "/callback") && strings.Contains(logs, "/oauth/token?") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{`"uri":"/oauth/authorize/login"`, `"uri":"/oauth/logout?id_token_hint=REDACTED"`,
		`"uri":"/callback?code=REDACTED&state=st"`, `code=REDACTED`, `refresh_token=REDACTED`, `subject_token=REDACTED`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the access log lacks %s: is it written, and redacted as documented?\n%s", want, logs)
		}
	}
	for p := range querySecrets {
		if v := querySecrets.Get(p); strings.Contains(logs, v) {
			t.Errorf("the access log contains the %s sent in a query string or Referer", p)
		}
	}
	for name, secret := range map[string]string{"the authorization code": code, "the ID token": idToken} {
		for _, part := range append([]string{secret}, strings.Split(secret, ".")...) {
			if len(part) >= 16 && strings.Contains(logs, part) {
				t.Errorf("the access log contains %s (%.12s…)", name, part)
			}
		}
	}
}
