package grants

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cimdPublicIP is what the test resolver answers for the document host:
// a public address, which the test dialer then sends to the loopback
// test server. Only this package's tests can set those hooks.
var cimdPublicIP = netip.MustParseAddr("93.184.215.14")

const cimdHost = "example.com" // httptest's certificate names it
const cimdURL = "https://" + cimdHost + "/oauth/client.json"

// cimdDoc is a valid document for id.
func cimdDoc(id string, kv ...string) string {
	m := map[string]string{"client_id": `"` + id + `"`, "client_name": `"Agent"`, "redirect_uris": `["http://127.0.0.1/cb"]`,
		"token_endpoint_auth_method": `"none"`, "grant_types": `["authorization_code","refresh_token"]`}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(m, kv[i])
		} else {
			m[kv[i]] = kv[i+1]
		}
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, `"`+k+`":`+v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// cimdNet is the test's network: what the resolver answers, what was
// dialed, and the server behind it all.
type cimdNet struct {
	srv     *httptest.Server
	hits    atomic.Int32
	lookups atomic.Int32
	mu      sync.Mutex
	answer  func(n int32) []netip.Addr
	dialed  []string
	handler http.HandlerFunc
}

func (n *cimdNet) dials() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dialed...)
}

// newCIMDEngine starts an engine with client ID metadata documents on,
// its fetcher resolving every name to cimdPublicIP (unless answer says
// otherwise) and dialing the TLS test server whatever address it was
// checked for.
func newCIMDEngine(t *testing.T, mod func(*ClientIDMetadataConfig), handler http.HandlerFunc) (*Engine, *cimdNet) {
	t.Helper()
	n := &cimdNet{handler: handler}
	n.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		n.handler(w, r)
	}))
	t.Cleanup(n.srv.Close)
	e := newEngine(t, withConfig(func(c *Config) {
		c.ClientIDMetadata = &ClientIDMetadataConfig{}
		if mod != nil {
			mod(c.ClientIDMetadata)
		}
	}))
	f := e.cimd.fetch
	f.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		k := n.lookups.Add(1)
		if n.answer != nil {
			return n.answer(k), nil
		}
		return []netip.Addr{cimdPublicIP}, nil
	}
	f.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		n.dialed = append(n.dialed, addr)
		n.mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, n.srv.Listener.Addr().String())
	}
	pool := x509.NewCertPool()
	pool.AddCert(n.srv.Certificate())
	f.rootCAs = pool
	f.localAddrs = func() []netip.Addr { return nil }
	e.cimd.http = f.client()
	return e, n
}

func serveDoc(doc string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		fmt.Fprint(w, doc)
	}
}

// TestCIMDHappyPath: MCP-02. A document at an https URL registers a
// public client that signs alice in with PKCE, is asked for consent, and
// redeems its code; the metadata advertises the feature; the document is
// fetched once while its cache lasts.
func TestCIMDHappyPath(t *testing.T) {
	e, n := newCIMDEngine(t, nil, serveDoc(cimdDoc(cimdURL), "Cache-Control", "max-age=300"))
	m, err := e.metadata(t.Context())
	if err != nil || !m.ClientIDMetadataDocumentSupported || !strings.Contains(strings.Join(m.TokenEndpointAuthMethodsSupported, " "), AuthNone) {
		t.Fatalf("metadata: %+v %v", m, err)
	}
	b := newBrowser(t, e)
	verifier, challenge := newPKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {cimdURL}, "redirect_uri": {"http://127.0.0.1:4711/cb"}, "scope": {"openid"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"s"}}
	rec := b.login(b.get(AuthorizePath+"?"+q.Encode()), "alice", "alice-pw")
	if !isConsentPage(rec) || !strings.Contains(rec.Body.String(), "Agent") {
		t.Fatalf("no consent page for a metadata document client:\n%s", rec.Body)
	}
	loc := mustLocation(t, b.consent(rec, "allow"))
	tr := postTokenRaw(e, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {cimdURL},
		"redirect_uri": {"http://127.0.0.1:4711/cb"}, "code_verifier": {verifier}}, "")
	wantOK(t, tr)
	if got := n.hits.Load(); got != 1 {
		t.Fatalf("document fetched %d times, want 1 (cached)", got)
	}
	if d := n.dials(); len(d) != 1 || d[0] != cimdPublicIP.String()+":443" {
		t.Fatalf("dialed %v, want the checked address only", d)
	}
	// Without PKCE: refused, on a page (an untrusted client).
	rec = b.get(AuthorizePath + "?" + url.Values{"response_type": {"code"}, "client_id": {cimdURL}, "redirect_uri": {"http://127.0.0.1/cb"}}.Encode())
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), "invalid_request") {
		t.Fatalf("no PKCE: %d %v", rec.Code, rec.Header())
	}
	// A redirect URI the document does not list: an error page.
	rec = b.get(AuthorizePath + "?" + url.Values{"response_type": {"code"}, "client_id": {cimdURL}, "redirect_uri": {"https://evil.test/cb"},
		"code_challenge": {newChallenge()}, "code_challenge_method": {"S256"}}.Encode())
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
		t.Fatalf("unlisted redirect: %d %v", rec.Code, rec.Header())
	}
}

// TestCIMDOffByDefault: an https client_id is an unknown client, and
// nothing is fetched.
func TestCIMDOffByDefault(t *testing.T) {
	e := newEngine(t)
	if c, err := e.lookupClient(t.Context(), cimdURL); c != nil || err != nil {
		t.Fatalf("lookup: %v %v", c, err)
	}
	m, _ := e.metadata(t.Context())
	if m.ClientIDMetadataDocumentSupported {
		t.Fatal("advertised while off")
	}
}

// TestCIMDSSRFRefusals: every address that is not public, the server's
// own addresses (where the admin endpoint listens), redirects, oversize
// and slow documents, plain http, and DNS rebinding between the check
// and the connection.
func TestCIMDSSRFRefusals(t *testing.T) {
	addrs := func(ss ...string) func(int32) []netip.Addr {
		return func(int32) []netip.Addr {
			var out []netip.Addr
			for _, s := range ss {
				out = append(out, netip.MustParseAddr(s))
			}
			return out
		}
	}
	for _, tc := range []struct {
		name   string
		answer func(int32) []netip.Addr
	}{
		{"loopback", addrs("127.0.0.1")},
		{"loopback 127/8", addrs("127.1.2.3")},
		{"IPv6 loopback", addrs("::1")},
		{"link-local metadata service", addrs("169.254.169.254")},
		{"IPv6 link-local", addrs("fe80::1")},
		{"private 10/8", addrs("10.0.0.1")},
		{"private 172.16/12", addrs("172.20.1.1")},
		{"private 192.168/16", addrs("192.168.1.1")},
		{"IPv6 unique local", addrs("fd00::1")},
		{"CGNAT", addrs("100.64.0.1")},
		{"multicast", addrs("224.0.0.1")},
		{"unspecified", addrs("0.0.0.0")},
		{"IPv6 unspecified", addrs("::")},
		{"IPv4-mapped loopback", addrs("::ffff:127.0.0.1")},
		{"IPv4-mapped private", addrs("::ffff:10.1.2.3")},
		{"IPv4-mapped link-local", addrs("::ffff:169.254.169.254")},
		{"NAT64 of loopback", addrs("64:ff9b::7f00:1")},
		{"6to4", addrs("2002:7f00:1::1")},
		{"one public, one private", addrs(cimdPublicIP.String(), "10.0.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, n := newCIMDEngine(t, nil, serveDoc(cimdDoc(cimdURL)))
			n.answer = tc.answer
			if c, err := e.lookupClient(t.Context(), cimdURL); c != nil || err != nil {
				t.Fatalf("accepted: %v %v", c, err)
			}
			if d := n.dials(); len(d) != 0 || n.hits.Load() != 0 {
				t.Fatalf("connected anyway: %v, %d requests", d, n.hits.Load())
			}
		})
	}

	t.Run("literal loopback IP, refused without a connection", func(t *testing.T) {
		e, n := newCIMDEngine(t, nil, serveDoc(cimdDoc("https://127.0.0.1/x.json")))
		if c, _ := e.lookupClient(t.Context(), "https://127.0.0.1/x.json"); c != nil || len(n.dials()) != 0 || n.lookups.Load() != 0 {
			t.Fatalf("client %v, dials %v, lookups %d", c, n.dials(), n.lookups.Load())
		}
	})
	t.Run("the Caddy admin address", func(t *testing.T) {
		// localhost:2019 through the system resolver: loopback.
		e, n := newCIMDEngine(t, nil, serveDoc(cimdDoc("https://localhost:2019/config/")))
		e.cimd.fetch.lookup = nil
		if c, _ := e.lookupClient(t.Context(), "https://localhost:2019/config/"); c != nil || len(n.dials()) != 0 {
			t.Fatalf("client %v, dials %v", c, n.dials())
		}
		// An admin endpoint on a public address of this machine: every
		// address of the machine's own is refused.
		e, n = newCIMDEngine(t, nil, serveDoc(cimdDoc(cimdURL)))
		e.cimd.fetch.localAddrs = func() []netip.Addr { return []netip.Addr{cimdPublicIP} }
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil || len(n.dials()) != 0 {
			t.Fatalf("own address: client %v, dials %v", c, n.dials())
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		var followed atomic.Bool
		e, n := newCIMDEngine(t, nil, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere" {
				followed.Store(true)
			}
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		})
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil || followed.Load() || n.hits.Load() != 1 {
			t.Fatalf("client %v, followed %v, hits %d", c, followed.Load(), n.hits.Load())
		}
	})
	t.Run("oversize", func(t *testing.T) {
		big := cimdDoc(cimdURL, "client_uri", `"https://example.com/`+strings.Repeat("a", 6<<10)+`"`)
		e, _ := newCIMDEngine(t, nil, serveDoc(big))
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil {
			t.Fatal("accepted a document over 5 KiB")
		}
		// Without a Content-Length (streamed): the cap still holds.
		e, _ = newCIMDEngine(t, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for range 10 {
				fmt.Fprint(w, strings.Repeat(" ", 1<<10))
				w.(http.Flusher).Flush()
			}
			fmt.Fprint(w, cimdDoc(cimdURL))
		})
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil {
			t.Fatal("accepted a streamed document over 5 KiB")
		}
	})
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		e, _ := newCIMDEngine(t, nil, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		e.cimd.fetch.timeout = 300 * time.Millisecond
		e.cimd.http = e.cimd.fetch.client()
		start := time.Now()
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil {
			t.Fatal("accepted")
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("a slow server held the fetch %v", el)
		}
		if cimdFetchTimeout != 5*time.Second {
			t.Fatalf("the production timeout is %v, want 5s", cimdFetchTimeout)
		}
	})
	t.Run("plain http", func(t *testing.T) {
		e, n := newCIMDEngine(t, nil, serveDoc(cimdDoc("http://example.com/c.json")))
		if c, _ := e.lookupClient(t.Context(), "http://example.com/c.json"); c != nil || n.lookups.Load() != 0 {
			t.Fatal("an http client_id was fetched")
		}
		if _, _, err := e.cimd.fetch.fetch(t.Context(), e.cimd.http, "http://example.com/c.json"); err != errFetchNotHTTPS {
			t.Fatalf("fetch of http: %v", err)
		}
	})
	t.Run("DNS rebinding between check and connect", func(t *testing.T) {
		e, n := newCIMDEngine(t, func(c *ClientIDMetadataConfig) { c.CacheMin, c.CacheMax = time.Millisecond, time.Millisecond },
			serveDoc(cimdDoc(cimdURL)))
		// The first answer is public, every later one loopback.
		n.answer = func(k int32) []netip.Addr {
			if k == 1 {
				return []netip.Addr{cimdPublicIP}
			}
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		if c, _ := e.lookupClient(t.Context(), cimdURL); c == nil {
			t.Fatal("the first fetch failed")
		}
		if n.lookups.Load() != 1 || len(n.dials()) != 1 || n.dials()[0] != cimdPublicIP.String()+":443" {
			t.Fatalf("lookups %d, dials %v: the connection must go to the address checked", n.lookups.Load(), n.dials())
		}
		time.Sleep(5 * time.Millisecond)
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil || len(n.dials()) != 1 {
			t.Fatalf("after rebinding: client %v, dials %v", c, n.dials())
		}
	})
	t.Run("allow-list", func(t *testing.T) {
		e, n := newCIMDEngine(t, func(c *ClientIDMetadataConfig) { c.AllowedHosts = []string{"agents.example.org"} }, serveDoc(cimdDoc(cimdURL)))
		if c, _ := e.lookupClient(t.Context(), cimdURL); c != nil || n.lookups.Load() != 0 {
			t.Fatal("a host outside the allow-list was fetched")
		}
		e, _ = newCIMDEngine(t, func(c *ClientIDMetadataConfig) { c.AllowedHosts = []string{"EXAMPLE.com"} }, serveDoc(cimdDoc(cimdURL)))
		if c, _ := e.lookupClient(t.Context(), cimdURL); c == nil {
			t.Fatal("an allowed host was refused")
		}
	})
}

// TestCIMDDocumentRules: the document must name itself exactly, list
// valid redirect URIs, and describe a public client.
func TestCIMDDocumentRules(t *testing.T) {
	for _, tc := range []struct {
		name, id, doc string
		ok            bool
	}{
		{"valid", cimdURL, cimdDoc(cimdURL), true},
		{"auth method defaults to none", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", ""), true},
		{"private_key_jwt with jwks_uri", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"private_key_jwt"`, "jwks_uri", `"https://example.com/jwks"`), true},
		{"client_id with a trailing slash", cimdURL, cimdDoc(cimdURL + "/"), false},
		{"client_id of another host", cimdURL, cimdDoc("https://other.example/oauth/client.json"), false},
		{"client_id missing", cimdURL, cimdDoc(cimdURL, "client_id", ""), false},
		{"client_secret_basic", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"client_secret_basic"`), false},
		{"private_key_jwt without jwks_uri", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"private_key_jwt"`), false},
		{"jwks inline", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"private_key_jwt"`, "jwks", `{"keys":[]}`), false},
		{"jwks_uri on a private IP", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"private_key_jwt"`, "jwks_uri", `"https://192.168.0.1/jwks"`), false},
		{"jwks_uri on localhost", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"private_key_jwt"`, "jwks_uri", `"https://localhost/jwks"`), false},
		{"jwks_uri over http", cimdURL, cimdDoc(cimdURL, "token_endpoint_auth_method", `"private_key_jwt"`, "jwks_uri", `"http://example.com/jwks"`), false},
		{"no redirect_uris", cimdURL, cimdDoc(cimdURL, "redirect_uris", ""), false},
		{"wildcard redirect", cimdURL, cimdDoc(cimdURL, "redirect_uris", `["https://example.com/*"]`), false},
		{"javascript redirect", cimdURL, cimdDoc(cimdURL, "redirect_uris", `["javascript:alert(1)"]`), false},
		{"client_credentials", cimdURL, cimdDoc(cimdURL, "grant_types", `["client_credentials"]`, "response_types", `[]`, "redirect_uris", `["https://example.com/cb"]`), false},
		{"not JSON", cimdURL, "<html>", false},
		{"root path", "https://example.com/", cimdDoc("https://example.com/"), false},
		{"fragment", cimdURL + "#x", cimdDoc(cimdURL + "#x"), false},
		{"userinfo", "https://u@example.com/c.json", cimdDoc("https://u@example.com/c.json"), false},
		{"dot segment", "https://example.com/a/../c.json", cimdDoc("https://example.com/a/../c.json"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCIMDEngine(t, nil, serveDoc(tc.doc))
			c, err := e.lookupClient(t.Context(), tc.id)
			if err != nil || (c != nil) != tc.ok {
				t.Fatalf("client %+v, err %v; want ok=%v", c, err, tc.ok)
			}
			if c != nil && (!c.Registered || c.Trusted || c.AuthMethod == AuthSecretBasic || c.ID != tc.id) {
				t.Fatalf("client %+v", c)
			}
		})
	}
}

// TestCIMDCacheTTL: Cache-Control and Expires within the floor and the
// ceiling.
func TestCIMDCacheTTL(t *testing.T) {
	m, err := newCIMD(&ClientIDMetadataConfig{CacheMin: time.Minute, CacheMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		hdr  http.Header
		want time.Duration
	}{
		{http.Header{}, time.Minute},
		{http.Header{"Cache-Control": {"max-age=600"}}, 10 * time.Minute},
		{http.Header{"Cache-Control": {"public, max-age=5"}}, time.Minute},
		{http.Header{"Cache-Control": {"max-age=999999999999"}}, time.Hour},
		{http.Header{"Cache-Control": {"no-store"}}, time.Minute},
		{http.Header{"Cache-Control": {"max-age=600, no-cache"}}, time.Minute},
		{http.Header{"Expires": {now.Add(30 * time.Minute).UTC().Format(http.TimeFormat)}}, 30 * time.Minute},
	} {
		if got := m.cacheTTL(tc.hdr, now); got < tc.want-time.Second || got > tc.want {
			t.Errorf("%v: %v, want %v", tc.hdr, got, tc.want)
		}
	}
	if _, err := newCIMD(&ClientIDMetadataConfig{CacheMin: time.Hour, CacheMax: time.Minute}); err == nil {
		t.Error("cache_max < cache_min accepted")
	}
	if _, err := newCIMD(&ClientIDMetadataConfig{AllowedHosts: []string{"https://x.test"}}); err == nil {
		t.Error("an allowed host with a scheme accepted")
	}
}

// TestPublicAddr: the address rule alone.
func TestPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"93.184.215.14": true, "2606:4700::1111": true, "8.8.8.8": true,
		"127.0.0.1": false, "10.0.0.1": false, "169.254.169.254": false, "100.100.100.200": false, "::ffff:192.168.0.1": false,
		"fe80::1": false, "ff02::1": false, "::": false, "0.1.2.3": false, "192.0.2.1": false, "2001:db8::1": false, "255.255.255.255": false,
	} {
		if got := publicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}
