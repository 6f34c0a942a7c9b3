// Package integration runs a real Caddy, in this test process, from a
// Caddyfile with the oauth global option, oauth_server and oauth_protect,
// and talks to it the way clients, resource servers and operators do: with
// golang.org/x/oauth2, github.com/coreos/go-oidc, plain HTTP and the admin
// API.
//
// Every test loads its own config through caddytest, so tests do not
// depend on each other's order. Loopback ports used here (keep them out
// of the README quick start's 9080-9082 and 2019):
//
//	2999         caddytest's admin endpoint (caddytest.Default.AdminPort)
//	18080-18099  not tests: bench/run.sh (18080-18089, admin 18019) and
//	             bench/run.sh nodes (18090-18097 Caddy nodes, 18099 PostgreSQL)
//	19080/19443  http_port / https_port (no site listens on them)
//	19100        authorization server (oauth_server), issuer http://localhost:19100
//	19101        protected API: oauth_protect + reverse_proxy to a recording upstream
//	19102        protected echo site: oauth_protect + respond with the placeholders
//	19103-19890  further sites of single tests, named in those tests (19284/19285
//	             the browser CORS pages)
//	19150-19164  the gate's browser mode (gatelogin_test.go, gateattack_test.go,
//	             gateexternal_test.go): 19150/19151 http/https_port, 19152 issuer,
//	             19153-19159 gated sites, 19160-19164 the external provider (a child
//	             Caddy, admin 19162), 19165 a gate over TLS
//	19320-19325  trust_issuer (trust_test.go): 19320 the external provider (a child
//	             Caddy), 19321 the gate, 19322 the provider's admin, 19323/19324
//	             its http/https ports, 19325 a third issuer nothing serves
//	19350-19359  the PostgreSQL that storage/postgres's TestMain starts (the
//	             first free one; its own package, not these tests)
//	19360-19364  the PostgreSQL that caddymodule's tests start on first use
//	             (main_test.go there), shared by every postgres test of that package
//	19365-19369  the PostgreSQL of the cluster tests (grants/cluster_test.go), the
//	             first free one
//	19390-19394  the PostgreSQL of internal/pgtest's own tests and of bench/micro's
//	             durable-path benchmarks (first free one; not these tests)
//	19370-19374  the PostgreSQL of the two-node tests (nodes_test.go; the
//	             first free one), started on first use
//	19375-19399  the two-node tests' child Caddys (nodes_cluster_test.go):
//	             node A 19375-19379, node B 19380-19384 (server, gate, admin,
//	             http_port, https_port)
//	19560        the DPoP third-party client test (dpop_node_test.go), issuer
//	             http://localhost:19560; its npm client is testdata/dpop-node
//	19561        the resource behind oauth_protect of that test (DPoP at the gate)
//	19440-19449  the MCP test (mcp_test.go): 19440 the authorization server,
//	             issuer http://localhost:19440; 19441 the MCP site (oauth_protect
//	             + reverse_proxy); 19442/19444 http_port/https_port; 19445 the
//	             example MCP server (examples/mcp); 19446 the MCP client's loopback
//	             callback; its npm client is testdata/mcp-node
//	             19447/19448 the MCP session binding test (mcpsession_test.go):
//	             a gate with the MCP audience and one with another audience
//	19400-19409  mutual TLS (mtls_test.go): 19400 the authorization server,
//	             19401/19402 http_port/https_port, 19404 the gated API;
//	             behind a trusted proxy: 19406 the authorization server, 19407
//	             and 19408 gates; 19409 client_auth verify_if_given
//	19410        pushed authorization requests (par_test.go), issuer
//	             http://localhost:19410; its npm client is testdata/dpop-node
//	19430-19439  dynamic client registration (registration_test.go): 19430 the
//	             authorization server, 19431/19432 http/https_port, 19433 the
//	             registered client's redirect URI (nothing listens), 19435 a
//	             loopback listener no metadata document fetch may reach
//	19420-19422  the device grant (device_test.go): 19420 the authorization
//	             server, 19421/19422 http_port/https_port
//	19900-19949  the backup test (backup_test.go)
//	19950-19979  the production recipes of docs/production.md (production_test.go)
//	19998        held while the tests run, so concurrent runs take turns
package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	_ "github.com/oauthgate/caddy-oauthgate"
)

const (
	adminAddr = "localhost:2999"
	issuer    = "http://localhost:19100"
	tokenURL  = issuer + "/oauth/token"
	jwksURL   = issuer + "/oauth/jwks"
	apiURL    = "http://localhost:19101"
	echoURL   = "http://localhost:19102"
	// otherAud is the audience of other-service's tokens; nothing serves it.
	otherAud = "http://localhost:19199"

	// Client fixtures (see baseCaddyfile). basicSecret has the characters
	// RFC 6749 §2.3.1 makes clients form-encode in the Basic header.
	basicID     = "billing-service"
	basicSecret = "s3cr:et%+"
	postID      = "reports-service"
	postSecret  = "reports-secret-0123456789abcdef"
	otherID     = "other-service"
	otherSecret = "other-secret-0123456789abcdef"
)

// lockAddr is held (listened on) for the whole run: the ports above are
// fixed, so two `go test` processes running this package at once (two
// checkouts, two people) would load configs into each other's Caddy.
// The second one waits; the kernel releases the port however the first
// one ends.
const lockAddr = "127.0.0.1:19998"

// TestMain serializes runs across processes and keeps Caddy's autosave
// and data directory out of the user's home: the in-process Caddy reads
// XDG_CONFIG_HOME and XDG_DATA_HOME.
func TestMain(m *testing.M) {
	lock, err := net.Listen("tcp", lockAddr)
	for deadline := time.Now().Add(3 * time.Minute); err != nil; lock, err = net.Listen("tcp", lockAddr) {
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "integration: %s stayed busy for 3 minutes (another run of these tests?): %v\n", lockAddr, err)
			os.Exit(1)
		}
		time.Sleep(250 * time.Millisecond)
	}
	dir, err := os.MkdirTemp("", "oauthgate-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	code := m.Run()
	stopNodesPG()
	os.RemoveAll(dir)
	lock.Close()
	os.Exit(code)
}

// baseCaddyfile is the config most tests run. @STORAGE@, @UPSTREAM@ and
// @ECHO@ are replaced by render.
const baseCaddyfile = `{
	skip_install_trust
	admin localhost:2999
	http_port 19080
	https_port 19443
	grace_period 1ns
	oauth {
		issuer http://localhost:19100
		storage_path @STORAGE@
		access_token_ttl 10m
		client billing-service {
			secret "s3cr:et%+"
			grant_types client_credentials
			scopes invoices:read invoices:write
			audience http://localhost:19101
		}
		client reports-service {
			secret reports-secret-0123456789abcdef
			auth_method client_secret_post
			grant_types client_credentials
			scopes invoices:read reports:read
			audience http://localhost:19101
		}
		client other-service {
			secret other-secret-0123456789abcdef
			grant_types client_credentials
			scopes invoices:read invoices:write
			audience http://localhost:19199
		}
	}
}

# The authorization server. No host, so a spoofed Host header still
# reaches it.
http://:19100 {
	bind 127.0.0.1
	respond "not an oauth endpoint" 404
	oauth_server
}

# The protected legacy app. Written in the "wrong" order on purpose: the
# registered directive order must put oauth_protect first.
http://localhost:19101 {
	bind 127.0.0.1
	reverse_proxy @UPSTREAM@
	request_header X-OAuth-Client {oauth.client_id}
	oauth_protect {
		scopes invoices:read
		audience http://localhost:19101
		forward_header X-Forwarded-User sub
		forward_header X-OAuth-Scope scope
	}
}

# Echoes the placeholders oauth_protect sets.
http://localhost:19102 {
	bind 127.0.0.1
	respond "@ECHO@"
	oauth_protect {
		scopes invoices:read
		audience any
	}
}
`

const echoBody = "sub={oauth.sub} client_id={oauth.client_id} scope={oauth.scope} claim={oauth.claim.client_id} user={http.auth.user.id}"

// render fills in a Caddyfile template.
func render(tmpl, storage, upstream string) string {
	return strings.NewReplacer("@STORAGE@", storage, "@UPSTREAM@", upstream, "@ECHO@", echoBody).Replace(tmpl)
}

// startCaddy loads cfg into the in-process Caddy (starting it on first
// use) and stops the test if that fails.
func startCaddy(t *testing.T, cfg string) *caddytest.Tester {
	t.Helper()
	settleAdmin(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return tc
}

// loadConfig POSTs a config to the admin API's /load, as `caddy reload`
// does, and returns the status, the body and how long the load took.
func loadConfig(t *testing.T, cfg, contentType string) (int, string, time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second, Transport: freshConns}
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(cfg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	start := time.Now()
	resp, err := client.Do(req)
	// A load that came just after another one may meet the replaced admin
	// server's listener as it closes (see settleAdmin). That connection
	// was never accepted, so the load did not happen: send it again.
	for try := 0; err != nil && neverServed(err) && try < 10; try++ {
		time.Sleep(50 * time.Millisecond)
		req.Body, _ = req.GetBody()
		resp, err = client.Do(req)
	}
	if err != nil {
		t.Fatalf("POST /load: %v (a hung reload ends here)", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	// Errors come as {"error":"..."}; return the message itself.
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		return resp.StatusCode, apiErr.Error, took
	}
	return resp.StatusCode, string(body), took
}

// settleAdmin waits until the admin API answers steadily. Every load,
// even a refused one, replaces Caddy's admin server and shuts the old
// one down in the background; on Linux both listen on the port at once
// (SO_REUSEPORT), and a connection the kernel hands to the old listener
// as it closes is reset. caddytest does not retry its own POST /load, so
// start it only after that shutdown: wait a little, then require a
// successful request.
func settleAdmin(t *testing.T) {
	t.Helper()
	// caddytest uses http.DefaultTransport; drop connections pooled to a
	// replaced admin server.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := testClient.Get("http://" + adminAddr + "/config/")
		if err != nil {
			if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
				continue
			}
			return // no Caddy yet (refused): caddytest starts it
		}
		resp.Body.Close()
		return
	}
}

// neverServed reports whether a request failed because its connection
// was refused or reset before the server read it.
func neverServed(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.EOF)
}

// freshConns opens a connection per request. Each config load replaces
// Caddy's servers (and its admin server), and a kept-alive connection to
// a replaced one can fail a POST that Go will not retry; tests must not
// depend on that race.
var freshConns = &http.Transport{DisableKeepAlives: true}

// testClient is the client for every request the tests send.
var testClient = &http.Client{
	Timeout:       10 * time.Second,
	Transport:     freshConns,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// clientContext is a context whose HTTP client, for golang.org/x/oauth2
// and go-oidc, is testClient.
func clientContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, testClient), testClient)
}

// storagePath is a fresh bbolt file path for one test.
func storagePath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "oauth.db")
}

// upstream is the legacy app behind reverse_proxy. It records every
// request it receives.
type upstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	seen   []*http.Request
	bodies []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.bodies = append(u.bodies, string(body))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "legacy app")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// addr is the host:port reverse_proxy dials.
func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

// lastBody is the body of the last request the upstream saw.
func (u *upstream) lastBody() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		return ""
	}
	return u.bodies[len(u.bodies)-1]
}

// fetchToken gets a client_credentials token with golang.org/x/oauth2.
func fetchToken(t *testing.T, id, secret string, style oauth2.AuthStyle, scopes ...string) *oauth2.Token {
	t.Helper()
	tok, err := tokenErr(t, id, secret, style, scopes...)
	if err != nil {
		t.Fatalf("client_credentials token for %s: %v", id, err)
	}
	return tok
}

func tokenErr(t *testing.T, id, secret string, style oauth2.AuthStyle, scopes ...string) (*oauth2.Token, error) {
	cfg := clientcredentials.Config{
		ClientID:     id,
		ClientSecret: secret,
		TokenURL:     tokenURL,
		Scopes:       scopes,
		AuthStyle:    style,
	}
	return cfg.Token(clientContext(t))
}

// retrieveError unwraps the token endpoint's error answer.
func retrieveError(t *testing.T, err error) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want an OAuth error response, got %v", err)
	}
	return re
}

// jwtParts decodes a compact JWS's header and claims without verifying.
func jwtParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a compact JWS: %d parts", len(parts))
	}
	return decodeSegment(t, parts[0]), decodeSegment(t, parts[1])
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("JWS segment is not base64url: %v", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("JWS segment is not a JSON object: %v", err)
	}
	return m
}

// httpDo sends a request through a plain client (never following
// redirects) and returns the response with its body read.
func httpDo(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", req.URL, err)
	}
	return resp, string(body)
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// getJSON fetches a JSON document and decodes it.
func getJSON(t *testing.T, url string) (*http.Response, map[string]any) {
	t.Helper()
	resp, body := httpDo(t, newRequest(t, http.MethodGet, url, nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", url, resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("GET %s: body is not a JSON object: %v: %s", url, err, body)
	}
	return resp, m
}

// jwksKids lists the kids published at the JWKS endpoint.
func jwksKids(t *testing.T) []string {
	t.Helper()
	_, set := getJSON(t, jwksURL)
	keys, _ := set["keys"].([]any)
	if len(keys) == 0 {
		t.Fatalf("JWKS has no keys: %v", set)
	}
	var kids []string
	for _, k := range keys {
		m, _ := k.(map[string]any)
		kid, _ := m["kid"].(string)
		if kid == "" {
			t.Fatalf("JWKS key without kid: %v", m)
		}
		kids = append(kids, kid)
	}
	return kids
}

// callAPI sends GET url with the Authorization header set to authz (none
// when empty) and returns the answer.
func callAPI(t *testing.T, url, authz string) (*http.Response, string) {
	t.Helper()
	req := newRequest(t, http.MethodGet, url, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	return httpDo(t, req)
}

// tamperClaims re-encodes a JWT claims segment with sub changed to admin.
func tamperClaims(t *testing.T, seg string) string {
	t.Helper()
	claims := decodeSegment(t, seg)
	claims["sub"] = "admin"
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
