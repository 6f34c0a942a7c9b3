package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// The production recipes of docs/production.md, run as the page shows
// them. Ports (see main_test.go):
//
//	19950/19951  recipe A: http_port / https_port (both names on 19951)
//	19960        recipe B: Caddy's plain-HTTP port behind the test's proxy
//	19961        recipe B: the test's TLS-terminating proxy
const (
	prodHTTPPort    = "19950"
	prodHTTPSPort   = "19951"
	prodLBHTTPPort  = "19960"
	prodLBProxyPort = "19961"

	prodSecret = "prod-billing-secret-0123456789abcdef"
	prodKEK    = "prod-key-encryption-key-0123456789abcdef"
	// prodClientIP is the address the test's load balancer says the
	// client has (TEST-NET-3, RFC 5737): the test's real peer is loopback.
	prodClientIP = "203.0.113.7"

	issuerWarning = "no site with oauth_server serves the issuer"
)

// docCaddyfile returns the fenced caddyfile block that follows the line
// "<!-- tested: name ..." in docs/production.md.
func docCaddyfile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "production.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	marker := "<!-- tested: " + name + " "
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("docs/production.md has no %q line", marker)
	}
	rest := doc[i:]
	const open = "\n```caddyfile\n"
	j := strings.Index(rest, open)
	if j < 0 || strings.Contains(rest[:j], "\n\n") {
		t.Fatalf("docs/production.md: no ```caddyfile block right after %q", marker)
	}
	block := rest[j+len(open):]
	k := strings.Index(block, "\n```\n")
	if k < 0 {
		t.Fatalf("docs/production.md: the block after %q does not end", marker)
	}
	return block[:k+1]
}

// replaceAll replaces old in s and fails if s has no old: when the page
// changes, the test must be told, not run something else.
func replaceAll(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the documented Caddyfile has no %q; update integration/production_test.go and the table in docs/production.md", old)
	}
	return strings.ReplaceAll(s, old, new)
}

// prodRender makes a documented recipe runnable here, with exactly the
// changes listed under "What the test changes" in docs/production.md:
// extra global options, the admin address, the issuer's and audience's
// port, the paths and the upstream (recipe B's trusted proxies are
// replaced by its test).
func prodRender(t *testing.T, doc, globals, publicPort, dir, upstream string) string {
	t.Helper()
	cfg := replaceAll(t, doc, "\tadmin localhost:2019\n", "\tadmin localhost:2999\n"+globals+"\tdefault_bind 127.0.0.1\n\tgrace_period 1ns\n")
	cfg = replaceAll(t, cfg, "https://auth.example.com", "https://auth.example.com:"+publicPort)
	cfg = replaceAll(t, cfg, "https://api.example.com", "https://api.example.com:"+publicPort)
	cfg = replaceAll(t, cfg, "/var/lib/caddy/oauth/oauth.db", filepath.Join(dir, "oauth.db"))
	cfg = replaceAll(t, cfg, "/var/log/caddy/", dir+string(filepath.Separator))
	return replaceAll(t, cfg, "reverse_proxy localhost:8080", "reverse_proxy "+upstream)
}

// exampleDialer sends auth.example.com and api.example.com to loopback
// (as DNS would send them to this machine) and refuses anything else.
func exampleDialer(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "auth.example.com" && host != "api.example.com" {
		return nil, fmt.Errorf("the test resolves only auth.example.com and api.example.com, not %q", host)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

// exampleClient is an HTTPS client for the two names that trusts roots
// only (not the system's roots).
func exampleClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:       exampleDialer,
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// prodClientCredentials is the client of the recipes' billing-service.
func prodClientCredentials(publicPort string) clientcredentials.Config {
	return clientcredentials.Config{
		ClientID:     "billing-service",
		ClientSecret: prodSecret,
		TokenURL:     "https://auth.example.com:" + publicPort + "/oauth/token",
		Scopes:       []string{"invoices:read"},
	}
}

// prodDo sends a request with the client and returns status and body.
func prodDo(t *testing.T, c *http.Client, method, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req := newRequest(t, method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// logLines reads a JSON log file Caddy wrote; a missing file is empty.
func logLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v\n%s", file, err, sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// waitLog waits until a line of file satisfies ok and returns it.
func waitLog(t *testing.T, file, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		for _, l := range logLines(t, file) {
			if ok(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(file)
			t.Fatalf("%s has no line with %s:\n%s", file, what, b)
		}
	}
}

// audHas reports whether an aud claim (a string or an array) names aud.
func audHas(claim any, aud string) bool {
	switch c := claim.(type) {
	case string:
		return c == aud
	case []any:
		for _, a := range c {
			if a == aud {
				return true
			}
		}
	}
	return false
}

// hasMsg reports whether a log file has a line whose message contains s.
func hasMsg(t *testing.T, file, s string) bool {
	for _, l := range logLines(t, file) {
		if msg, _ := l["msg"].(string); strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// TestProductionRecipeHTTPS runs recipe A of docs/production.md, Caddy
// ending TLS for auth.example.com and api.example.com, with Caddy's
// internal CA in place of ACME: a clientcredentials client that trusts
// only that CA's root gets a token from https://auth.example.com and
// calls the app through the gate at https://api.example.com. The start
// log has no issuer warning (and has it when the issuer misses the
// port, so the check can fail), and the audit logger's lines go to their
// own file only.
func TestProductionRecipeHTTPS(t *testing.T) {
	t.Setenv("OAUTH_KEK", prodKEK)
	t.Setenv("BILLING_SECRET", prodSecret)
	doc := docCaddyfile(t, "recipe-a")
	app := newUpstream(t)
	dir := t.TempDir()
	// Caddy's storage (certificates, the local CA) in the test's
	// directory: caddy.DefaultStorage is fixed when the process starts,
	// before TestMain points XDG_DATA_HOME elsewhere.
	caddyData := filepath.Join(dir, "caddy-data")
	globals := "\tlocal_certs\n\tskip_install_trust\n\tstorage file_system {\n\t\troot " + caddyData + "\n\t}\n" +
		"\thttp_port " + prodHTTPPort + "\n\thttps_port " + prodHTTPSPort + "\n"
	cfg := prodRender(t, doc, globals, prodHTTPSPort, dir, app.addr())
	startCaddy(t, cfg)
	caddyLog, auditLog := filepath.Join(dir, "caddy.log"), filepath.Join(dir, "oauth-audit.log")

	// The internal CA's root, in Caddy's storage.
	rootFile := filepath.Join(caddyData, "pki", "authorities", "local", "root.crt")
	var client *http.Client
	auth := "https://auth.example.com:" + prodHTTPSPort
	api := "https://api.example.com:" + prodHTTPSPort
	// The certificates are issued as the config starts; wait for them.
	var lastErr error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if pem, err := os.ReadFile(rootFile); err != nil {
			lastErr = err
		} else {
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				t.Fatalf("%s holds no certificate", rootFile)
			}
			client = exampleClient(roots)
			resp, err := client.Get(auth + "/.well-known/openid-configuration")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery at %s over TLS with the local CA's root: %v", auth, lastErr)
		}
	}

	resp, body := prodDo(t, client, http.MethodGet, auth+"/.well-known/openid-configuration", nil)
	var disc map[string]any
	if err := json.Unmarshal([]byte(body), &disc); err != nil || disc["issuer"] != auth || disc["token_endpoint"] != auth+"/oauth/token" {
		t.Fatalf("discovery: %d %v %s", resp.StatusCode, err, body)
	}
	// Port 80 redirects to HTTPS (automatic HTTPS).
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: exampleDialer, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, _ := prodDo(t, plain, http.MethodGet, "http://api.example.com:"+prodHTTPPort+"/", nil); resp.StatusCode != http.StatusPermanentRedirect ||
		!strings.HasPrefix(resp.Header.Get("Location"), "https://api.example.com") {
		t.Fatalf("plain HTTP: %d Location %q, want 308 to https", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Without a token, the gate answers 401 and names its metadata.
	resp, _ = prodDo(t, client, http.MethodGet, api+"/", nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"),
		`resource_metadata="`+api+`/.well-known/oauth-protected-resource"`) || app.count() != 0 {
		t.Fatalf("without a token: %d %q, upstream saw %d requests", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), app.count())
	}

	// A client_credentials client gets a token and calls the app.
	ctx := context.WithValue(clientContext(t), oauth2.HTTPClient, client)
	cc := prodClientCredentials(prodHTTPSPort)
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials token from %s: %v", cc.TokenURL, err)
	}
	if _, claims := jwtParts(t, tok.AccessToken); claims["iss"] != auth || !audHas(claims["aud"], api) {
		t.Fatalf("token claims iss=%v aud=%v, want %s and %s", claims["iss"], claims["aud"], auth, api)
	}
	resp, err = cc.Client(ctx).Get(api + "/invoices")
	if err != nil {
		t.Fatalf("GET %s/invoices with the token: %v", api, err)
	}
	body2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body2) != "legacy app" || app.count() != 1 {
		t.Fatalf("with the token: %d %q, upstream saw %d requests", resp.StatusCode, body2, app.count())
	}
	if got := app.last().Header.Get("X-Forwarded-User"); got != "billing-service" {
		t.Fatalf("the app got X-Forwarded-User %q, want billing-service", got)
	}

	// The start log: Caddy's log is the documented file (it has the
	// certificates' lines), and the issuer warning is not in it.
	waitLog(t, caddyLog, "certificate obtained", func(l map[string]any) bool {
		msg, _ := l["msg"].(string)
		return strings.Contains(msg, "certificate obtained successfully")
	})
	if hasMsg(t, caddyLog, issuerWarning) {
		t.Fatalf("%s has the issuer warning for the documented recipe", caddyLog)
	}

	// The audit logger: a key rotation is in the audit file, not in
	// Caddy's log.
	resp, body = httpDo(t, newRequest(t, http.MethodPost, "http://"+adminAddr+"/oauth/keys/rotate", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /oauth/keys/rotate: %d %s", resp.StatusCode, body)
	}
	waitLog(t, auditLog, "signing key rotated", func(l map[string]any) bool {
		return l["logger"] == "oauth.audit" && l["msg"] == "signing key rotated"
	})
	if hasMsg(t, caddyLog, "signing key rotated") {
		t.Fatalf("%s has the audit line although the recipe excludes oauth.audit", caddyLog)
	}
	// The access log is the documented file, and the token is not in it.
	waitLog(t, filepath.Join(dir, "access.log"), "the call to /invoices", func(l map[string]any) bool {
		req, _ := l["request"].(map[string]any)
		return req != nil && req["uri"] == "/invoices" && req["host"] == "api.example.com:"+prodHTTPSPort
	})
	if b, _ := os.ReadFile(filepath.Join(dir, "access.log")); strings.Contains(string(b), tok.AccessToken) {
		t.Fatal("the access log has the access token")
	}

	// The check itself can fail: an issuer without the port that the
	// site listens on is warned about.
	dir2 := t.TempDir()
	cfg2 := strings.Replace(prodRender(t, doc, globals, prodHTTPSPort, dir2, app.addr()), "issuer "+auth+"\n", "issuer https://auth.example.com\n", 1)
	startCaddy(t, cfg2)
	waitLog(t, filepath.Join(dir2, "caddy.log"), "the issuer warning", func(l map[string]any) bool {
		msg, _ := l["msg"].(string)
		return strings.Contains(msg, issuerWarning) && l["issuer"] == "https://auth.example.com"
	})
}

// prodLoadBalancer is the test's TLS-terminating load balancer for
// recipe B: it ends TLS on 127.0.0.1:19961 (httptest's certificate is
// for *.example.com), forwards plain HTTP to Caddy with the Host kept,
// appends the client's address to X-Forwarded-For as load balancers do
// (prodClientIP: the real peer is loopback) and sets
// X-Forwarded-Proto/-Host.
func prodLoadBalancer(t *testing.T) *httptest.Server {
	target, _ := url.Parse("http://127.0.0.1:" + prodLBHTTPPort)
	lb := httptest.NewUnstartedServer(&httputil.ReverseProxy{Transport: freshConns, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		xff := append(pr.In.Header.Values("X-Forwarded-For"), prodClientIP)
		pr.Out.Header.Set("X-Forwarded-For", strings.Join(xff, ", "))
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
		pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:"+prodLBProxyPort)
	if err != nil {
		t.Fatal(err)
	}
	lb.Listener.Close()
	lb.Listener = ln
	lb.StartTLS()
	t.Cleanup(lb.Close)
	return lb
}

// TestProductionRecipeBehindTLSProxy runs recipe B of docs/production.md
// behind the test's TLS-terminating proxy: plain HTTP from 127.0.0.1,
// declared in trusted_proxies (strict), and behind_tls_proxy. The
// clientcredentials client gets a token and calls the app through the
// proxy; a client's forged X-Forwarded-For does not become its address.
// Then, without behind_tls_proxy and trusted_proxies_strict, the same
// requests are refused by the TLS rule and the forged address is
// believed: each setting does what the page says.
func TestProductionRecipeBehindTLSProxy(t *testing.T) {
	t.Setenv("OAUTH_KEK", prodKEK)
	t.Setenv("BILLING_SECRET", prodSecret)
	doc := docCaddyfile(t, "recipe-b")
	app := newUpstream(t)
	dir := t.TempDir()
	render := func(dir string) string {
		cfg := prodRender(t, doc, "\thttp_port "+prodLBHTTPPort+"\n", prodLBProxyPort, dir, app.addr())
		return replaceAll(t, cfg, "trusted_proxies static 10.0.0.10/32 10.0.0.11/32\n", "trusted_proxies static 127.0.0.1/32\n")
	}
	cfg := render(dir)
	startCaddy(t, cfg)
	lb := prodLoadBalancer(t)
	roots := x509.NewCertPool()
	roots.AddCert(lb.Certificate())
	client := exampleClient(roots)
	auth := "https://auth.example.com:" + prodLBProxyPort
	api := "https://api.example.com:" + prodLBProxyPort

	resp, body := prodDo(t, client, http.MethodGet, auth+"/.well-known/openid-configuration", nil)
	var disc map[string]any
	if err := json.Unmarshal([]byte(body), &disc); err != nil || disc["issuer"] != auth {
		t.Fatalf("discovery through the proxy: %d %v %s", resp.StatusCode, err, body)
	}
	ctx := context.WithValue(clientContext(t), oauth2.HTTPClient, client)
	cc := prodClientCredentials(prodLBProxyPort)
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials token through the proxy: %v", err)
	}
	bearer := http.Header{"Authorization": {"Bearer " + tok.AccessToken}}
	resp, body = prodDo(t, client, http.MethodGet, api+"/invoices", bearer)
	if resp.StatusCode != http.StatusOK || body != "legacy app" || app.count() != 1 {
		t.Fatalf("the app through the proxy with the token: %d %q, upstream saw %d requests", resp.StatusCode, body, app.count())
	}
	resp, _ = prodDo(t, client, http.MethodGet, api+"/invoices", nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+api+`/.well-known/oauth-protected-resource"`) {
		t.Fatalf("without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A client that forges its address: strict trusted_proxies takes the
	// address the proxy saw, for the throttling and the logs alike.
	forged := http.Header{"X-Forwarded-For": {"127.0.0.1"}}
	prodDo(t, client, http.MethodGet, api+"/forged-address", forged)
	clientIPOf := func(dir string) string {
		l := waitLog(t, filepath.Join(dir, "access.log"), "the request to /forged-address", func(l map[string]any) bool {
			req, _ := l["request"].(map[string]any)
			return req != nil && req["uri"] == "/forged-address"
		})
		req := l["request"].(map[string]any)
		if req["remote_ip"] != "127.0.0.1" {
			t.Fatalf("access log: remote_ip %v, want the proxy, 127.0.0.1", req["remote_ip"])
		}
		ip, _ := req["client_ip"].(string)
		return ip
	}
	if ip := clientIPOf(dir); ip != prodClientIP {
		t.Fatalf("client_ip of a request with a forged X-Forwarded-For: %q, want %s (the address the proxy appended)", ip, prodClientIP)
	}
	if hasMsg(t, filepath.Join(dir, "caddy.log"), issuerWarning) {
		t.Fatal("the issuer warning for the documented recipe B")
	}

	// Without the two settings.
	dir2 := t.TempDir()
	cfg2 := replaceAll(t, render(dir2), "\t\tbehind_tls_proxy\n", "")
	cfg2 = replaceAll(t, cfg2, "\t\ttrusted_proxies_strict\n", "")
	startCaddy(t, cfg2)
	_, err = cc.Token(ctx)
	if re := retrieveError(t, err); re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "invalid_request" {
		t.Fatalf("token endpoint without behind_tls_proxy: %d %q, want 400 invalid_request", re.Response.StatusCode, re.ErrorCode)
	}
	resp, body = prodDo(t, client, http.MethodGet, api+"/invoices", bearer)
	if resp.StatusCode != http.StatusBadRequest || app.count() != 1 {
		t.Fatalf("the gate without behind_tls_proxy: %d %q, upstream saw %d requests; want 400 and nothing forwarded", resp.StatusCode, body, app.count())
	}
	prodDo(t, client, http.MethodGet, api+"/forged-address", forged)
	if ip := clientIPOf(dir2); ip != "127.0.0.1" {
		t.Fatalf("client_ip without trusted_proxies_strict: %q, want the forged 127.0.0.1 (else the test proves nothing about strict)", ip)
	}
}
