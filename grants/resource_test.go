package grants

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

func TestCanonResource(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"HTTP://API.example.com/x":       "http://api.example.com/x",
		"https://App.Test":               "https://app.test",
		"https://u@Host.Test:8443/P?Q#F": "https://u@host.test:8443/P?Q#F",
		"https://app.test/Path/UPPER":    "https://app.test/Path/UPPER",
		"URN:example:Billing":            "urn:example:Billing",
		"no-scheme":                      "no-scheme",
		// An empty path and "/" are the same for http(s) (RFC 3986
		// §6.2.3): clients that send a parsed URL's href (older
		// versions of the MCP TypeScript SDK, its issue #1968) add the
		// slash to a pathless resource. Any other trailing slash is a
		// different resource.
		"https://app.test/":     "https://app.test",
		"HTTPS://App.Test:443/": "https://app.test",
		"https://app.test/?q":   "https://app.test?q",
		"https://app.test/mcp/": "https://app.test/mcp/",
		"https://app.test//":    "https://app.test//",
		"urn:example:/":         "urn:example:/",
		"https://app.test/#f":   "https://app.test#f",
		// The scheme's default port, or an empty one, is dropped
		// (RFC 3986 §6.2.3); another port, or 80 for https, stays.
		"https://API.example.com:443/x": "https://api.example.com/x",
		"https://api.example.com:443":   "https://api.example.com",
		"HTTP://api.example.com:80?q":   "http://api.example.com?q",
		"https://api.example.com:/x":    "https://api.example.com/x",
		"https://api.example.com:80":    "https://api.example.com:80",
		"http://api.example.com:443":    "http://api.example.com:443",
		"https://[::1]:443/x":           "https://[::1]/x",
		"https://[::1]/x":               "https://[::1]/x",
		"https://u:pw@app.test:443":     "https://u:pw@app.test",
	} {
		if got := canonResource(in); got != want {
			t.Errorf("canonResource(%q) = %q, want %q", in, got, want)
		}
	}
	if i := indexResource([]string{"https://api.example.com"}, "https://api.example.com:443"); i != 0 {
		t.Errorf("https://api.example.com:443 does not name https://api.example.com")
	}
}

// The scheme and host of a resource are compared without case at the
// authorization endpoint, the token endpoint and on refresh; the token's
// aud is the registered spelling. Path case still matters.
func TestResourceCaseInsensitiveSchemeHost(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-web" {
				cl.Audience = []string{"https://app.test", "https://Billing.test/Api"}
			}
		}
	}))
	const shouted = "HTTPS://BILLING.TEST/Api"
	// authorize → code → token, all with the shouted spelling.
	b := newBrowser(t, e)
	code, verifier := b.getCode("c-web", "scope", "read", "resource", shouted)
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect["c-web"]},
		"code_verifier": {verifier}, "resource": {"https://billing.TEST/Api"}}
	tr := postToken(e, "c-web", f)
	wantOK(t, tr)
	if aud := audOf(t, e, tr.str("access_token")); len(aud) != 1 || aud[0] != "https://Billing.test/Api" {
		t.Fatalf("aud = %v, want the registered spelling", aud)
	}
	r := refresh(e, "c-web", tr.str("refresh_token"), "resource", "hTTps://billing.test/Api")
	wantOK(t, r)
	if aud := audOf(t, e, r.str("access_token")); len(aud) != 1 || aud[0] != "https://Billing.test/Api" {
		t.Fatalf("refreshed aud = %v", aud)
	}
	// The path is not folded.
	wantErr(t, refresh(e, "c-web", r.str("refresh_token"), "resource", "https://billing.test/api"), http.StatusBadRequest, CodeInvalidTarget)

	// client_credentials at the token endpoint.
	e2 := newEngine(t, ccFixture())
	w := serve(e2, withBasic(tokenRequest("grant_type=client_credentials&resource="+url.QueryEscape("HTTPS://APP.TEST")), "c-basic", basicSecret))
	m := checkToken(t, w)
	if aud := audOf(t, e2, m["access_token"].(string)); len(aud) != 1 || aud[0] != testRS {
		t.Fatalf("client_credentials aud = %v", aud)
	}
}

func withBasic(r *http.Request, id, secret string) *http.Request {
	r.Header.Set("Authorization", basicAuth(id, secret))
	return r
}

// audOf verifies an access token and returns its audience.
func audOf(t *testing.T, e *Engine, at string) tokens.Audience {
	t.Helper()
	c, err := e.verifier.Verify(at, time.Now())
	if err != nil {
		t.Fatalf("access token does not verify: %v", err)
	}
	return c.Audience
}
