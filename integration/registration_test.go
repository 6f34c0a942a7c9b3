package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const regIssuer = "http://localhost:19430"

// regToken is the initial access token of the test's registration
// endpoint, from the environment as an operator would give it.
const regToken = "integration-initial-access-token-0123"

func regCaddyfile(t *testing.T, dir string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19431
	https_port 19432
	skip_install_trust
	oauth {
		issuer %s
		storage_path %s/oauth.db
		registration {
			initial_access_token {env.OAUTH_REGISTRATION_TOKEN}
			rate 20
			max_clients 10
			unused_client_ttl 1h
			scopes openid email offline_access
			grant_types authorization_code refresh_token client_credentials
		}
		client_id_metadata
		user alice {
			password_hash %s
			claim email alice@example.com
		}
	}
}
http://localhost:19430 {
	oauth_server
}
`, adminAddr, regIssuer, dir, hash)
}

// regPost sends JSON to the registration endpoint with a real HTTP client.
func regPost(t *testing.T, method, target, authz string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestDynamicRegistrationEndToEnd: a client finds the registration
// endpoint in the metadata, registers itself through Caddy with the
// initial access token, signs alice in with golang.org/x/oauth2 (code
// flow, PKCE, consent page), refreshes, reads and deletes its
// registration (RFC 7592), after which its refresh token is dead.
func TestDynamicRegistrationEndToEnd(t *testing.T) {
	t.Setenv("OAUTH_REGISTRATION_TOKEN", regToken)
	startCaddy(t, regCaddyfile(t, t.TempDir()))
	ctx := context.Background()

	_, meta := getJSON(t, regIssuer+"/.well-known/oauth-authorization-server")
	endpoint, _ := meta["registration_endpoint"].(string)
	if endpoint != regIssuer+"/oauth/register" {
		t.Fatalf("registration_endpoint = %q", endpoint)
	}
	redirect := "http://127.0.0.1:19433/callback"
	metadata := map[string]any{"client_name": "Integration CLI", "application_type": "native", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}, "scope": "openid offline_access",
		"software_id": "dropped"}
	if status, body := regPost(t, http.MethodPost, endpoint, "", metadata); status != http.StatusUnauthorized || body["error"] != "invalid_token" {
		t.Fatalf("without the initial access token: %d %v", status, body)
	}
	status, reg := regPost(t, http.MethodPost, endpoint, "Bearer "+regToken, metadata)
	if status != http.StatusCreated {
		t.Fatalf("register: %d %v", status, reg)
	}
	if _, ok := reg["software_id"]; ok {
		t.Fatalf("unknown metadata echoed: %v", reg)
	}
	clientID, _ := reg["client_id"].(string)
	rat, _ := reg["registration_access_token"].(string)
	regURI, _ := reg["registration_client_uri"].(string)
	if _, ok := reg["client_secret"]; ok || clientID == "" || rat == "" || regURI == "" {
		t.Fatalf("registration response: %v", reg)
	}

	conf := &oauth2.Config{ClientID: clientID, RedirectURL: redirect, Scopes: []string{"openid", "offline_access"},
		Endpoint: oauth2.Endpoint{AuthURL: meta["authorization_endpoint"].(string), TokenURL: meta["token_endpoint"].(string), AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	login := page(browser.Get(conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier))))
	form := formFields(t, login)
	form.Set("username", "alice")
	form.Set("password", "alice-password")
	consent := page(browser.PostForm(regIssuer+"/oauth/authorize/login", form))
	if !strings.Contains(consent, `id="allow"`) || !strings.Contains(consent, "Integration CLI") {
		t.Fatalf("a registered client got no consent page:\n%s", consent)
	}
	form = formFields(t, consent)
	form.Set("decision", "allow")
	resp, err := browser.PostForm(regIssuer+"/oauth/authorize/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-1" {
		t.Fatalf("consent: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange with x/oauth2: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	resp, body := callAPI(t, regIssuer+"/oauth/userinfo", "Bearer "+tok.AccessToken)
	if resp.StatusCode != 200 || !strings.Contains(body, `"sub":"alice"`) {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
	tok.Expiry = tok.Expiry.Add(-24 * 3600e9) // force a refresh
	refreshed, err := conf.TokenSource(ctx, tok).Token()
	if err != nil || refreshed.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %v", err)
	}

	// RFC 7592: read, then delete; the client's grant goes with it.
	if status, got := regPost(t, http.MethodGet, regURI, "Bearer "+rat, nil); status != 200 || got["client_name"] != "Integration CLI" {
		t.Fatalf("read registration: %d %v", status, got)
	}
	if status, _ := regPost(t, http.MethodGet, regURI, "Bearer "+regToken, nil); status != http.StatusUnauthorized {
		t.Fatalf("read with the initial access token: %d", status)
	}
	if status, _ := regPost(t, http.MethodDelete, regURI, "Bearer "+rat, nil); status != http.StatusNoContent {
		t.Fatalf("delete registration: %d", status)
	}
	refreshed.Expiry = tok.Expiry
	if _, err := conf.TokenSource(ctx, refreshed).Token(); err == nil {
		t.Fatal("refresh after the client deleted itself succeeded")
	}

	// A confidential client registered for client_credentials gets a
	// token through x/oauth2's clientcredentials with its one-time secret.
	status, reg = regPost(t, http.MethodPost, endpoint, "Bearer "+regToken, map[string]any{
		"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_basic", "scope": "email"})
	if status != http.StatusCreated || reg["client_secret"] == nil || reg["client_secret_expires_at"] != float64(0) {
		t.Fatalf("register confidential: %d %v", status, reg)
	}
	cc := clientcredentials.Config{ClientID: reg["client_id"].(string), ClientSecret: reg["client_secret"].(string), TokenURL: meta["token_endpoint"].(string)}
	if _, err := cc.Token(ctx); err != nil {
		t.Fatalf("client_credentials of a registered client: %v", err)
	}

	// DCR-02/03 through Caddy.
	if status, body := regPost(t, http.MethodPost, endpoint, "Bearer "+regToken, map[string]any{"redirect_uris": []string{"http://evil.test/cb"}}); status != 400 || body["error"] != "invalid_redirect_uri" {
		t.Fatalf("non-loopback http redirect: %d %v", status, body)
	}
	if status, body := regPost(t, http.MethodPost, endpoint, "Bearer "+regToken, map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "magic"}); status != 400 || body["error"] != "invalid_client_metadata" {
		t.Fatalf("unknown auth method: %d %v", status, body)
	}
}

// TestClientIDMetadataRefusalsThroughCaddy: with client_id_metadata on,
// the metadata advertises it, and a client_id URL on this machine (a
// listener of ours, the admin endpoint) or a link-local address is
// refused with an error page, without a connection reaching the
// listener. (A document on a public host cannot be served from here;
// grants' TestCIMDHappyPath covers that path through test-only hooks.)
func TestClientIDMetadataRefusalsThroughCaddy(t *testing.T) {
	t.Setenv("OAUTH_REGISTRATION_TOKEN", regToken)
	startCaddy(t, regCaddyfile(t, t.TempDir()))
	_, meta := getJSON(t, regIssuer+"/.well-known/oauth-authorization-server")
	if meta["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata: %v", meta)
	}
	// A TLS listener on loopback that counts connections.
	var conns atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:19435")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	for _, id := range []string{"https://127.0.0.1:19435/client.json", "https://localhost:19435/client.json",
		"https://" + adminAddr + "/config/", "https://169.254.169.254/latest/meta-data/client.json"} {
		q := url.Values{"client_id": {id}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1/cb"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		resp, body := httpDo(t, newRequest(t, http.MethodGet, regIssuer+"/oauth/authorize?"+q.Encode(), nil))
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "not registered") {
			t.Fatalf("%s: %d %v\n%s", id, resp.StatusCode, resp.Header, body)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections reached the local listener", n)
	}
}
