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
