package grants

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// authInProcess is the client authentication method of the sign-in
// clients of oauth_protect gates (AddLoginClient): no secret, only the
// in-process marker that InProcessTransport puts in a request's context.
// It is no RFC 7591 name and Validate refuses it, so no client of the
// config, the admin API or the CLI can have it.
const authInProcess = "in_process"

// loginClientPrefix starts the id of every login client; Validate refuses
// ids of that form for every other client.
const loginClientPrefix = "gate-"

// loginClientIDLen is the length of a login client's id: the prefix and
// 22 base64url characters (132 bits) of the SHA-256 of its redirect URI.
const loginClientIDLen = len(loginClientPrefix) + 22

// LoginClientScopes are the scopes every login client may be granted: an
// ID token with the user's name and email, and groups, which carries the
// user's groups claim for allow_groups.
var LoginClientScopes = []string{"openid", "profile", "email", ScopeGroups}

// LoginClientID is the client id AddLoginClient gives the client of
// redirectURI: the same in every process and after every reload, so a
// sign-in started before `caddy reload` completes after it.
func LoginClientID(redirectURI string) string {
	sum := sha256.Sum256([]byte(redirectURI))
	return loginClientPrefix + base64.RawURLEncoding.EncodeToString(sum[:])[:loginClientIDLen-len(loginClientPrefix)]
}

// isLoginClientID reports whether id has the form of a login client's id.
func isLoginClientID(id string) bool {
	rest, ok := strings.CutPrefix(id, loginClientPrefix)
	return ok && len(id) == loginClientIDLen && !strings.ContainsFunc(rest, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	})
}

// AddLoginClient registers the first-party client of a browser-mode gate
// (oauth_protect's login): in memory only, like a config client (a
// reload registers it again), never stored nor listed. Its grant types
// are authorization_code and refresh_token, PKCE S256 is required, its
// redirect URI and post-logout redirect URI are compared exactly, consent
// is skipped (Trusted), its tokens are for audience, and its scopes are
// LoginClientScopes and scopes. It authenticates only in process
// (InProcessTransport): a request from the network naming it at the
// token, revocation or introspection endpoint is refused (invalid_client).
//
// The client id is LoginClientID(redirectURI). A second call with the
// same redirectURI (two gates sharing a callback) adds its audience,
// scopes and post-logout URI. postLogoutURI and audience may be empty.
// AddLoginClient may be called before or after Start and while requests
// are served.
func (e *Engine) AddLoginClient(redirectURI, postLogoutURI, name, audience string, scopes []string) (clientID string, err error) {
	if err := validateRedirectURI(redirectURI); err != nil {
		return "", fmt.Errorf("gate sign-in client: %w", err)
	}
	if postLogoutURI != "" {
		if err := validateRedirectURI(postLogoutURI); err != nil {
			return "", fmt.Errorf("gate sign-in client: post-logout %w", err)
		}
	}
	for _, s := range scopes {
		if !validScopeToken(s) {
			return "", fmt.Errorf("gate sign-in client: scope %q has characters RFC 6749 §3.3 does not allow", s)
		}
	}
	if audience != "" && (strings.TrimSpace(audience) != audience || strings.ContainsAny(audience, " \t\r\n")) {
		return "", fmt.Errorf("gate sign-in client: audience %q must not contain spaces", audience)
	}
	id := LoginClientID(redirectURI)
	if _, ok := e.clients[id]; ok {
		// Validate refuses such ids in the config; kept for safety.
		return "", fmt.Errorf("gate sign-in client %q clashes with a configured client", id)
	}
	e.loginMu.Lock()
	defer e.loginMu.Unlock()
	old := e.loginClients.Load()
	c := &Client{ClientSpec: ClientSpec{
		ID:           id,
		Name:         name,
		AuthMethod:   authInProcess,
		GrantTypes:   []string{GrantAuthorizationCode, GrantRefreshToken},
		Scopes:       slices.Clone(LoginClientScopes),
		RedirectURIs: []string{redirectURI},
		Trusted:      true,
	}}
	if old != nil {
		if prev, ok := (*old)[id]; ok {
			// Requests in flight keep the client they found: it is
			// copied, never changed.
			c.ClientSpec = prev.ClientSpec
			c.Scopes = slices.Clone(prev.Scopes)
			c.Audience = slices.Clone(prev.Audience)
			c.PostLogoutRedirectURIs = slices.Clone(prev.PostLogoutRedirectURIs)
		}
	}
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			c.Scopes = append(c.Scopes, s)
		}
	}
	if audience != "" && !slices.Contains(c.Audience, audience) {
		c.Audience = append(c.Audience, audience)
	}
	if postLogoutURI != "" && !slices.Contains(c.PostLogoutRedirectURIs, postLogoutURI) {
		c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, postLogoutURI)
	}
	if err := c.validDisplay(); err != nil {
		return "", fmt.Errorf("gate sign-in client: %w", err)
	}
	next := map[string]*Client{}
	if old != nil {
		next = maps.Clone(*old)
	}
	next[id] = c
	e.loginClients.Store(&next)
	return id, nil
}

// loginClient returns the login client of that id, or nil.
func (e *Engine) loginClient(id string) *Client {
	if m := e.loginClients.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

// inProcessKey marks the context of a request that InProcessTransport
// made. The type is unexported: nothing outside this package can put it
// in a context, and a request from the network never carries it.
type inProcessKey struct{}

// fromInProcess reports whether the request came through
// InProcessTransport.
func fromInProcess(ctx context.Context) bool {
	v, _ := ctx.Value(inProcessKey{}).(bool)
	return v
}

// authenticateInProcess authenticates a login client: only a request
// that came through InProcessTransport, naming the client by client_id
// (or by HTTP Basic with an empty password, as OAuth 2.0 libraries send
// for a client without a secret) and giving no other credential. ok is
// false when the request names no login client (other methods then
// apply, and refuse any login client).
func (e *Engine) authenticateInProcess(ctx context.Context, authz []string, form Form) (c *Client, ok bool) {
	if !fromInProcess(ctx) || form.Get("client_secret") != "" || form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
		return nil, false
	}
	id := form.Get("client_id")
	switch len(authz) {
	case 0:
	case 1:
		bid, secret, okb := parseBasic(authz[0])
		if !okb || secret != "" || (id != "" && id != bid) {
			return nil, false
		}
		id = bid
	default:
		return nil, false
	}
	c = e.loginClient(id)
	return c, c != nil
}

// SessionSealer seals the session cookies of the gates that sign browsers
// in through this engine, with keys derived from the signing key ring
// (tokens.Keys.Sealer): every engine on the same storage opens what
// another sealed, and a key rotation signs nobody out while the old key
// is in the ring. It needs a started engine to seal.
func (e *Engine) SessionSealer() *tokens.Sealer { return e.keys.Sealer() }
