package micro

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oauthgate/caddy-oauthgate"
	"github.com/oauthgate/caddy-oauthgate/grants"
)

// caddyHost is the host the requests name (and the issuer's). Caddy
// listens on a port of its choosing (the site is 127.0.0.1:0, so that
// parallel test runs do not collide), but the benchmarks call the
// server's handler directly: no sockets, so the figures are the
// handlers' own cost, Caddy's request setup included.
const caddyHost = "127.0.0.1:18480"

// gateCaddyfile has one server with three routes: the token endpoint,
// a gated respond (as bench/Caddyfile gates its proxy: one scope, the
// audience, the subject forwarded) and the same respond without the gate.
// Both responds go through the same handle machinery, so their
// difference is what oauth_protect costs.
const gateCaddyfile = `{
	admin off
	persist_config off
	auto_https off
	skip_install_trust
	storage file_system @DIR@/caddy-data
	log {
		level ERROR
	}
	oauth {
		issuer http://` + caddyHost + `
		storage_path @DIR@/oauth.db
		client ` + clientID + ` {
			secret ` + secret + `
			grant_types client_credentials
			scopes bench:read
			audience ` + audience + `
		}
		# A user hashed at the cheapest cost, so that the dummy hash the
		# engine makes in the background at start costs nothing.
		user bench-user {
			password_hash $2a$04$7K6qKkk6xi/nknCrXhU8cOFVC/fOERbOg.dQQYZtgRu0ELGaDfhsa
		}
	}
}

http://127.0.0.1:0 {
	handle /oauth/* {
		oauth_server
	}
	handle /gate {
		oauth_protect {
			scopes bench:read
			audience ` + audience + `
			forward_header X-Forwarded-User sub
		}
		respond "ok"
	}
	handle /plain {
		respond "ok"
	}
}
`

// gateServer is the in-process Caddy server of gateCaddyfile, started
// once per test binary (Caddy has one active config per process).
var gateServer = sync.OnceValues(func() (*caddyhttp.Server, error) {
	dir, err := os.MkdirTemp("", "oauthgate-micro")
	if err != nil {
		return nil, err
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(
		[]byte(strings.ReplaceAll(gateCaddyfile, "@DIR@", filepath.ToSlash(dir))), nil)
	if err != nil {
		return nil, err
	}
	if err := caddy.Load(cfg, true); err != nil {
		return nil, err
	}
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		return nil, err
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		return srv, nil
	}
	return nil, os.ErrNotExist
})

func caddyServer(b testing.TB) *caddyhttp.Server {
	b.Helper()
	srv, err := gateServer()
	if err != nil {
		b.Fatalf("starting Caddy: %v", err)
	}
	return srv
}

// caddyRequest is a request as Caddy's HTTP server hands it over, from a
// loopback client (plain HTTP is accepted only from loopback).
func caddyRequest(method, path string) *http.Request {
	r := httptest.NewRequest(method, "http://"+caddyHost+path, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}

// caddyToken gets one access token from the in-process token endpoint.
func caddyToken(b testing.TB, srv *caddyhttp.Server) string {
	b.Helper()
	r := caddyRequest(http.MethodPost, grants.TokenPath)
	r.Body = &reusableBody{*strings.NewReader(formBody)}
	r.ContentLength = int64(len(formBody))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", basicAuth)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, r)
	var tr grants.TokenResponse
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tr) != nil || tr.AccessToken == "" {
		b.Fatalf("token endpoint: %d %s", rec.Code, rec.Body)
	}
	return tr.AccessToken
}

// caddyWriter is discardWriter with the deadlines a net/http connection
// has, which Caddy's server sets on every write (without them each write
// would allocate an error, in both benchmarks).
type caddyWriter struct{ discardWriter }

func (*caddyWriter) SetWriteDeadline(time.Time) error { return nil }
func (*caddyWriter) SetReadDeadline(time.Time) error  { return nil }

func newCaddyWriter() *caddyWriter { return &caddyWriter{discardWriter{h: http.Header{}}} }

// gateRequest is what bench/run.sh's load generator sends to the gate:
// a GET with a bearer token and the usual client headers.
func gateRequest(path, token string) *http.Request {
	r := caddyRequest(http.MethodGet, path)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("User-Agent", "oauthgate-bench")
	r.Header.Set("Accept", "*/*")
	r.Header.Set("Accept-Encoding", "gzip")
	return r
}

// BenchmarkGate is one request through Caddy's server to `respond`, with
// oauth_protect in front ("gate", one token repeated: a verified-token
// cache hit) and without ("plain"). The difference is the gate's cost on
// the path that bench/run.sh's one-token ratio measures.
func BenchmarkGate(b *testing.B) {
	srv := caddyServer(b)
	tok := caddyToken(b, srv)
	for _, path := range []string{"/plain", "/gate"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			r := gateRequest(path, tok)
			auth, body := r.Header["Authorization"], r.Body
			w := newCaddyWriter()
			b.ReportAllocs()
			for b.Loop() {
				// The gate removes Authorization on its way, and Caddy
				// wraps the body (its read idle timeout): put both back
				// without allocating.
				r.Header["Authorization"], r.Body = auth, body
				clear(w.h)
				w.status = 0
				srv.ServeHTTP(w, r)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// BenchmarkCaddyTokenEndpoint is BenchmarkTokenEndpoint through Caddy's
// server and oauth_server, so it includes what the Caddy glue adds.
func BenchmarkCaddyTokenEndpoint(b *testing.B) {
	srv := caddyServer(b)
	r := caddyRequest(http.MethodPost, grants.TokenPath)
	body := &reusableBody{}
	r.Body = body
	r.ContentLength = int64(len(formBody))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", basicAuth)
	w := newCaddyWriter()
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(formBody)
		r.Body = body // Caddy wraps it (its read idle timeout)
		clear(w.h)
		w.status = 0
		srv.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// TestGateSetup checks the in-process Caddy fixture: the gate lets the
// token through and refuses a request without one, and the benchmark's
// trick of restoring Authorization gives the same answer again.
func TestGateSetup(t *testing.T) {
	srv := caddyServer(t)
	tok := caddyToken(t, srv)
	r := gateRequest("/gate", tok)
	auth, body := r.Header["Authorization"], r.Body
	for range 2 {
		r.Header["Authorization"], r.Body = auth, body
		w := newCaddyWriter()
		srv.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			t.Fatalf("gate with a token: status %d", w.status)
		}
		if _, ok := r.Header["Authorization"]; ok {
			t.Fatal("the gate did not remove Authorization")
		}
	}
	w := newCaddyWriter()
	srv.ServeHTTP(w, caddyRequest(http.MethodGet, "/gate"))
	if w.status != http.StatusUnauthorized {
		t.Fatalf("gate without a token: status %d", w.status)
	}
}
