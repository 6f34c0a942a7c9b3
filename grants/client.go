package grants

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Client authentication methods (RFC 7591 §2 names).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
)

// Grant type identifiers.
const (
	GrantClientCredentials = "client_credentials"
)

// Client is a registered OAuth client as the engine sees it.
type Client struct {
	ID string
	// SecretHash is SHA-256 of the client secret. Client secrets are
	// high-entropy, so a fast hash is enough and keeps the token endpoint
	// fast; see DESIGN §8.
	SecretHash [32]byte
	// AuthMethod is the one authentication method the client may use.
	AuthMethod string
	GrantTypes []string
	// Scopes the client may be granted; also the default when it asks for
	// none.
	Scopes []string
	// Audience lists the resources the client's tokens may be for; the
	// first is the default.
	Audience []string
}

// Allows reports whether the client is registered for grantType.
func (c *Client) Allows(grantType string) bool { return slices.Contains(c.GrantTypes, grantType) }

// HashSecret returns the SHA-256 of a client secret, the form in which
// secrets are kept.
func HashSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// ParseSecretHash parses "sha256:<64 hex digits>".
func ParseSecretHash(s string) ([32]byte, error) {
	var out [32]byte
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return out, fmt.Errorf("secret_hash must look like sha256:<64 hex digits>")
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != len(out) {
		return out, fmt.Errorf("secret_hash must look like sha256:<64 hex digits>")
	}
	copy(out[:], b)
	return out, nil
}

// Validate checks a client definition and says what to fix.
func (c *Client) Validate() error {
	if c.ID == "" || strings.TrimSpace(c.ID) != c.ID || strings.ContainsAny(c.ID, ":\"\\") {
		return fmt.Errorf("client id %q must be non-empty, without surrounding spaces, ':', '\"' or '\\'", c.ID)
	}
	switch c.AuthMethod {
	case AuthSecretBasic, AuthSecretPost:
		if c.SecretHash == ([32]byte{}) {
			return fmt.Errorf("client %q: a secret or secret_hash is required for %s", c.ID, c.AuthMethod)
		}
	default:
		return fmt.Errorf("client %q: auth_method %q is not supported (use %s or %s)", c.ID, c.AuthMethod, AuthSecretBasic, AuthSecretPost)
	}
	if len(c.GrantTypes) == 0 {
		return fmt.Errorf("client %q: grant_types is required", c.ID)
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains(SupportedGrantTypes, g) {
			return fmt.Errorf("client %q: grant type %q is not supported (supported: %s)", c.ID, g, strings.Join(SupportedGrantTypes, ", "))
		}
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return fmt.Errorf("client %q: scope %q has characters RFC 6749 §3.3 does not allow", c.ID, s)
		}
	}
	return nil
}

// SupportedGrantTypes lists the grant types this engine implements.
var SupportedGrantTypes = []string{GrantClientCredentials}
