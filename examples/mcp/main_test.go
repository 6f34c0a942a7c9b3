package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// withUser is the gate as the server sees it: every request carries the
// forwarded user.
type withUser struct{ user string }

func (u withUser) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if u.user != "" {
		r.Header.Set("X-Forwarded-User", u.user)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func call(t *testing.T, user, tool string, args any) *mcp.CallToolResult {
	t.Helper()
	srv := newServer("X-Forwarded-User")
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	defer ts.Close()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: ts.URL,
		HTTPClient: &http.Client{Transport: withUser{user}}, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestTools: whoami answers the forwarded user, and is an error without
// one (a gate without forward_header); add adds.
func TestTools(t *testing.T) {
	res := call(t, "alice", "whoami", map[string]any{})
	got, _ := json.Marshal(res.StructuredContent)
	if res.IsError || string(got) != `{"user":"alice"}` {
		t.Errorf("whoami: error %v, %s", res.IsError, got)
	}
	res = call(t, "", "whoami", map[string]any{})
	if !res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "forward_header") {
		t.Errorf("whoami without the header: %+v", res)
	}
	res = call(t, "alice", "add", map[string]any{"a": 2, "b": 40})
	got, _ = json.Marshal(res.StructuredContent)
	if res.IsError || string(got) != `{"sum":42}` {
		t.Errorf("add: %s", got)
	}
}

// TestListenLoopbackOnly: the server trusts its user header, so it
// refuses to listen where anything but Caddy could reach it.
func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8000", ":8000", "192.0.2.1:8000", "nonsense"} {
		if err := run(addr, "X-Forwarded-User"); err == nil || !strings.Contains(err.Error(), "-listen") {
			t.Errorf("%s: %v, want a refusal", addr, err)
		}
	}
}
