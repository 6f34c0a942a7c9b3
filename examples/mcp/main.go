// Command mcp is a tiny MCP server (the official Go SDK, streamable HTTP
// transport) meant to run behind Caddy's oauth_protect: it knows nothing
// about OAuth. The gate in front checks the access token, removes it, and
// forwards the signed-in user in a header (forward_header) that this
// server trusts because it listens on loopback only, where nothing but
// Caddy can reach it. See docs/mcp.md.
//
//	go run . -listen 127.0.0.1:8000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// whoamiIn and addIn are the tools' arguments; the SDK derives their JSON
// schemas from these types.
type whoamiIn struct{}

type whoamiOut struct {
	User string `json:"user" jsonschema:"the signed-in user, as the gate forwarded it"`
}

type addIn struct {
	A float64 `json:"a" jsonschema:"the first addend"`
	B float64 `json:"b" jsonschema:"the second addend"`
}

type addOut struct {
	Sum float64 `json:"sum"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "loopback address to listen on (Caddy proxies to it)")
	userHeader := flag.String("user-header", "X-Forwarded-User", "request header the gate sets to the signed-in user (oauth_protect forward_header)")
	flag.Parse()
	if err := run(*listen, *userHeader); err != nil {
		log.Fatal(err)
	}
}

// newServer builds the MCP server with its two tools.
func newServer(userHeader string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "oauthgate-example", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Say who signed in (the user the gate forwarded)"},
		func(_ context.Context, req *mcp.CallToolRequest, _ whoamiIn) (*mcp.CallToolResult, whoamiOut, error) {
			var user string
			if req.Extra != nil && req.Extra.Header != nil {
				user = req.Extra.Header.Get(userHeader)
			}
			if user == "" {
				// Only a misconfigured gate (no forward_header) gets here.
				return nil, whoamiOut{}, fmt.Errorf("no %s header: is oauth_protect in front with forward_header %s sub?", userHeader, userHeader)
			}
			return nil, whoamiOut{User: user}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Add two numbers"},
		func(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, addOut, error) {
			return nil, addOut{Sum: in.A + in.B}, nil
		})
	return s
}

func run(listen, userHeader string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	// The user header is trusted only because nothing but the gate can
	// reach this server.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-listen %q: listen on loopback (127.0.0.1:8000) so that only Caddy reaches this server", listen)
	}
	srv := newServer(userHeader)
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", handler)
	hs := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	log.Printf("MCP server on http://%s/mcp", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
