// Command grantload measures the durable grant paths of the token endpoint
// on loopback: authorization-code redemptions (authorize with a signed-in
// session, then redeem the code) and refresh-token rotations, each worker
// with its own chain. Every request is a durable write.
//
//	go run ./bench/grantload -mode refresh -c 64 -d 5s
//
// With -mode gate-session it instead signs the user in once at a gate in
// browser mode (oauth_protect { login }) and prints the session cookie as
// the value of a Cookie header (name=value), for bench/load -H.
//
//	go run ./bench/grantload -mode gate-session -gate http://127.0.0.1:18084/
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	issuer   = flag.String("issuer", "http://127.0.0.1:18080", "issuer (loopback only)")
	client   = flag.String("client", "bench-web", "trusted client with authorization_code and refresh_token")
	secret   = flag.String("secret", "bench-web-secret-0123456789abcdef0123456789", "its secret")
	redirect = flag.String("redirect", "http://127.0.0.1/cb", "its redirect URI")
	user     = flag.String("user", "bench-user", "user name")
	password = flag.String("password", "bench-password", "user password")
	scope    = flag.String("scope", "openid", "scope of each grant: with openid, every rotation also returns an ID token")
	mode     = flag.String("mode", "refresh", "refresh | code | check (refresh each token of -tokens once) | gate-session (print a gate's session cookie)")
	gate     = flag.String("gate", "http://127.0.0.1:18084/", "with -mode gate-session: a page behind oauth_protect { login } (loopback only)")
	cookie   = flag.String("cookie", "oauthgate_app", "with -mode gate-session: the gate's session cookie name")
	tokens   = flag.String("tokens", "", "with -mode check: file of refresh tokens")
	workers  = flag.Int("c", 64, "concurrent workers")
	dur      = flag.Duration("d", 5*time.Second, "measured duration")
	restart  = flag.Bool("restart", false, "refresh mode: when a chain ends (its grant expired), start a new one instead of counting an error (soak tests)")
)

func main() {
	flag.Parse()
	if !strings.HasPrefix(*issuer, "http://127.0.0.1:") && !strings.HasPrefix(*issuer, "http://localhost:") {
		fail("issuer must be on loopback")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *workers * 2}
	if *mode == "check" {
		check(tr)
		return
	}
	if *mode == "gate-session" {
		gateSession(tr)
		return
	}
	session := login(tr)
	var ok, bad atomic.Int64
	var lat []time.Duration
	var mu sync.Mutex
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The token endpoint needs no cookies; only the authorization
			// endpoint uses the session. The generator shares the CPUs with
			// Caddy, so it does no more work per request than it must.
			c := &http.Client{Transport: tr, Jar: session, CheckRedirect: noRedirect}
			tc := &http.Client{Transport: tr, CheckRedirect: noRedirect}
			rt := ""
			if *mode == "refresh" {
				rt = redeem(tc, code(c)).RefreshToken
			}
			var mine []time.Duration
			for time.Now().Before(stop) {
				t0 := time.Now()
				var resp tokenResponse
				if *mode == "refresh" {
					resp = token(tc, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				} else {
					resp = redeem(tc, code(c))
				}
				if resp.RefreshToken != "" {
					rt = resp.RefreshToken
					ok.Add(1)
					mine = append(mine, time.Since(t0))
				} else if *mode == "refresh" && *restart {
					rt = redeem(tc, code(c)).RefreshToken
				} else {
					bad.Add(1)
					if *mode == "refresh" {
						return
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	p := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(q*float64(len(lat)-1))]) / 1e6
	}
	what := map[string]string{"refresh": "refresh rotations", "code": "code redemptions (authorize + token)"}[*mode] + " [scope " + *scope + "]"
	fmt.Printf("%s: %.0f/s  p50 %.2fms  p99 %.2fms  ok %d  errors %d  (%d workers, %s)\n",
		what, float64(ok.Load())/dur.Seconds(), p(0.5), p(0.99), ok.Load(), bad.Load(), *workers, *dur)
	if bad.Load() > 0 {
		os.Exit(1)
	}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func fail(msg string, args ...any) {
	fmt.Fprintf(os.Stderr, "grantload: "+msg+"\n", args...)
	os.Exit(1)
}

var hidden = regexp.MustCompile(`name="(state|csrf)" value="([^"]*)"`)

// login signs the user in once; every worker shares the session cookie.
func login(tr http.RoundTripper) http.CookieJar {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: tr, Jar: jar, CheckRedirect: noRedirect}
	resp, err := c.Get(authorizeURL(newVerifier()))
	if err != nil {
		fail("authorize: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"username": {*user}, "password": {*password}}
	for _, m := range hidden.FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	resp, err = c.PostForm(*issuer+"/oauth/authorize/login", form)
	if err != nil || resp.StatusCode != http.StatusFound {
		fail("login failed: %v %v", err, resp)
	}
	resp.Body.Close()
	return jar
}

// authorizeURL is an authorization request with the S256 challenge of
// verifier.
func authorizeURL(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return *issuer + "/oauth/authorize?" + url.Values{"client_id": {*client}, "redirect_uri": {*redirect},
		"response_type": {"code"}, "scope": {*scope},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}.Encode()
}

// newVerifier is a fresh PKCE verifier: the server refuses a challenge
// that a live code already carries (RFC 9700 §2.1.1).
func newVerifier() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// grantCode is a code and the verifier that redeems it.
type grantCode struct{ code, verifier string }

func code(c *http.Client) grantCode {
	v := newVerifier()
	resp, err := c.Get(authorizeURL(v))
	if err != nil {
		fail("authorize: %v", err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		fail("no code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return grantCode{loc.Query().Get("code"), v}
}

func redeem(c *http.Client, gc grantCode) tokenResponse {
	return token(c, url.Values{"grant_type": {"authorization_code"}, "code": {gc.code}, "redirect_uri": {*redirect}, "code_verifier": {gc.verifier}})
}

// tokenResponse is what the load needs of a token response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func token(c *http.Client, form url.Values) tokenResponse {
	req, _ := http.NewRequest(http.MethodPost, *issuer+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(*client), url.QueryEscape(*secret))
	var out tokenResponse
	resp, err := c.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&out)
	}
	return out
}

// check refreshes every token in the -tokens file once: a seeded database
// must still serve its grants.
func check(tr http.RoundTripper) {
	b, err := os.ReadFile(*tokens)
	if err != nil {
		fail("%v", err)
	}
	c := &http.Client{Transport: tr}
	n := 0
	for _, rt := range strings.Fields(string(b)) {
		if token(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).RefreshToken == "" {
			fail("a seeded refresh token did not refresh")
		}
		n++
	}
	fmt.Printf("%d seeded refresh tokens refreshed\n", n)
}

// gateSession signs the user in at the authorization server, then follows
// a browser through the gate's code flow (gate → authorize, where the
// sign-in session answers at once → the gate's callback) and prints the
// session cookie the callback sets as name=value. Nothing else is printed
// on standard output: run.sh keeps it in a variable.
func gateSession(tr http.RoundTripper) {
	if !strings.HasPrefix(*gate, "http://127.0.0.1:") && !strings.HasPrefix(*gate, "http://localhost:") {
		fail("gate must be on loopback")
	}
	jar := login(tr)
	c := &http.Client{Transport: tr, Jar: jar, CheckRedirect: noRedirect}
	next := *gate
	for hop := 0; hop < 4; hop++ {
		resp, err := c.Get(next)
		if err != nil {
			fail("gate sign-in: %v", err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == *cookie && ck.Value != "" {
				fmt.Printf("%s=%s\n", ck.Name, ck.Value)
				return
			}
		}
		loc, err := resp.Location()
		if err != nil {
			fail("gate sign-in: %s answered %d without a redirect or a %s cookie (is it oauth_protect { login }?)", next, resp.StatusCode, *cookie)
		}
		next = loc.String()
	}
	fail("gate sign-in: no %s cookie after 4 redirects from %s", *cookie, *gate)
}
