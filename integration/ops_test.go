package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Ports of the operations tests (19400-19499):
//
//	19400  authorization server, issuer http://localhost:19400
//	19401  protected API: oauth_protect + reverse_proxy to a recording upstream
const (
	opsIssuer = "http://localhost:19400"
	opsAPI    = "http://localhost:19401"
)

// opsCaddyfile: two client_credentials clients of the API, a resource
// server for it, and one for another audience. %[1]s is the storage file,
// %[2]s the upstream.
const opsCaddyfile = `{
	skip_install_trust
	admin localhost:2999
	http_port 19480
	https_port 19443
	grace_period 1ns
	oauth {
		issuer http://localhost:19400
		storage_path %[1]s
		client billing-service {
			secret billing-secret-0123456789abcdef
			grant_types client_credentials
			scopes invoices:read
			audience http://localhost:19401
		}
		client other-service {
			secret other-secret-0123456789abcdef
			grant_types client_credentials
			scopes invoices:read
			audience http://localhost:19401
		}
		client opaque-service {
			secret opaque-secret-0123456789abcdef
			grant_types client_credentials
			scopes invoices:read
			audience http://localhost:19401
			access_token_format opaque
		}
		client api-gateway {
			secret api-secret-0123456789abcdef
			grant_types client_credentials
			audience http://localhost:19401
			resource_server
		}
		client elsewhere {
			secret elsewhere-secret-0123456789abcdef
			grant_types client_credentials
			audience http://localhost:19499
			resource_server
		}
	}
}

http://:19400 {
	bind 127.0.0.1
	oauth_server
}

http://localhost:19401 {
	bind 127.0.0.1
	oauth_protect {
		scopes invoices:read
		audience http://localhost:19401
	}
	reverse_proxy %[2]s
}
`

var opsSecrets = map[string]string{
	"billing-service": "billing-secret-0123456789abcdef",
	"other-service":   "other-secret-0123456789abcdef",
	"opaque-service":  "opaque-secret-0123456789abcdef",
	"api-gateway":     "api-secret-0123456789abcdef",
	"elsewhere":       "elsewhere-secret-0123456789abcdef",
}

func startOps(t *testing.T) *upstream {
	t.Helper()
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(opsCaddyfile, storagePath(t), up.addr()))
	return up
}

// opsToken gets a client_credentials access token from the ops server.
func opsToken(t *testing.T, id string) string {
	t.Helper()
	cfg := clientcredentials.Config{ClientID: id, ClientSecret: opsSecrets[id], TokenURL: opsIssuer + "/oauth/token",
		AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cfg.Token(clientContext(t))
	if err != nil {
		t.Fatalf("token for %s: %v", id, err)
	}
	return tok.AccessToken
}

// opsPost sends a form to an ops-server endpoint as the client, with
// HTTP Basic, and returns the status and the body.
func opsPost(t *testing.T, path, id string, form url.Values) (int, string) {
	t.Helper()
	req := newRequest(t, http.MethodPost, opsIssuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(opsSecrets[id]))
	}
	resp, body := httpDo(t, req)
	return resp.StatusCode, body
}

func opsIntrospect(t *testing.T, id, tok string) map[string]any {
	t.Helper()
	status, body := opsPost(t, "/oauth/introspect", id, url.Values{"token": {tok}})
	var m map[string]any
	if status != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("introspect as %s: %d %s", id, status, body)
	}
	return m
}

// TestRevokeAtTheGate: a revoked access token is refused by oauth_protect
// on the very next request (RFC 7009 §2, RFC 7662 §2.2).
func TestRevokeAtTheGate(t *testing.T) {
	up := startOps(t)
	_, meta := getJSON(t, opsIssuer+"/.well-known/oauth-authorization-server")
	if meta["revocation_endpoint"] != opsIssuer+"/oauth/revoke" || meta["introspection_endpoint"] != opsIssuer+"/oauth/introspect" {
		t.Fatalf("discovery: %v", meta)
	}
	tok := opsToken(t, "billing-service")
	bearer := "Bearer " + tok
	if resp, body := callAPI(t, opsAPI, bearer); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh token refused: %d %s", resp.StatusCode, body)
	}
	if m := opsIntrospect(t, "api-gateway", tok); m["active"] != true || m["client_id"] != "billing-service" || m["aud"] != opsAPI {
		t.Fatalf("resource server's introspection: %v", m)
	}
	if m := opsIntrospect(t, "elsewhere", tok); len(m) != 1 || m["active"] != false {
		t.Fatalf("another audience's resource server sees the token: %v", m)
	}
	if status, body := opsPost(t, "/oauth/introspect", "", url.Values{"token": {tok}}); status != http.StatusUnauthorized {
		t.Fatalf("introspection without credentials: %d %s", status, body)
	}

	// Another client may not revoke it.
	if status, body := opsPost(t, "/oauth/revoke", "other-service", url.Values{"token": {tok}}); status != http.StatusBadRequest ||
		!strings.Contains(body, "unauthorized_client") {
		t.Fatalf("other client's revocation: %d %s", status, body)
	}
	if resp, _ := callAPI(t, opsAPI, bearer); resp.StatusCode != http.StatusOK {
		t.Fatalf("token refused after a refused revocation: %d", resp.StatusCode)
	}

	seen := up.count()
	if status, body := opsPost(t, "/oauth/revoke", "billing-service", url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	resp, _ := callAPI(t, opsAPI, bearer)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(wwwAuth(t, resp), `error="invalid_token"`) {
		t.Fatalf("revoked token at the gate: %d %v", resp.StatusCode, resp.Header)
	}
	if up.count() != seen {
		t.Fatalf("a revoked token reached the upstream")
	}
	if m := opsIntrospect(t, "api-gateway", tok); len(m) != 1 || m["active"] != false {
		t.Fatalf("revoked token introspects as %v", m)
	}
	if status, _ := opsPost(t, "/oauth/revoke", "billing-service", url.Values{"token": {"garbage"}}); status != http.StatusOK {
		t.Fatalf("garbage revocation: %d", status)
	}
	// A fresh token of the same client still passes.
	if resp, _ := callAPI(t, opsAPI, "Bearer "+opsToken(t, "billing-service")); resp.StatusCode != http.StatusOK {
		t.Fatalf("new token refused: %d", resp.StatusCode)
	}
}

// opsCLI runs `caddy oauth <args>` in this process, as the registered
// command, and returns what it printed.
func opsCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd, ok := caddycmd.Commands()["oauth"]
	if !ok {
		t.Fatal("the oauth command is not registered")
	}
	root := &cobra.Command{Use: "oauth", SilenceUsage: true, SilenceErrors: true}
	cmd.CobraFunc(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestKeyRotationLive: rotating with the CLI while a client keeps working:
// the old token still passes, new tokens carry the new kid, the JWKS has
// both (RFC 7517 §5).
func TestKeyRotationLive(t *testing.T) {
	startOps(t)
	before := opsToken(t, "billing-service")
	h, _ := jwtParts(t, before)
	oldKid := h["kid"].(string)
	out, err := opsCLI(t, "keys", "rotate", "--address", adminAddr)
	if err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, out)
	}
	newKid, ok := strings.CutPrefix(strings.TrimSpace(out), "new signing key ")
	if !ok || newKid == oldKid {
		t.Fatalf("keys rotate printed %q", out)
	}
	if resp, body := callAPI(t, opsAPI, "Bearer "+before); resp.StatusCode != http.StatusOK {
		t.Fatalf("a token of the old key is refused after rotation: %d %s", resp.StatusCode, body)
	}
	after := opsToken(t, "billing-service")
	if h, _ := jwtParts(t, after); h["kid"] != newKid {
		t.Fatalf("new token signed by %v, want %s", h["kid"], newKid)
	}
	if resp, _ := callAPI(t, opsAPI, "Bearer "+after); resp.StatusCode != http.StatusOK {
		t.Fatalf("a token of the new key is refused: %d", resp.StatusCode)
	}
	_, set := getJSON(t, opsIssuer+"/oauth/jwks")
	kids := fmt.Sprint(set["keys"])
	if !strings.Contains(kids, oldKid) || !strings.Contains(kids, newKid) {
		t.Fatalf("JWKS after rotation: %s", kids)
	}
	out, err = opsCLI(t, "keys", "list", "--address", adminAddr)
	if err != nil || !strings.Contains(out, newKid+"\tES256") || !strings.Contains(out, "\tsigns") || !strings.Contains(out, "retires ") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	// No server at the address: a clear error.
	if out, err := opsCLI(t, "keys", "list", "--address", "localhost:19499"); err == nil || !strings.HasPrefix(out, "error: no Caddy server answers at localhost:19499") {
		t.Fatalf("keys list without a server: %v %s", err, out)
	}
}

// TestClientsFromCLI: an operator adds a client at run time, the client
// gets tokens at once; config clients cannot be removed; revoking a client
// refuses its tokens at the gate; removing it ends its access.
func TestClientsFromCLI(t *testing.T) {
	startOps(t)
	out, err := opsCLI(t, "client", "add", "rt-svc", "--grant-types", "client_credentials", "--scopes", "invoices:read",
		"--audience", opsAPI, "--address", adminAddr)
	if err != nil {
		t.Fatalf("client add: %v\n%s", err, out)
	}
	_, rest, _ := strings.Cut(out, "client_secret: ")
	secret, _, _ := strings.Cut(rest, "\n")
	if len(secret) < 43 {
		t.Fatalf("client add printed %q", out)
	}
	opsSecrets["rt-svc"] = secret
	defer delete(opsSecrets, "rt-svc")
	tok := opsToken(t, "rt-svc")
	if resp, body := callAPI(t, opsAPI, "Bearer "+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("run-time client's token refused: %d %s", resp.StatusCode, body)
	}
	out, err = opsCLI(t, "client", "list", "--address", adminAddr)
	if err != nil || !strings.Contains(out, "rt-svc\tstorage\tclient_credentials") || !strings.Contains(out, "billing-service\tconfig") {
		t.Fatalf("client list: %v\n%s", err, out)
	}
	// The admin API's refusal is one readable line, not escaped JSON.
	if out, err := opsCLI(t, "client", "remove", "billing-service", "--address", adminAddr); err == nil ||
		out != "error: client \"billing-service\" is defined in the Caddy config; change it there\n" {
		t.Fatalf("removing a config client: %v %q", err, out)
	}
	// A GET on a POST-only admin route: 405 with Allow.
	if resp, err := http.Get("http://" + adminAddr + "/oauth/revoke"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /oauth/revoke: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if out, err := opsCLI(t, "client", "add", "rt-svc", "--grant-types", "client_credentials", "--address", adminAddr); err == nil || out != "error: client \"rt-svc\" already exists\n" {
		t.Fatalf("adding a client twice: %v %s", err, out)
	}

	// Revoke everything rt-svc holds: its token is refused at the gate.
	if out, err := opsCLI(t, "revoke", "--client", "rt-svc", "--address", adminAddr); err != nil || !strings.Contains(out, "revoked 0 grant(s)") {
		t.Fatalf("revoke --client: %v %s", err, out)
	}
	if resp, _ := callAPI(t, opsAPI, "Bearer "+tok); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token of a revoked client: %d", resp.StatusCode)
	}
	// Tokens issued in a later second pass again.
	time.Sleep(1100 * time.Millisecond)
	if resp, _ := callAPI(t, opsAPI, "Bearer "+opsToken(t, "rt-svc")); resp.StatusCode != http.StatusOK {
		t.Fatalf("a new token after revocation: %d", resp.StatusCode)
	}
	if out, err := opsCLI(t, "revoke", "--address", adminAddr); err == nil {
		t.Fatalf("revoke without --subject or --client: %s", out)
	}

	if out, err := opsCLI(t, "client", "remove", "rt-svc", "--address", adminAddr); err != nil {
		t.Fatalf("client remove: %v %s", err, out)
	}
	cfg := clientcredentials.Config{ClientID: "rt-svc", ClientSecret: secret, TokenURL: opsIssuer + "/oauth/token"}
	if _, err := cfg.Token(clientContext(t)); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("a removed client got a token: %v", err)
	}
}

// TestMetricsAndLogs runs a whole operations flow with debug logging to a
// file, then checks the admin /metrics endpoint counts it and that no
// secret, code or token used appears anywhere in the logs.
func TestMetricsAndLogs(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	up := newUpstream(t)
	cfg := fmt.Sprintf(opsCaddyfile, storagePath(t), up.addr())
	cfg = strings.Replace(cfg, "grace_period 1ns", "grace_period 1ns\n\tlog {\n\t\toutput file "+logFile+"\n\t\tlevel DEBUG\n\t}", 1)
	startCaddy(t, cfg)

	secrets := []string{}
	for _, s := range opsSecrets {
		secrets = append(secrets, s)
	}
	tok := opsToken(t, "billing-service")
	secrets = append(secrets, tok)
	callAPI(t, opsAPI, "Bearer "+tok)     // allowed
	callAPI(t, opsAPI, "")                // no token
	callAPI(t, opsAPI, "Bearer "+tok+"x") // invalid
	opsPost(t, "/oauth/token", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"billing-service"},
		"client_secret": {"wrong-secret-0123456789"}}) // invalid_client
	secrets = append(secrets, "wrong-secret-0123456789")
	opsIntrospect(t, "api-gateway", tok)
	opsPost(t, "/oauth/revoke", "billing-service", url.Values{"token": {tok}})
	out, err := opsCLI(t, "client", "add", "log-svc", "--grant-types", "client_credentials", "--address", adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(out, "client_secret: ")
	secret, _, _ := strings.Cut(rest, "\n")
	secrets = append(secrets, secret)

	resp, body := httpDo(t, newRequest(t, http.MethodGet, "http://"+adminAddr+"/metrics", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`caddy_oauth_tokens_issued_total{client_id="billing-service",grant_type="client_credentials"}`,
		`caddy_oauth_token_errors_total{error="invalid_client"}`,
		`caddy_oauth_gate_decisions_total{result="allowed"}`,
		`caddy_oauth_gate_decisions_total{result="no_token"}`,
		`caddy_oauth_gate_decisions_total{result="invalid_token"}`,
		`caddy_oauth_token_request_duration_seconds_count`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "token issued") || !strings.Contains(string(logs), "access token refused") {
		t.Fatalf("the debug log does not have the engine's events; is it captured?\n%s", logs)
	}
	// Engine lines carry the request id that the HTTP server uses too.
	issued := 0
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, `"msg":"token issued"`) {
			issued++
			if !regexp.MustCompile(`"request_id":"[0-9a-f-]{36}"`).MatchString(line) {
				t.Errorf("a token line has no request id: %s", line)
			}
		}
	}
	if issued == 0 {
		t.Error("no token issued line in the debug log")
	}
	for _, s := range secrets {
		// The JWT's payload alone would betray the token too.
		for _, needle := range append([]string{s}, strings.Split(s, ".")...) {
			if len(needle) >= 16 && strings.Contains(string(logs), needle) {
				t.Errorf("the logs contain a secret or token: %.12s…", needle)
			}
		}
	}
}

// TestOpaqueTokenAtTheGate: an opaque access token passes oauth_protect,
// introspects for the API's resource server, and is refused at once after
// revocation.
func TestOpaqueTokenAtTheGate(t *testing.T) {
	up := startOps(t)
	tok := opsToken(t, "opaque-service")
	if !strings.HasPrefix(tok, "oat_") || strings.Contains(tok, ".") {
		t.Fatalf("not an opaque token: %q", tok)
	}
	if resp, body := callAPI(t, opsAPI, "Bearer "+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("opaque token refused: %d %s", resp.StatusCode, body)
	}
	if m := opsIntrospect(t, "api-gateway", tok); m["active"] != true || m["client_id"] != "opaque-service" {
		t.Fatalf("introspection: %v", m)
	}
	if status, body := opsPost(t, "/oauth/revoke", "opaque-service", url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	seen := up.count()
	if resp, _ := callAPI(t, opsAPI, "Bearer "+tok); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked opaque token: %d", resp.StatusCode)
	}
	if up.count() != seen {
		t.Fatalf("a revoked opaque token reached the upstream")
	}
}
