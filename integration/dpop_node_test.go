package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Ports of the DPoP client test: 19560 the authorization server, issuer
// http://localhost:19560.
const dpopIssuer = "http://localhost:19560"

// dpopNodeCaddyfile: nonces on, a client that must use DPoP, and a
// public client with alice to sign in.
func dpopNodeCaddyfile(t *testing.T, path string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "{\n\tskip_install_trust\n\tadmin localhost:2999\n\thttp_port 19080\n\thttps_port 19443\n\tgrace_period 1ns\n" +
		"\toauth {\n\t\tissuer " + dpopIssuer + "\n\t\tstorage_path " + path + "\n\t\tdpop_nonce\n" +
		"\t\tclient dpop-svc {\n\t\t\tsecret dpop-secret-0123456789abcdef\n\t\t\tgrant_types client_credentials\n" +
		"\t\t\tscopes read\n\t\t\tdpop_bound_access_tokens\n\t\t\taudience " + dpopResource + "\n\t\t}\n" +
		"\t\tclient dpop-spa {\n\t\t\tpublic\n\t\t\ttrusted\n\t\t\tredirect_uri http://127.0.0.1/callback\n" +
		"\t\t\tgrant_types authorization_code refresh_token\n\t\t\tscopes read\n\t\t}\n" +
		"\t\tuser alice {\n\t\t\tpassword_hash " + string(hash) + "\n\t\t}\n\t}\n}\n\n" +
		"http://localhost:19560 {\n\tbind 127.0.0.1\n\toauth_server\n}\n\n" +
		// The resource echoes what reached it: the client, and any
		// Authorization or DPoP header (none should).
		dpopResource + " {\n\tbind 127.0.0.1\n\toauth_protect {\n\t\taudience " + dpopResource + "\n\t\tscopes read\n\t}\n" +
		"\trespond \"client={oauth.client_id} authz=[{http.request.header.Authorization}] dpop=[{http.request.header.DPoP}]\"\n}\n"
}

// dpopResource is the resource behind oauth_protect (DPoP at the gate).
const dpopResource = "http://localhost:19561"

// cnfJKT is the cnf.jkt claim of a JWT access token.
func cnfJKT(t *testing.T, at string) string {
	t.Helper()
	parts := strings.Split(at, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Cnf map[string]string `json:"cnf"`
	}
	_ = json.Unmarshal(payload, &claims)
	return claims.Cnf["jkt"]
}

// nodeDialogue runs a client script of nodeClientDir that prints a JSON
// line (decoded into first), reads the redirect URL with the code from
// stdin (what browser returns, once it has read first) and prints its
// result (decoded into res).
func nodeDialogue(t *testing.T, node string, first any, browser func() string, res any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = nodeClientDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(stdout)
	if err := dec.Decode(first); err != nil {
		t.Fatalf("the client's first line: %v\n%s", err, stderr.String())
	}
	if _, err := io.WriteString(stdin, browser()+"\n"); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(res); err != nil {
		t.Fatalf("the client's result: %v\n%s", err, stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the client: %v\n%s", err, stderr.String())
	}
}

// nodeClientDir is the npm project of the third-party client.
const nodeClientDir = "testdata/dpop-node"

// nodeClient installs the npm client (npm ci, from its lock file) when
// it is not installed yet.
func nodeClient(t *testing.T) string {
	t.Helper()
	return nodeProject(t, nodeClientDir, "oauth4webapi")
}

// nodeProject finds node and installs the npm project in dir (npm ci,
// from its lock file) unless its package pkg is there already.
func nodeProject(t *testing.T, dir, pkg string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: the third-party client tests run %s on Node.js 20+ (apt-get install nodejs npm, or `make test`)", pkg)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(pkg))); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return node
}

// TestDPoPThirdPartyClient: oauth4webapi, a client library we did not
// write, gets a DPoP-bound token from a real Caddy with nonces on: its
// first request is refused with use_dpop_nonce, it retries with the
// server's nonce, and the token it gets is bound (cnf.jkt) to its key, as
// introspection confirms. Without a proof the same client is refused.
func TestDPoPThirdPartyClient(t *testing.T) {
	node := nodeClient(t)
	startCaddy(t, dpopNodeCaddyfile(t, storagePath(t)))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", dpopIssuer, "dpop-svc", "dpop-secret-0123456789abcdef")
	cmd.Dir = nodeClientDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the oauth4webapi client failed: %v\n%s", err, stderr.String())
	}
	var res struct {
		NonceRetries  int      `json:"nonceRetries"`
		DPoPAlgs      []string `json:"dpopAlgs"`
		TokenType     string   `json:"tokenType"`
		AccessToken   string   `json:"accessToken"`
		JKT           string   `json:"jkt"`
		Introspection struct {
			Active    bool              `json:"active"`
			TokenType string            `json:"token_type"`
			Cnf       map[string]string `json:"cnf"`
		} `json:"introspection"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if res.NonceRetries != 1 {
		t.Errorf("nonce retries = %d, want 1 (the first proof has no nonce)", res.NonceRetries)
	}
	if len(res.DPoPAlgs) == 0 {
		t.Errorf("the client saw no dpop_signing_alg_values_supported")
	}
	if !strings.EqualFold(res.TokenType, "DPoP") {
		t.Errorf("token_type = %q, want DPoP", res.TokenType)
	}
	if jkt := cnfJKT(t, res.AccessToken); res.JKT == "" || jkt != res.JKT {
		t.Errorf("cnf.jkt = %q, want the client's key thumbprint %q", jkt, res.JKT)
	}
	if !res.Introspection.Active || res.Introspection.TokenType != "DPoP" || res.Introspection.Cnf["jkt"] != res.JKT {
		t.Errorf("introspection = %+v", res.Introspection)
	}

	// The same client without a proof: refused, it must use DPoP.
	req, _ := http.NewRequest(http.MethodPost, dpopIssuer+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("dpop-svc", "dpop-secret-0123456789abcdef")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var e2 struct{ Error string }
	_ = json.NewDecoder(resp2.Body).Decode(&e2)
	if resp2.StatusCode != http.StatusBadRequest || e2.Error != "invalid_dpop_proof" {
		t.Errorf("a token request without a proof: %d %q", resp2.StatusCode, e2.Error)
	}
}

// TestDPoPThirdPartyPublicClient: oauth4webapi as a public client binds
// its code to its key (dpop_jkt), redeems it and refreshes with proofs of
// that key, each after one use_dpop_nonce; both tokens are bound to the
// key; the rotated refresh token is refused with another key (RFC 9449
// §5, DPOP-16, DPOP-17).
func TestDPoPThirdPartyPublicClient(t *testing.T) {
	node := nodeClient(t)
	startCaddy(t, dpopNodeCaddyfile(t, storagePath(t)))

	var start struct{ Challenge, State, JKT string }
	var res struct {
		JKT                string `json:"jkt"`
		NonceRetries       int    `json:"nonceRetries"`
		CodeTokenType      string `json:"codeTokenType"`
		CodeAccessToken    string `json:"codeAccessToken"`
		RefreshTokenType   string `json:"refreshTokenType"`
		RefreshAccessToken string `json:"refreshAccessToken"`
		OtherKeyError      string `json:"otherKeyError"`
	}
	nodeDialogue(t, node, &start, func() string {
		q := url.Values{"client_id": {"dpop-spa"}, "redirect_uri": {"http://127.0.0.1/callback"}, "response_type": {"code"},
			"scope": {"read"}, "code_challenge": {start.Challenge}, "code_challenge_method": {"S256"}, "state": {start.State},
			"dpop_jkt": {start.JKT}}
		resp, _ := signInAlice(t, dpopIssuer, dpopIssuer+"/oauth/authorize?"+q.Encode())
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.Contains(loc, "code=") {
			t.Fatalf("sign-in: %d %q", resp.StatusCode, loc)
		}
		return loc
	}, &res, "public.mjs", dpopIssuer, "dpop-spa", "http://127.0.0.1/callback")
	// One nonce retry for the code; the refresh reuses the nonce the
	// code's answer carried.
	if res.NonceRetries < 1 {
		t.Errorf("nonce retries = %d, want at least 1", res.NonceRetries)
	}
	for name, tt := range map[string]string{"code": res.CodeTokenType, "refresh": res.RefreshTokenType} {
		if !strings.EqualFold(tt, "DPoP") {
			t.Errorf("%s: token_type %q, want DPoP", name, tt)
		}
	}
	for name, at := range map[string]string{"code": res.CodeAccessToken, "refresh": res.RefreshAccessToken} {
		if jkt := cnfJKT(t, at); jkt != start.JKT {
			t.Errorf("%s: cnf.jkt = %q, want %q", name, jkt, start.JKT)
		}
	}
	if res.OtherKeyError != "invalid_grant" {
		t.Errorf("refresh with another key: %q, want invalid_grant", res.OtherKeyError)
	}
}

// TestDPoPThirdPartyResource: oauth4webapi calls a resource behind
// oauth_protect with its DPoP-bound token and protectedResourceRequest
// (RFC 9449 §7): the gate's first answer is 401 with a DPoP challenge
// error="use_dpop_nonce" and a DPoP-Nonce, the client retries with it
// and gets through; the resource sees neither the token nor the proof.
// The same token without the key is refused: as Bearer (no downgrade),
// and as DPoP without a proof.
func TestDPoPThirdPartyResource(t *testing.T) {
	node := nodeClient(t)
	startCaddy(t, dpopNodeCaddyfile(t, storagePath(t)))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "resource.mjs", dpopIssuer, "dpop-svc", "dpop-secret-0123456789abcdef", dpopResource+"/orders?page=1")
	cmd.Dir = nodeClientDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the oauth4webapi client failed: %v\n%s", err, stderr.String())
	}
	var res struct {
		TokenNonceRetries    int    `json:"tokenNonceRetries"`
		ResourceNonceRetries int    `json:"resourceNonceRetries"`
		TokenType            string `json:"tokenType"`
		AccessToken          string `json:"accessToken"`
		Status               int    `json:"status"`
		Body                 string `json:"body"`
		AgainStatus          int    `json:"againStatus"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if !strings.EqualFold(res.TokenType, "DPoP") || res.TokenNonceRetries != 1 {
		t.Errorf("token: type %q after %d nonce retries, want DPoP after 1", res.TokenType, res.TokenNonceRetries)
	}
	if res.ResourceNonceRetries != 1 {
		t.Errorf("resource nonce retries = %d, want 1 (the gate is another origin, whose nonce the client learns from its 401)", res.ResourceNonceRetries)
	}
	if res.Status != http.StatusOK || res.Body != "client=dpop-svc authz=[] dpop=[]" {
		t.Errorf("resource: %d %q, want 200 with the client and no Authorization or DPoP header upstream", res.Status, res.Body)
	}
	if res.AgainStatus != http.StatusOK {
		t.Errorf("a second call with the kept nonce: %d", res.AgainStatus)
	}

	// The token without its key.
	for name, authz := range map[string]string{"as Bearer": "Bearer " + res.AccessToken, "as DPoP without a proof": "DPoP " + res.AccessToken} {
		req, _ := http.NewRequest(http.MethodGet, dpopResource+"/orders", nil)
		req.Header.Set("Authorization", authz)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, `DPoP realm="`+dpopResource+`", algs="`) {
			t.Errorf("the stolen token %s: %d %q", name, resp.StatusCode, ch)
		}
	}
}
