package grants

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A refusal sent before the body was read must reach a client that sent
// Connection: close: the server reads (boundedly) what is left of the body
// before it answers. net/http does not drain the body of a request that
// asked to close, so the unread bytes make the close a reset, and a client
// still sending its body gets the reset instead of the JSON error.
func TestRefusalBeforeBodyWithConnectionClose(t *testing.T) {
	e := newEngine(t)
	// A peer that is not loopback: the TLS rule refuses plain HTTP from
	// it before anything reads the body.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = "203.0.113.5:4000"
		switch r.URL.Path {
		case TokenPath:
			e.serveToken(w, r)
		case RevokePath:
			e.serveRevoke(w, r)
		case IntrospectPath:
			e.serveIntrospect(w, r)
		case UserinfoPath:
			e.serveUserinfo(w, r)
		}
	}))
	// Small socket buffers, as on a real network: the body cannot all sit
	// in them while the server answers.
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	body := "grant_type=client_credentials&token=x&pad=" + strings.Repeat("x", 60<<10)
	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{TokenPath, http.StatusBadRequest, CodeInvalidRequest},
		{RevokePath, http.StatusBadRequest, CodeInvalidRequest},
		{IntrospectPath, http.StatusBadRequest, CodeInvalidRequest},
		{UserinfoPath, http.StatusUnauthorized, ""}, // no token
	} {
		path := tt.path
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.(*net.TCPConn).SetWriteBuffer(4096)
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			// A client that sends its whole request before it reads, the
			// body a moment after the headers (as over a real network).
			_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: as.test\r\nConnection: close\r\n"+
				"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body[:1024])
			if err == nil {
				time.Sleep(50 * time.Millisecond)
				_, err = io.WriteString(conn, body[1024:])
			}
			if err != nil {
				t.Fatalf("sending the request: %v", err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer, only: %v", err)
			}
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("answer cut off: %v (got %q)", err, raw)
			}
			var got struct{ Error string }
			if resp.StatusCode != tt.status || json.Unmarshal(raw, &got) != nil || got.Error != tt.code {
				t.Fatalf("got %d %s, want %d %q", resp.StatusCode, raw, tt.status, tt.code)
			}
		})
	}
}

// smallBufListener gives each accepted connection a small receive buffer.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	return c, err
}
