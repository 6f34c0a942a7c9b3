package gate

import (
	"net/http"
	"slices"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// defaultGroupsClaim is the claim allow_groups reads by default.
const defaultGroupsClaim = "groups"

func (p *Protect) groupsClaim() string {
	if p.GroupsClaim != "" {
		return p.GroupsClaim
	}
	return defaultGroupsClaim
}

// allowed applies allow_users and allow_groups to an identity, from a
// session or a token: with both set, either admits. The user is the
// preferred_username claim, else sub; the groups claim may be a string
// (one group) or an array of strings.
func (p *Protect) allowed(c *tokens.AccessClaims) bool {
	if len(p.AllowUsers) == 0 && len(p.AllowGroups) == 0 {
		return true
	}
	if len(p.AllowUsers) > 0 {
		user := c.Subject
		if v, ok := c.Claim("preferred_username"); ok {
			if s, ok := v.(string); ok && s != "" {
				user = s
			}
		}
		if slices.Contains(p.AllowUsers, user) {
			return true
		}
	}
	if len(p.AllowGroups) > 0 {
		v, _ := c.Claim(p.groupsClaim())
		switch g := v.(type) {
		case string:
			return slices.Contains(p.AllowGroups, g)
		case []any:
			for _, e := range g {
				if s, ok := e.(string); ok && slices.Contains(p.AllowGroups, s) {
					return true
				}
			}
		}
	}
	return false
}

// denyForbidden answers a token whose subject allow_users and
// allow_groups refuse: 403 with the Bearer challenge, no details of the
// rules, in the scheme the token came with.
func (p *Protect) denyForbidden(w http.ResponseWriter, r *http.Request) error {
	drainBody(r)
	h := w.Header()
	challenge := p.challenge
	if p.answersInDPoP(r) {
		challenge = p.dpop.challenge
	}
	h.Set("WWW-Authenticate", challenge+`, error="insufficient_scope", error_description="the token's subject may not use this resource"`)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte(`{"error":"insufficient_scope","error_description":"the token's subject may not use this resource"}`))
	return nil
}
