package integration

// Helpers shared by the reliability tests of issue 6 §3 (crash_test.go,
// reload_load_test.go, storagefault_test.go and the replay race below).
// Their loopback ports (19600-19699, 19800-19899) are apart from the
// other tests':
//
//	19600-19603  crash test child process: issuer, gated site, http/https ports
//	19690        crash test child process: admin endpoint
//	19620-19623  in-process reliability config: http/https ports, issuer, gated site
//	19800-19803  storage fault child process: issuer, gated site, http/https ports
//	19890        storage fault child process: admin endpoint

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

const (
	relIssuer    = "http://localhost:19622"
	relGateURL   = "http://localhost:19623/"
	relRedirect  = "http://127.0.0.1:7/callback"
	relAppID     = "rel-app"
	relAppSecret = "rel-app-secret-0123456789abcdef"
	relSvcID     = "rel-svc"
	relSvcSecret = "rel-svc-secret-0123456789abcdef"
	relPassword  = "alice-password"
)

// relCaddyfile is the in-process reliability config: a trusted code-flow
// client, a client_credentials client, alice, and a gated respond route.
// @STORAGE@, @ADMIN@, @HTTP@, @HTTPS@, @ISSUER@, @GATE@, @TTL@, @BODY@ and
// @HASH@ are filled in by relRender.
const relCaddyfile = `{
	skip_install_trust
	admin @ADMIN@
	http_port @HTTP@
	https_port @HTTPS@
	grace_period 1ns
	oauth {
		issuer http://localhost:@ISSUER@
		storage_path @STORAGE@
		access_token_ttl @TTL@
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

http://:@ISSUER@ {
	bind 127.0.0.1
	oauth_server
}

http://localhost:@GATE@ {
	bind 127.0.0.1
	oauth_protect {
		scopes invoices:read
		audience any
	}
	respond "@BODY@"
}
`

// relHash computes alice's MinCost bcrypt hash once per run.
var relHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(relPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// relConfig is relCaddyfile for the in-process Caddy.
func relConfig(storage, ttl, body string) string {
	return relRender(storage, adminAddr, "19620", "19621", "19622", "19623", ttl, body)
}

func relRender(storage, admin, httpPort, httpsPort, issuerPort, gatePort, ttl, body string) string {
	return strings.NewReplacer("@STORAGE@", storage, "@ADMIN@", admin, "@HTTP@", httpPort, "@HTTPS@", httpsPort,
		"@ISSUER@", issuerPort, "@GATE@", gatePort, "@TTL@", ttl, "@BODY@", body, "@HASH@", relHash()).Replace(relCaddyfile)
}

// relNoRedirects is a client that never follows redirects and opens a
// connection per request.
var relNoRedirects = &http.Client{
	Timeout:       10 * time.Second,
	Transport:     freshConns,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// relCode signs alice in for rel-app at issuer with a cookie-jar client
// (no redirects followed) and returns the code from the 302. It returns
// an error instead of failing the test, so load goroutines can use it.
func relCode(issuer, verifier string) (string, error) {
	status, loc, _, err := relLogin(issuer, verifier)
	if err != nil {
		return "", err
	}
	if status != http.StatusFound || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("login for %s: %d %q", relAppID, status, loc)
	}
	return loc.Query().Get("code"), nil
}

// relLogin gets the authorize page and posts alice's login form, and
// returns the login answer's status, Location and body.
func relLogin(issuer, verifier string) (int, *url.URL, string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: freshConns, CheckRedirect: relNoRedirects.CheckRedirect}
	q := url.Values{"client_id": {relAppID}, "redirect_uri": {relRedirect}, "response_type": {"code"},
		"scope": {"openid email"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"}, "state": {"st"}}
	resp, err := c.Get(issuer + "/oauth/authorize?" + q.Encode())
	if err != nil {
		return 0, nil, "", err
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, "", err
	}
	form := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	if resp.StatusCode != http.StatusOK || form.Get("state") == "" || form.Get("csrf") == "" {
		return 0, nil, "", fmt.Errorf("authorize page: status %d, no form state in %.200q", resp.StatusCode, page)
	}
	form.Set("username", "alice")
	form.Set("password", relPassword)
	resp, err = c.PostForm(issuer+"/oauth/authorize/login", form)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, "", err
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return 0, nil, "", fmt.Errorf("login for %s: bad Location %q: %v", relAppID, resp.Header.Get("Location"), err)
	}
	return resp.StatusCode, loc, string(body), nil
}

// relTokenAnswer is one token endpoint answer.
type relTokenAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a relTokenAnswer) str(k string) string { s, _ := a.body[k].(string); return s }

// relTokenRequest POSTs form to issuer's token endpoint with Basic
// client authentication. An error means no answer reached the client.
func relTokenRequest(c *http.Client, issuer, id, secret string, form url.Values) (relTokenAnswer, error) {
	return relPost(c, issuer+"/oauth/token", id, secret, form)
}

// relPost POSTs form to endpoint with Basic client authentication. An
// empty body is no error: revocation answers 200 with none.
func relPost(c *http.Client, endpoint, id, secret string, form url.Values) (relTokenAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return relTokenAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := c.Do(req)
	if err != nil {
		return relTokenAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return relTokenAnswer{}, err
	}
	a := relTokenAnswer{status: resp.StatusCode, header: resp.Header}
	if len(b) == 0 {
		return a, nil
	}
	if err := json.Unmarshal(b, &a.body); err != nil {
		return a, fmt.Errorf("%s answered %d with a body that is not JSON: %.200q", endpoint, resp.StatusCode, b)
	}
	return a, nil
}

func relRedeemForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {relRedirect}, "code_verifier": {verifier}}
}

func relRefreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

var relCCForm = url.Values{"grant_type": {"client_credentials"}}

// TestRefreshRotationRace: 100 goroutines present one refresh token at
// once through Caddy. Exactly one gets a new token; the 99 others
// presented a token that had just been rotated, which is reuse, so the
// family is revoked and the winner's new refresh token is dead too
// (RFC 9700 §4.14.2, grants/refresh.go).
func TestRefreshRotationRace(t *testing.T) {
	startCaddy(t, relConfig(storagePath(t), "10m", "gated"))
	verifier := oauth2.GenerateVerifier()
	code, err := relCode(relIssuer, verifier)
	if err != nil {
		t.Fatal(err)
	}
	first, err := relTokenRequest(relNoRedirects, relIssuer, relAppID, relAppSecret, relRedeemForm(code, verifier))
	if err != nil || first.status != http.StatusOK || first.str("refresh_token") == "" {
		t.Fatalf("redeeming the code: %v %d %v", err, first.status, first.body)
	}
	rt := first.str("refresh_token")

	var ok, invalid atomic.Int32
	winners := make(chan string, 100)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a, err := relTokenRequest(relNoRedirects, relIssuer, relAppID, relAppSecret, relRefreshForm(rt))
			switch {
			case err != nil:
				t.Error(err)
			case a.status == http.StatusOK && a.str("refresh_token") != "":
				ok.Add(1)
				winners <- a.str("refresh_token")
			case a.status == http.StatusBadRequest && a.str("error") == "invalid_grant":
				invalid.Add(1)
			default:
				t.Errorf("unexpected answer %d %v", a.status, a.body)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(winners)
	if ok.Load() != 1 || invalid.Load() != 99 {
		t.Fatalf("successes = %d, invalid_grant = %d; want 1 and 99", ok.Load(), invalid.Load())
	}
	next := <-winners
	if next == rt {
		t.Fatal("the winner got the presented refresh token back")
	}
	// The losers presented an already rotated token: the family is
	// revoked, so the winner's rotated token is refused as well.
	a, err := relTokenRequest(relNoRedirects, relIssuer, relAppID, relAppSecret, relRefreshForm(next))
	if err != nil || a.status != http.StatusBadRequest || a.str("error") != "invalid_grant" {
		t.Fatalf("the winner's new refresh token after the reuse: %v %d %v, want 400 invalid_grant (family revoked)", err, a.status, a.body)
	}
}
