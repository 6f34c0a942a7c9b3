package grants

import (
	"strings"
	"testing"
)

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
