package integration

// Helpers of the two-node tests (nodes_test.go): one real PostgreSQL
// (internal/pgtest) and two child Caddy processes built from ./cmd/caddy
// that share it. Ports (see main_test.go):
//
//	19370-19374  the PostgreSQL (the first free one)
//	19375-19379  node A: oauth_server (also the cluster's issuer), gate, admin, http_port, https_port
//	19380-19384  node B: the same five
import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/oauthgate/caddy-oauthgate/internal/pgtest"
)

const (
	nodesKEK = "nodes-key-encryption-key-0123456789abcdef"
	// nodesIssuer is the issuer both nodes name, as nodes behind one load
	// balancer do; node A happens to serve it.
	nodesIssuer = "http://localhost:19375"
)

// nodesPG is the PostgreSQL of the two-node tests, started on first use
// and stopped by TestMain (stopNodesPG).
var (
	nodesPGOnce sync.Once
	nodesPGSrv  *pgtest.Server
	nodesPGErr  error
)

func nodesPG(t *testing.T) *pgtest.Server {
	t.Helper()
	nodesPGOnce.Do(func() { nodesPGSrv, nodesPGErr = pgtest.Start(19370, 19374) })
	if nodesPGErr != nil {
		t.Fatalf("PostgreSQL did not start: %v", nodesPGErr)
	}
	return nodesPGSrv
}

// stopNodesPG stops the two-node tests' PostgreSQL if one was started.
func stopNodesPG() {
	if nodesPGSrv != nil {
		nodesPGSrv.Stop()
	}
}

// nodesCaddyfile is the one config both nodes run, apart from their
// ports: shared storage, one key_encryption_key, a code-flow client
// (rel-app, so relCode signs alice in), a client_credentials client
// (rel-svc), and a gated reverse_proxy to the test's upstream.
const nodesCaddyfile = `{
	skip_install_trust
	admin 127.0.0.1:@ADMIN@
	persist_config off
	default_bind 127.0.0.1
	http_port @HTTP@
	https_port @HTTPS@
	grace_period 1ns
	oauth {
		issuer ` + nodesIssuer + `
		storage postgres {
			dsn @DSN@
			max_conns 8
			connect_timeout 1s
			statement_timeout 2s
			tx_timeout 3s
		}
		key_encryption_key ` + nodesKEK + `
		access_token_ttl 10m
		client rel-app {
			secret rel-app-secret-0123456789abcdef
			redirect_uri http://127.0.0.1/callback
			grant_types authorization_code refresh_token
			scopes openid email
			trusted
		}
		client rel-svc {
			secret rel-svc-secret-0123456789abcdef
			grant_types client_credentials
			scopes invoices:read
		}
		user alice {
			password_hash @HASH@
		}
	}
}

http://:@SERVER@ {
	oauth_server
}

http://localhost:@GATE@ {
	oauth_protect {
		audience any
	}
	reverse_proxy @UPSTREAM@
}
`

// clusterNode is one Caddy process of the cluster.
type clusterNode struct {
	name   string
	server string // base URL of its oauth_server
	gate   string // URL of its gated site
	admin  string // base URL of its admin endpoint
	cfg    string // path of its Caddyfile
	home   string
	child  *crashChild
	starts int
}

// cluster is two nodes on one database and one upstream.
type cluster struct {
	pg       *pgtest.Server
	dsn      string
	upstream *upstream
	a, b     *clusterNode
}

// startCluster creates a fresh database and starts node A, then node B
// (A migrates the schema and creates the signing key; B loads it).
func startCluster(t *testing.T) *cluster {
	t.Helper()
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	pg := nodesPG(t)
	dsn, err := pg.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	c := &cluster{pg: pg, dsn: dsn, upstream: up}
	c.a = newClusterNode(t, "A", 19375, dsn, up.addr())
	c.b = newClusterNode(t, "B", 19380, dsn, up.addr())
	c.a.start(t, bin)
	c.b.start(t, bin)
	return c
}

// newClusterNode writes node name's Caddyfile; its five ports start at
// base (server, gate, admin, http, https).
func newClusterNode(t *testing.T, name string, base int, dsn, upstream string) *clusterNode {
	t.Helper()
	home := t.TempDir()
	p := func(i int) string { return fmt.Sprint(base + i) }
	cfg := strings.NewReplacer("@SERVER@", p(0), "@GATE@", p(1), "@ADMIN@", p(2), "@HTTP@", p(3), "@HTTPS@", p(4),
		"@DSN@", dsn, "@HASH@", relHash(), "@UPSTREAM@", upstream).Replace(nodesCaddyfile)
	n := &clusterNode{
		name:   name,
		server: "http://localhost:" + p(0),
		gate:   "http://localhost:" + p(1) + "/",
		admin:  "http://127.0.0.1:" + p(2),
		cfg:    filepath.Join(home, "Caddyfile"),
		home:   home,
	}
	if err := os.WriteFile(n.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *clusterNode) start(t *testing.T, bin string) {
	t.Helper()
	n.starts++
	n.child = startCrashChild(t, bin, n.cfg, n.home, fmt.Sprintf("caddy-%s-%d.log", n.name, n.starts), n.server)
}

// restart kills the node and starts it again on the same config, for a
// failure message to tell state the database lacks from state a running
// node has not caught up with.
func (n *clusterNode) restart(t *testing.T) {
	t.Helper()
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	n.child.kill(t)
	n.start(t, bin)
}

// logs is everything the node's processes wrote, for a failure message.
func (n *clusterNode) logs() string {
	var b strings.Builder
	for i := 1; i <= n.starts; i++ {
		out, _ := os.ReadFile(filepath.Join(n.home, fmt.Sprintf("caddy-%s-%d.log", n.name, i)))
		fmt.Fprintf(&b, "--- node %s, run %d ---\n%s", n.name, i, out)
	}
	return b.String()
}

// oauth2Config is rel-app's golang.org/x/oauth2 config at node n.
func (n *clusterNode) oauth2Config() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     relAppID,
		ClientSecret: relAppSecret,
		RedirectURL:  relRedirect,
		Endpoint: oauth2.Endpoint{
			AuthURL:   n.server + "/oauth/authorize",
			TokenURL:  n.server + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		Scopes: []string{"openid", "email"},
	}
}

// nodesCtx is a context whose oauth2 HTTP client is c.
func nodesCtx(c *http.Client) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	return context.WithValue(ctx, oauth2.HTTPClient, c), cancel
}

// exchange redeems code at node n with golang.org/x/oauth2.
func (n *clusterNode) exchange(code, verifier string) (*oauth2.Token, error) {
	ctx, cancel := nodesCtx(relNoRedirects)
	defer cancel()
	return n.oauth2Config().Exchange(ctx, code, oauth2.VerifierOption(verifier))
}

// refresh presents refresh token rt at node n with golang.org/x/oauth2.
func (n *clusterNode) refresh(rt string) (*oauth2.Token, error) {
	ctx, cancel := nodesCtx(relNoRedirects)
	defer cancel()
	return n.oauth2Config().TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
}

// clientCredentials gets an access token for rel-svc at node n.
func (n *clusterNode) clientCredentials() (*oauth2.Token, error) {
	ctx, cancel := nodesCtx(relNoRedirects)
	defer cancel()
	cfg := clientcredentials.Config{ClientID: relSvcID, ClientSecret: relSvcSecret, TokenURL: n.server + "/oauth/token",
		Scopes: []string{"invoices:read"}, AuthStyle: oauth2.AuthStyleInHeader}
	return cfg.Token(ctx)
}

// code signs alice in at node n and returns a fresh code and its
// verifier.
func (n *clusterNode) code(t *testing.T) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	code, err := relCode(n.server, verifier)
	if err != nil {
		t.Fatalf("getting a code at node %s: %v", n.name, err)
	}
	return code, verifier
}

// gateStatus is the status of GET on node n's gated site with the
// access token; err means no answer arrived.
func (n *clusterNode) gateStatus(tok string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, n.gate, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := relNoRedirects.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// mustPass checks that node n's gate lets tok through to the upstream.
func (n *clusterNode) mustPass(t *testing.T, tok, when string) {
	t.Helper()
	status, err := n.gateStatus(tok)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s: node %s's gate answered %d (%v), want 200", when, n.name, status, err)
	}
}

// refusedWithin polls node n's gate with tok every 50ms until it is
// refused (401) and returns how long that took, or false when it still
// passed after limit.
func (n *clusterNode) refusedWithin(tok string, limit time.Duration) (time.Duration, bool, error) {
	began := time.Now()
	for {
		status, err := n.gateStatus(tok)
		if err != nil {
			return 0, false, err
		}
		if status == http.StatusUnauthorized {
			return time.Since(began), true, nil
		}
		if status != http.StatusOK {
			return 0, false, fmt.Errorf("node %s's gate answered %d, want 200 or 401", n.name, status)
		}
		if time.Since(began) > limit {
			return time.Since(began), false, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rotateKey rotates the signing key through node n's admin API and
// returns the new kid.
func (n *clusterNode) rotateKey(t *testing.T) string {
	t.Helper()
	resp, err := relNoRedirects.Post(n.admin+"/oauth/keys/rotate", "application/json", nil)
	if err != nil {
		t.Fatalf("POST /oauth/keys/rotate at node %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	var out struct {
		Kid string `json:"kid"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Kid == "" {
		t.Fatalf("POST /oauth/keys/rotate at node %s: %d %s", n.name, resp.StatusCode, body)
	}
	return out.Kid
}

// revoke revokes tok at node n (RFC 7009) as client id.
func (n *clusterNode) revoke(t *testing.T, id, secret, tok string) {
	t.Helper()
	a, err := relPost(relNoRedirects, n.server+"/oauth/revoke", id, secret, url.Values{"token": {tok}})
	if err != nil || a.status != http.StatusOK {
		t.Fatalf("RFC 7009 revocation at node %s: %v %d %v", n.name, err, a.status, a.body)
	}
}

// tokenErrorCode is the status and OAuth error code of a token
// endpoint's error answer; ok is false when no answer arrived (a
// transport error).
func tokenErrorCode(err error) (status int, code string, ok bool) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return 0, "", false
	}
	return re.Response.StatusCode, re.ErrorCode, true
}

// isInvalidGrant reports whether err is the 400 invalid_grant answer.
func isInvalidGrant(err error) bool {
	status, code, ok := tokenErrorCode(err)
	return ok && status == http.StatusBadRequest && code == "invalid_grant"
}
