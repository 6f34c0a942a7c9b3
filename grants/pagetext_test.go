package grants

import (
	"strings"
	"testing"
)

// A login_hint is shown ("Not X?") and filled in only when it could be a
// user name: anything else a link carries (bidi overrides, zero-width or
// C1 characters, line separators, spaces, a name too long) is not echoed
// on the page, and signing in still works.
func TestLoginHintShownOnlyWhenPlausible(t *testing.T) {
	e := pagesEngine(t)
	for _, hint := range []string{
		"alice\u202egnp.exe", "ali\u200bce", "\ufeffalice", "ali\u0085ce", "alice\u2028Click here",
		"alice\u2066x\u2069", " alice", "a/b", strings.Repeat("a", 201),
	} {
		b := newBrowser(t, e)
		rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "login_hint", hint).Encode())
		body := rec.Body.String()
		if !isLoginPage(rec) {
			t.Fatalf("hint %q: want the login page, got %d:\n%s", hint, rec.Code, body)
		}
		if strings.Contains(body, "Not <strong>") || strings.Contains(body, `id="someone-else"`) ||
			!strings.Contains(body, `value="" required autofocus`) {
			t.Errorf("hint %q is shown:\n%s", hint, body)
		}
		if rec := b.login(rec, "alice", "alice-pw"); !isConsentPage(rec) {
			t.Errorf("hint %q: signing in: %d\n%s", hint, rec.Code, rec.Body.String())
		}
	}
	// A plausible name is shown, in <bdi>, even one no user has.
	b := newBrowser(t, e)
	rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "login_hint", "ünknown").Encode())
	if body := rec.Body.String(); !strings.Contains(body, "Not <strong><bdi>ünknown</bdi></strong>?") || !strings.Contains(body, `value="ünknown"`) {
		t.Errorf("a plausible hint is not shown:\n%s", body)
	}
}

// Names and scope descriptions are counted in characters and refuse
// text that could reorder, hide or break the page around it.
func TestDisplayTextValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Client)
		ok   bool
	}{
		{"100 non-ASCII characters", func(c *Client) { c.Name = strings.Repeat("é", 100) }, true},
		{"101 characters", func(c *Client) { c.Name = strings.Repeat("é", 101) }, false},
		{"C1 control", func(c *Client) { c.Name = "a\u0085b" }, false},
		{"bidi override", func(c *Client) { c.Name = "Billing\u202elatrop" }, false},
		{"bidi isolate", func(c *Client) { c.Name = "a\u2067b" }, false},
		{"zero-width space", func(c *Client) { c.Name = "Bil\u200bling" }, false},
		{"BOM", func(c *Client) { c.Name = "\ufeffBilling" }, false},
		{"line separator", func(c *Client) { c.Name = "a\u2028b" }, false},
		{"paragraph separator", func(c *Client) { c.Name = "a\u2029b" }, false},
		{"invalid UTF-8", func(c *Client) { c.Name = "a\xffb" }, false},
		{"only spaces", func(c *Client) { c.Name = "   " }, false},
		{"wildcard logo host", func(c *Client) { c.LogoURI = "https://*.x.test/l.png" }, false},
		{"wildcard logo path", func(c *Client) { c.LogoURI = "https://x.test/*" }, false},
		{"wildcard site", func(c *Client) { c.ClientURI = "https://x.test/*" }, false},
		{"wildcard policy", func(c *Client) { c.PolicyURI = "https://x.test/p?a=*" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := webClients()[0]
			tt.mod(c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	for d, ok := range map[string]bool{
		strings.Repeat("é", 200): true, strings.Repeat("é", 201): false, "Read\u202e": false,
		"Read\u200b": false, "Read\u0085": false, "Read\u2028more": false, "Read\xff": false,
	} {
		cfg := testConfig()
		cfg.Web.ScopeDescriptions = map[string]string{"read": d}
		_, err := NewEngine(cfg)
		if (err == nil) != ok || err != nil && !strings.Contains(err.Error(), "scope_description read") {
			t.Errorf("scope description %q: %v, want ok=%v", d, err, ok)
		}
	}
}

// The consent page's CSP allows exactly the logo's URL, not its host; a
// logo URL with a query (which a CSP source cannot name) or without a
// file path is not shown; the login page, which never shows the logo,
// does not allow it.
func TestLogoCSPExact(t *testing.T) {
	for _, tt := range []struct{ logo, src string }{
		{"https://client.test/logo.png", "https://client.test/logo.png"},
		{"https://client.test:8443/a/logo%20x.png#top", "https://client.test:8443/a/logo%20x.png"},
		{"https://client.test/logo.png?v=2", ""},
		{"https://client.test/logo.png?", ""},
		{"https://client.test/", ""},
		{"https://client.test", ""},
	} {
		e := newEngine(t, withConfig(func(c *Config) {
			for _, cl := range c.Clients {
				if cl.ID == "c-web" {
					cl.LogoURI = tt.logo
				}
			}
		}))
		b := newBrowser(t, e)
		rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge()).Encode())
		if csp := rec.Header().Get("Content-Security-Policy"); !isLoginPage(rec) || !strings.Contains(csp, "img-src 'self';") || strings.Contains(rec.Body.String(), "client-logo") {
			t.Errorf("logo %s: the login page allows or shows the logo: %s", tt.logo, csp)
		}
		rec = b.login(rec, "alice", "alice-pw")
		if !isConsentPage(rec) {
			t.Fatalf("logo %s: want the consent page: %d", tt.logo, rec.Code)
		}
		csp, body := rec.Header().Get("Content-Security-Policy"), rec.Body.String()
		if tt.src == "" {
			if !strings.Contains(csp, "img-src 'self';") || strings.Contains(body, "client-logo") {
				t.Errorf("logo %s: shown or allowed: %s", tt.logo, csp)
			}
			continue
		}
		if !strings.Contains(csp, "img-src 'self' "+tt.src+";") || !strings.Contains(body, `<img class="client-logo" src="`+tt.logo+`"`) {
			t.Errorf("logo %s: CSP %s, page:\n%s", tt.logo, csp, body)
		}
	}
}
