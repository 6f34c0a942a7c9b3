package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Ports: 19447 the MCP site (gate with the MCP audience), 19448 a second
// gate for another audience in front of the same MCP server; the
// authorization server, http/https ports and the example MCP server are
// TestMCPTypeScriptSDK's (19440, 19442/19444, 19445).
const (
	mcpSessSite  = "http://localhost:19447/mcp"
	mcpSessOther = "http://localhost:19448/mcp"
)

// TestMCPSessionBoundToUser: a session the example MCP server (the
// official Go SDK) opened for alice through the gate is alice's: bob's
// token with its Mcp-Session-Id is answered 404 on POST, GET (the SSE
// stream) and DELETE before the server sees it, and so is alice's own
// token through a gate for another audience; alice keeps using it, and
// once she ends it (DELETE) the id is the server's to refuse.
func TestMCPSessionBoundToUser(t *testing.T) {
	startMCPExample(t)
	path := storagePath(t)
	kr := seedKeys(t, path)
	startCaddy(t, fmt.Sprintf(`{
	admin %s
	http_port 19442
	https_port 19444
	skip_install_trust
	grace_period 1ns
	oauth {
		issuer %s
		storage_path %s
	}
}

http://localhost:19440 {
	bind 127.0.0.1
	oauth_server
}

http://localhost:19447 {
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

http://localhost:19448 {
	bind 127.0.0.1
	oauth_protect {
		audience %s
		forward_header X-Forwarded-User sub
	}
	reverse_proxy %s {
		header_up Host {upstream_hostport}
	}
}
`, adminAddr, mcpIssuer, path, mcpSessSite, mcpUpstream, mcpSessOther, mcpUpstream))

	now := time.Now()
	token := func(sub, aud string) string {
		tok, err := kr.Current.MintAccessToken(&tokens.AccessClaims{
			Issuer: mcpIssuer, Subject: sub, Audience: tokens.Audience{aud},
			IssuedAt: now.Unix(), ExpiresAt: now.Add(10 * time.Minute).Unix(),
			ID: "mcp-sess-" + sub + aud, ClientID: "mcp-client", Scope: "mcp:tools",
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, bob := token("alice", mcpSessSite), token("bob", mcpSessSite)
	aliceOther := token("alice", mcpSessOther)
	call := func(method, site, tok, session, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, site, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json, text/event-stream")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if method == http.MethodGet && resp.StatusCode == http.StatusOK {
			return resp, "" // an open SSE stream: not read to its end
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	const gateSessionNotFound = `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}`
	const toolsList = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

	resp, body := call(http.MethodPost, mcpSessSite, alice, "",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"session-test","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d session %q %s", resp.StatusCode, sid, body)
	}
	if resp, body := call(http.MethodPost, mcpSessSite, alice, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode/100 != 2 {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		b := ""
		if m == http.MethodPost {
			b = toolsList
		}
		resp, body := call(m, mcpSessSite, bob, sid, b)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "Session not found") {
			t.Errorf("bob %s with alice's session: %d %s, want 404 Session not found", m, resp.StatusCode, body)
		}
	}
	if resp, body := call(http.MethodPost, mcpSessOther, aliceOther, sid, toolsList); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice's session through the other audience's gate: %d %s, want 404", resp.StatusCode, body)
	}
	if resp, body := call(http.MethodPost, mcpSessSite, alice, sid, toolsList); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"tools"`) {
		t.Fatalf("alice with her session after bob's tries: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(http.MethodDelete, mcpSessSite, alice, sid, ""); resp.StatusCode/100 != 2 {
		t.Fatalf("alice ends her session: %d %s", resp.StatusCode, body)
	}
	// Forgotten by the gate: bob's request reaches the server, which
	// does not know the ended session either.
	if resp, body := call(http.MethodPost, mcpSessSite, bob, sid, toolsList); resp.StatusCode != http.StatusNotFound || body == gateSessionNotFound {
		t.Errorf("bob after alice ended the session: %d %s, want the server's 404", resp.StatusCode, body)
	}
}
