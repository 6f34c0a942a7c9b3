package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"golang.org/x/crypto/bcrypt"
)

// Ports of the MCP test (19440-19449): 19440 the authorization server,
// issuer http://localhost:19440; 19441 the MCP site (oauth_protect +
// reverse_proxy); 19442/19444 http_port/https_port (no site listens on
// them); 19445 the example MCP server (examples/mcp) on loopback; 19446
// the MCP client's loopback redirect target.
const (
	mcpIssuer   = "http://localhost:19440"
	mcpResource = "http://localhost:19441/mcp"
	mcpUpstream = "127.0.0.1:19445"
	mcpCallback = "19446"
	mcpNodeDir  = "testdata/mcp-node"
)

// mcpCaddyfile is docs/mcp.md's Caddyfile on test ports: the
// authorization server on one site, the gate and the proxy to the MCP
// server on the other. No client is configured: MCP clients register
// themselves (open registration), limited to the MCP server's scope and
// audience.
func mcpCaddyfile(t *testing.T, storage string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19442
	https_port 19444
	skip_install_trust
	grace_period 1ns
	oauth {
		issuer %s
		storage_path %s
		registration {
			open
			scopes mcp:tools
			audience %s
		}
		user alice {
			password_hash %s
		}
	}
}

http://localhost:19440 {
	bind 127.0.0.1
	oauth_server
}

http://localhost:19441 {
	bind 127.0.0.1
	oauth_protect {
		audience %s
		scopes mcp:tools
		forward_header X-Forwarded-User sub
	}
	reverse_proxy %s {
		header_up Host {upstream_hostport}
	}
}
`, adminAddr, mcpIssuer, storage, mcpResource, hash, mcpResource, mcpUpstream)
}

// startMCPExample builds and runs examples/mcp (its own Go module) on
// mcpUpstream until the test ends.
func startMCPExample(t *testing.T) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcp-example")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "examples", "mcp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building examples/mcp: %v\n%s", err, out)
	}
	srv := exec.Command(bin, "-listen", mcpUpstream)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", mcpUpstream); err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the example MCP server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMCPTypeScriptSDK: the official MCP TypeScript SDK, a client we did
// not write, reaches an MCP server (the official Go SDK) behind
// oauth_protect as the MCP authorization specification has it: the 401
// names the protected resource metadata and the scope, the client
// discovers the metadata (path-inserted well-known URL) and the
// authorization server, registers itself there (RFC 7591; nothing is
// configured for it), runs the code flow with PKCE (S256) and
// `resource` while alice signs in and consents in a real headless
// Chromium (a registered client is never trusted: the consent page names
// it and its server-chosen id), gets a token whose aud is the MCP
// server's URI, and calls
// the tools through the gate, which forwards alice to the server.
func TestMCPTypeScriptSDK(t *testing.T) {
	node := nodeProject(t, mcpNodeDir, "@modelcontextprotocol/sdk")
	startMCPExample(t)
	startCaddy(t, mcpCaddyfile(t, storagePath(t)))
	wd := startBrowser(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", mcpResource, mcpCallback)
	cmd.Dir = mcpNodeDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	events := make(chan [2]string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			kind, rest, _ := strings.Cut(sc.Text(), " ")
			events <- [2]string{kind, rest}
		}
		close(events)
	}()
	var httpLog []string
	next := func(want string) string {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("the MCP client ended before %s; requests:\n%s\nstderr:\n%s", want, strings.Join(httpLog, "\n"), stderr.String())
				}
				switch ev[0] {
				case "HTTP":
					httpLog = append(httpLog, ev[1])
				case "ERROR":
					t.Fatalf("the MCP client failed: %s\nrequests:\n%s\nstderr:\n%s", ev[1], strings.Join(httpLog, "\n"), stderr.String())
				case want:
					return ev[1]
				}
			case <-ctx.Done():
				t.Fatalf("no %s from the MCP client; requests:\n%s", want, strings.Join(httpLog, "\n"))
			}
		}
	}

	// The SDK discovered everything from the 401, registered itself at
	// the registration_endpoint of the metadata and got a server-chosen
	// id for a public client, and asks to sign in.
	var reg struct {
		ClientID     string   `json:"client_id"`
		ClientName   string   `json:"client_name"`
		RedirectURIs []string `json:"redirect_uris"`
		AuthMethod   string   `json:"token_endpoint_auth_method"`
		Scope        string   `json:"scope"`
		Issuer       string   `json:"issuer"`
		IssuedAt     int64    `json:"client_id_issued_at"`
		HasSecret    bool     `json:"has_secret"`
	}
	if err := json.Unmarshal([]byte(next("REGISTERED")), &reg); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^reg_[A-Za-z0-9_-]{22}$`).MatchString(reg.ClientID) || reg.AuthMethod != "none" || reg.HasSecret ||
		reg.IssuedAt < time.Now().Add(-time.Minute).Unix() || reg.Scope != "mcp:tools" || reg.ClientName != "oauthgate MCP test" || reg.Issuer != mcpIssuer ||
		!slices.Equal(reg.RedirectURIs, []string{"http://127.0.0.1:" + mcpCallback + "/callback"}) {
		t.Fatalf("registration %+v, want a server-chosen reg_ id for a public client with scope mcp:tools", reg)
	}
	if !slices.Contains(httpLog, "POST "+mcpIssuer+"/oauth/register 201") {
		t.Errorf("the client did not register at %s/oauth/register; requests:\n%s", mcpIssuer, strings.Join(httpLog, "\n"))
	}
	authz, err := url.Parse(next("AUTHORIZE"))
	if err != nil {
		t.Fatal(err)
	}
	q := authz.Query()
	if !strings.HasPrefix(authz.String(), mcpIssuer+"/oauth/authorize?") || q.Get("client_id") != reg.ClientID ||
		q.Get("resource") != mcpResource || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("scope") != "mcp:tools" || q.Get("redirect_uri") != "http://127.0.0.1:"+mcpCallback+"/callback" {
		t.Fatalf("authorization request %s", authz)
	}
	first := httpLog[0]
	for _, want := range []string{"POST " + mcpResource + " 401 Bearer ", `resource_metadata="http://localhost:19441/.well-known/oauth-protected-resource/mcp"`,
		`scope="mcp:tools"`} {
		if !strings.Contains(first, want) {
			t.Errorf("first request %q lacks %s", first, want)
		}
	}
	for _, want := range []string{"GET http://localhost:19441/.well-known/oauth-protected-resource/mcp 200",
		"GET " + mcpIssuer + "/.well-known/oauth-authorization-server 200"} {
		if !slices.Contains(httpLog, want) {
			t.Errorf("the client never made %q; requests:\n%s", want, strings.Join(httpLog, "\n"))
		}
	}

	// alice signs in and consents in Chromium; the browser lands on the
	// client's loopback callback.
	wd.Navigate(authz.String())
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
	wd.Type("#username", "alice")
	wd.Type("#password", "alice-password")
	wd.Click("#signin")
	src := wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="allow"`) })
	for _, want := range []string{"oauthgate MCP test", "<code>" + reg.ClientID + "</code>", "mcp:tools"} {
		if !strings.Contains(src, want) {
			t.Errorf("the consent page lacks %q (the registered client's name, its id, the scope):\n%s", want, src)
		}
	}
	wd.Click("#allow")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "signed in, back to the MCP client") })
	var cb struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal([]byte(next("CALLBACK")), &cb); err != nil || cb.Iss != mcpIssuer {
		t.Errorf("authorization response iss = %q (%v), want %s (RFC 9207)", cb.Iss, err, mcpIssuer)
	}

	// RFC 8707 end to end: the token is for the MCP server only.
	var claims struct {
		Aud      any    `json:"aud"`
		Sub      string `json:"sub"`
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
	}
	if err := json.Unmarshal([]byte(next("TOKEN")), &claims); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(claims.Aud) != mcpResource && fmt.Sprint(claims.Aud) != "["+mcpResource+"]" || claims.Sub != "alice" ||
		claims.ClientID != reg.ClientID || claims.Scope != "mcp:tools" {
		t.Errorf("access token claims %+v, want aud %s, alice, %s, mcp:tools", claims, mcpResource, reg.ClientID)
	}

	var res struct {
		Tools  []string          `json:"tools"`
		Whoami map[string]string `json:"whoami"`
		Add    map[string]any    `json:"add"`
		First  string            `json:"first"`
	}
	if err := json.Unmarshal([]byte(next("RESULT")), &res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tools, []string{"add", "whoami"}) || res.Whoami["user"] != "alice" || res.Add["sum"] != float64(42) {
		t.Errorf("tool results %+v", res)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the MCP client exited with %v\n%s", err, stderr.String())
	}
}

// TestMCPExampleHostCheck: the Go SDK refuses requests to a loopback
// listener whose Host is not loopback (DNS rebinding protection), which
// is every request reverse_proxy forwards unchanged from a public site:
// hence `header_up Host {upstream_hostport}` in docs/mcp.md.
func TestMCPExampleHostCheck(t *testing.T) {
	startMCPExample(t)
	for host, want := range map[string]int{"mcp.example.com": http.StatusForbidden, mcpUpstream: http.StatusBadRequest} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+mcpUpstream+"/mcp", strings.NewReader(`{}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: status %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestMCPDocCaddyfiles: the Caddyfiles of docs/mcp.md adapt without
// warnings (the indented fragment goes inside a site of the others).
func TestMCPDocCaddyfiles(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "mcp.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllSubmatch(doc, -1)
	n := 0
	for _, b := range blocks {
		src := b[1]
		if bytes.HasPrefix(src, []byte("\t")) {
			src = append(append([]byte("mcp.example.com {\n"), src...), "}\n"...)
		}
		n++
		_, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Errorf("docs/mcp.md block %d: %v", n, err)
		}
		for _, w := range warns {
			t.Errorf("docs/mcp.md block %d: warning %s", n, w.String())
		}
	}
	if n < 3 {
		t.Fatalf("docs/mcp.md has %d caddyfile blocks, want the five lines, the whole file and the cors fragment", n)
	}
}
