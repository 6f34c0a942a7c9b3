package grants

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// parseReq runs ParseForm on r and returns the form, the error and the
// recorder (which ParseForm only touches through MaxBytesReader).
func parseReq(r *http.Request) (Form, *Error) {
	return ParseForm(httptest.NewRecorder(), r)
}

// checkParseErr asserts a ParseForm refusal and renders it through
// WriteError to check the wire form as well.
func checkParseErr(t *testing.T, oerr *Error, status int) {
	t.Helper()
	if oerr == nil {
		t.Fatalf("ParseForm accepted the request, want %d", status)
	}
	if oerr.Code != CodeInvalidRequest {
		t.Errorf("code = %q, want invalid_request", oerr.Code)
	}
	if oerr.Status != status {
		t.Errorf("status = %d, want %d (%s)", oerr.Status, status, oerr.Description)
	}
	w := httptest.NewRecorder()
	WriteError(w, oerr)
	checkError(t, w, status, CodeInvalidRequest)
}

func TestParseFormMethod(t *testing.T) {
	t.Parallel()
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodPatch, http.MethodOptions, "BREW"} {
		t.Run(m, func(t *testing.T) {
			r := tokenRequest("grant_type=client_credentials")
			r.Method = m
			form, oerr := parseReq(r)
			if form != nil {
				t.Errorf("form = %v, want nil", form)
			}
			checkParseErr(t, oerr, http.StatusMethodNotAllowed)
			w := httptest.NewRecorder()
			WriteError(w, oerr)
			if got := w.Header().Get("Allow"); got != http.MethodPost {
				t.Errorf("Allow = %q, want POST", got)
			}
		})
	}
}

func TestParseFormQueryRefused(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		"client_secret=s3cr",
		"grant_type=client_credentials",
		"foo=bar",
		"x",
		"%zz",
	} {
		t.Run(q, func(t *testing.T) {
			r := tokenRequest("grant_type=client_credentials")
			r.URL.RawQuery = q
			_, oerr := parseReq(r)
			checkParseErr(t, oerr, http.StatusBadRequest)
		})
	}
}

func TestParseFormContentType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ctype []string // nil: no header
		ok    bool
	}{
		{"form", []string{"application/x-www-form-urlencoded"}, true},
		{"form charset UTF-8", []string{"application/x-www-form-urlencoded; charset=UTF-8"}, true},
		{"form charset utf-8", []string{"application/x-www-form-urlencoded;charset=utf-8"}, true},
		{"form quoted charset", []string{`application/x-www-form-urlencoded; charset="utf-8"`}, true},
		{"media type case", []string{"Application/X-WWW-Form-URLEncoded"}, true},
		{"form latin1", []string{"application/x-www-form-urlencoded; charset=ISO-8859-1"}, false},
		{"form utf8 no dash", []string{"application/x-www-form-urlencoded; charset=utf8"}, false},
		{"form extra param", []string{"application/x-www-form-urlencoded; foo=bar"}, false},
		{"form charset and extra", []string{"application/x-www-form-urlencoded; charset=utf-8; boundary=x"}, false},
		{"json", []string{"application/json"}, false},
		{"multipart", []string{"multipart/form-data; boundary=xyz"}, false},
		{"text", []string{"text/plain"}, false},
		{"missing", nil, false},
		{"empty", []string{""}, false},
		{"garbage", []string{"application/x-www-form-urlencoded; ="}, false},
		{"prefix lookalike", []string{"application/x-www-form-urlencodedx"}, false},
		{"duplicated same", []string{"application/x-www-form-urlencoded", "application/x-www-form-urlencoded"}, false},
		{"duplicated differing", []string{"application/x-www-form-urlencoded", "application/json"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tokenRequest("grant_type=client_credentials")
			r.Header.Del("Content-Type")
			for _, v := range tt.ctype {
				r.Header.Add("Content-Type", v)
			}
			form, oerr := parseReq(r)
			if tt.ok {
				if oerr != nil {
					t.Fatalf("refused: %v", oerr)
				}
				if form.Get("grant_type") != GrantClientCredentials {
					t.Errorf("grant_type = %q", form.Get("grant_type"))
				}
				return
			}
			checkParseErr(t, oerr, http.StatusBadRequest)
		})
	}
}

func TestParseFormContentEncoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		enc    string
		status int // 0: accepted
	}{
		{"identity", 0},
		{"IDENTITY", 0},
		{"gzip", http.StatusUnsupportedMediaType},
		{"GZIP", http.StatusUnsupportedMediaType},
		{"deflate", http.StatusUnsupportedMediaType},
		{"br", http.StatusUnsupportedMediaType},
		{"gzip, identity", http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.enc, func(t *testing.T) {
			// The body is a gzip header: it must never be decompressed.
			body := "grant_type=client_credentials"
			if tt.status != 0 {
				body = "\x1f\x8b\x08\x00\x00\x00\x00\x00"
			}
			r := tokenRequest(body)
			r.Header.Set("Content-Encoding", tt.enc)
			form, oerr := parseReq(r)
			if tt.status == 0 {
				if oerr != nil || form.Get("grant_type") != GrantClientCredentials {
					t.Fatalf("refused: %v (form %v)", oerr, form)
				}
				return
			}
			checkParseErr(t, oerr, tt.status)
		})
	}
}

// chunkedBody hides its length so ParseForm sees an unknown
// Content-Length, as with chunked transfer encoding.
type chunkedBody struct{ io.Reader }

func TestParseFormBodySize(t *testing.T) {
	t.Parallel()
	// A valid form of exactly n bytes: grant_type plus an ignored pad.
	formOf := func(n int) string {
		base := "grant_type=client_credentials&pad="
		return base + strings.Repeat("a", n-len(base))
	}
	tests := []struct {
		name   string
		size   int
		length int64 // Content-Length to declare; -1 unknown
		status int   // 0: accepted
	}{
		{"at limit, declared", MaxBodyBytes, MaxBodyBytes, 0},
		{"at limit, chunked", MaxBodyBytes, -1, 0},
		{"one over, declared", MaxBodyBytes + 1, MaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
		{"one over, chunked", MaxBodyBytes + 1, -1, http.StatusRequestEntityTooLarge},
		{"1 MiB, declared", 1 << 20, 1 << 20, http.StatusRequestEntityTooLarge},
		{"1 MiB, chunked", 1 << 20, -1, http.StatusRequestEntityTooLarge},
		{"1 MiB, understated length", 1 << 20, 100, http.StatusRequestEntityTooLarge},
		{"declared huge, body small", 100, 10 << 20, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tokenRequest("")
			r.Body = io.NopCloser(chunkedBody{strings.NewReader(formOf(tt.size))})
			r.ContentLength = tt.length
			form, oerr := parseReq(r)
			if tt.status == 0 {
				if oerr != nil {
					t.Fatalf("refused: %v", oerr)
				}
				if form.Get("grant_type") != GrantClientCredentials {
					t.Errorf("form = %v", form)
				}
				return
			}
			checkParseErr(t, oerr, tt.status)
		})
	}
}

// TestParseFormBodySizeOverHTTP checks the 413 through a real server, where
// net/http decides Content-Length and chunking.
func TestParseFormBodySizeOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	var seenLength atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenLength.Store(r.ContentLength)
		e.serveToken(w, r)
	}))
	defer srv.Close()
	// Large enough to cross the cap, small enough that the server can
	// drain or buffer the rest, so the client reliably sees the answer.
	big := "grant_type=client_credentials&pad=" + strings.Repeat("a", 200<<10)
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = chunkedBody{body}
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL+TokenPath, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", basicAuth("c-basic", basicSecret))
		resp, err := srv.Client().Do(req)
		if err != nil {
			// The server may close the connection while the client is still
			// sending; that is a refusal too, but we want to see the 413.
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked=%v: status = %d, want 413 (body %s)", chunked, resp.StatusCode, b)
		}
		if got := seenLength.Load(); chunked != (got == -1) {
			t.Errorf("chunked=%v: server saw Content-Length %d", chunked, got)
		}
		if strings.Contains(string(b), "access_token") {
			t.Errorf("token issued for an oversized body")
		}
	}
}

type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestParseFormBodyReadError(t *testing.T) {
	t.Parallel()
	r := tokenRequest("")
	r.Body = io.NopCloser(failingBody{})
	r.ContentLength = -1
	_, oerr := parseReq(r)
	checkParseErr(t, oerr, http.StatusBadRequest)
}

func TestParseFormBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want Form // nil: refused with invalid_request
	}{
		{"simple", "grant_type=client_credentials&scope=read",
			Form{"grant_type": "client_credentials", "scope": "read"}},
		{"empty body", "", Form{}},
		{"empty value is absent", "grant_type=client_credentials&scope=",
			Form{"grant_type": "client_credentials"}},
		{"no equals is absent", "grant_type=client_credentials&scope",
			Form{"grant_type": "client_credentials"}},
		{"all empty", "grant_type=&client_id=&scope=", Form{}},
		{"unknown ignored", "grant_type=x&foo=bar&x-debug=1", Form{"grant_type": "x"}},
		{"repeated unknown ignored", "foo=1&foo=2&foo=&grant_type=x", Form{"grant_type": "x"}},
		{"unknown with bad UTF-8 ignored", "foo=%ff&grant_type=x", Form{"grant_type": "x"}},
		{"plus is space", "scope=read+write", Form{"scope": "read write"}},
		{"percent space", "scope=read%20write", Form{"scope": "read write"}},
		{"encoded name", "grant%5Ftype=x", Form{"grant_type": "x"}},
		{"value kept verbatim", "client_id=%20c-basic%20", Form{"client_id": " c-basic "}},
		{"case-sensitive names", "Grant_Type=x", Form{}},
		{"utf-8 value", "scope=%C3%A9", Form{"scope": "é"}},
		{"repeated grant_type", "grant_type=client_credentials&grant_type=password", nil},
		{"repeated identical", "grant_type=client_credentials&grant_type=client_credentials", nil},
		{"repeated scope", "grant_type=client_credentials&scope=a&scope=b", nil},
		{"repeated client_id", "client_id=a&client_id=a", nil},
		{"repeated resource", "resource=https://a&resource=https://b", nil},
		{"repeated, one empty", "scope=&scope=read", nil},
		{"bad percent", "grant_type=%zz", nil},
		{"truncated percent", "grant_type=client_credentials%2", nil},
		{"bad percent in unknown", "foo=%zz&grant_type=x", nil},
		{"semicolon separator", "grant_type=client_credentials;scope=read", nil},
		{"invalid UTF-8", "scope=%ff", nil},
		{"overlong UTF-8", "client_id=%C0%AF", nil},
		{"surrogate UTF-8", "client_secret=%ED%A0%80", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, oerr := parseFormBody(tt.body, knownParams)
			if tt.want == nil {
				checkParseErr(t, oerr, http.StatusBadRequest)
				if got != nil {
					t.Errorf("form = %v, want nil", got)
				}
				return
			}
			if oerr != nil {
				t.Fatalf("refused: %v", oerr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("form = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseFormThroughRequest(t *testing.T) {
	t.Parallel()
	r := tokenRequest("grant_type=client_credentials&scope=read+write&foo=bar")
	form, oerr := parseReq(r)
	if oerr != nil {
		t.Fatal(oerr)
	}
	want := Form{"grant_type": "client_credentials", "scope": "read write"}
	if !reflect.DeepEqual(form, want) {
		t.Errorf("form = %v, want %v", form, want)
	}
	if form.Get("absent") != "" {
		t.Error("Get of an absent parameter is not empty")
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:1234", true},
		{"127.8.9.10:1", true},
		{"[::1]:443", true},
		{"[::ffff:127.0.0.1]:80", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"192.0.2.1:1234", false},
		{"10.0.0.1:80", false},
		{"[::]:80", false},
		{"0.0.0.0:80", false},
		{"localhost:80", false},
		{"", false},
		{"garbage", false},
		{"[fe80::1%eth0]:80", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = tt.addr
		if got := IsLoopback(r); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestIsLoopbackClientIP: behind a trusted local proxy the client the
// proxy reports decides; a remote peer never becomes loopback.
func TestIsLoopbackClientIP(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		peer, client string
		want         bool
	}{
		{"127.0.0.1:1", "127.0.0.1", true},
		{"127.0.0.1:1", "::1", true},
		{"127.0.0.1:1", "203.0.113.9", false},
		{"203.0.113.9:1", "127.0.0.1", false},
		// No client address from the front end: the peer decides.
		{"127.0.0.1:1", "", true},
		{"203.0.113.9:1", "", false},
		// A spoofable leftmost X-Forwarded-For entry does not make a
		// forwarded remote client loopback.
		{"127.0.0.1:1", "127.0.0.1|X-Forwarded-For: 127.0.0.1, 203.0.113.9", false},
		{"127.0.0.1:1", "127.0.0.1|X-Forwarded-For: 127.0.0.1:80, ::1", true},
		{"127.0.0.1:1", "127.0.0.1|X-Real-Ip: 203.0.113.9", false},
		{"127.0.0.1:1", `127.0.0.1|Forwarded: for="[::1]:80";proto=http, for=203.0.113.9`, false},
		{"127.0.0.1:1", `127.0.0.1|Forwarded: for="[::1]:80";proto=http`, true},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = tt.peer
		if client, hdr, ok := strings.Cut(tt.client, "|"); ok {
			tt.client = client
			k, v, _ := strings.Cut(hdr, ": ")
			r.Header.Set(k, v)
		}
		r = r.WithContext(WithFront(r.Context(), &Front{ClientIP: tt.client}))
		if got := IsLoopback(r); got != tt.want {
			t.Errorf("peer %s client %q: IsLoopback = %v, want %v", tt.peer, tt.client, got, tt.want)
		}
		if got := TransportOK(r, true); !got {
			t.Errorf("peer %s client %q: behind a TLS proxy is always fine", tt.peer, tt.client)
		}
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      *Error
		wantBody string
	}{
		{"plain", errRequest("bad thing"), `{"error":"invalid_request","error_description":"bad thing"}`},
		{"no description", &Error{Code: CodeInvalidGrant, Status: 400}, `{"error":"invalid_grant"}`},
		{"challenge", &Error{Code: CodeInvalidClient, Description: "x", Status: 401, Challenge: `Basic realm="r"`},
			`{"error":"invalid_client","error_description":"x"}`},
		{"allow", &Error{Code: CodeInvalidRequest, Description: "y", Status: 405, Allow: "POST"},
			`{"error":"invalid_request","error_description":"y"}`},
		{"unavailable", errUnavailable, ""},
		{"server", errServer, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteError(w, tt.err)
			checkError(t, w, tt.err.Status, tt.err.Code)
			if tt.wantBody != "" && w.Body.String() != tt.wantBody {
				t.Errorf("body = %s, want %s", w.Body.String(), tt.wantBody)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.err.Challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.err.Challenge)
			}
			if got := w.Header().Get("Allow"); got != tt.err.Allow {
				t.Errorf("Allow = %q, want %q", got, tt.err.Allow)
			}
			if got, want := w.Header().Get("Content-Length"), len(w.Body.String()); got != strconv.Itoa(want) {
				t.Errorf("Content-Length = %s, body is %d bytes", got, want)
			}
		})
	}
	if got := errRequest("z").Error(); got != "invalid_request: z" {
		t.Errorf("Error() = %q", got)
	}
}

// TestErrorDescriptionsCharset checks every fixed description in the
// package against the RFC 6749 §5.2 character set, including the ones built
// from a parameter name.
func TestErrorDescriptionsCharset(t *testing.T) {
	t.Parallel()
	errs := []*Error{errUnavailable, errServer}
	for name := range knownParams {
		_, e1 := parseFormBody(name+"=a&"+name+"=b", knownParams)
		_, e2 := parseFormBody(name+"=%ff", knownParams)
		errs = append(errs, e1, e2)
	}
	for _, e := range errs {
		if e == nil {
			t.Fatal("expected an error")
		}
		if !descRE.MatchString(e.Code) || !descRE.MatchString(e.Description) {
			t.Errorf("%q / %q is outside the TOK-12 character set", e.Code, e.Description)
		}
	}
}

// A refusal sent before the body was read must reach a client that sent
// Connection: close: the server reads (boundedly) what is left of the body
// before it answers. net/http does not drain the body of a request that
// asked to close, so the unread bytes make the close a reset, and a client
// still sending its body gets the reset instead of the JSON error.
func TestRefusalBeforeBodyWithConnectionClose(t *testing.T) {
	t.Parallel()
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
