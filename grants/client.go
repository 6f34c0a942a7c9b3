package grants

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Client authentication methods (RFC 7591 §2 names).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	// AuthNone is for public clients, which have no secret and must use
	// PKCE.
	AuthNone = "none"
)

// Grant type identifiers.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	// GrantPassword is the resource owner password credentials grant
	// (RFC 6749 §4.3), for legacy clients only.
	GrantPassword = "password"
)

// Client is a registered OAuth client as the engine sees it: its
// registration and its credentials.
type Client struct {
	ClientSpec
	// SecretHash is SHA-256 of the client secret. Client secrets are
	// high-entropy, so a fast hash is enough and keeps the token endpoint
	// fast; see docs/performance.md.
	SecretHash [32]byte
	// Secret is the plain client secret, kept in memory only for
	// client_secret_jwt, whose HMAC needs it; other clients keep only
	// SecretHash.
	Secret []byte
	// Keys verify the assertions of a private_key_jwt client.
	Keys *JWKS
	// Exchange limits the targets of the client's token exchanges.
	Exchange ExchangePolicy
	// TLSClientCAs are the CAs a tls_client_auth client's certificates
	// must chain to.
	TLSClientCAs *x509.CertPool
	// Registered marks a client that registered itself (RFC 7591): it
	// is never trusted, so the consent page is always shown and errors
	// are not sent to its redirect URI without the user seeing them
	// (RFC 9700 §4.11.2).
	Registered bool
	// registeredUsed says a registered client has obtained a token, so
	// it no longer expires unused (registration.go).
	registeredUsed bool
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
	// A client id is the subject of its own tokens, so it is printable
	// ASCII of at most 255 characters (OIDC Core §2).
	if isLoginClientID(c.ID) {
		return fmt.Errorf("client id %q is reserved: ids of the form %s<22 characters> name the sign-in clients that oauth_protect registers itself; choose another id", c.ID, loginClientPrefix)
	}
	if !checkName(c.ID) || strings.Contains(c.ID, ":") || nameSubject(c.ID) != c.ID || len(c.ID) > 255 {
		return fmt.Errorf("client id %q must be non-empty printable ASCII of at most 255 characters, without surrounding spaces, ':' or any of %s", c.ID, forbiddenNameChars)
	}
	switch c.AuthMethod {
	case AuthSecretBasic, AuthSecretPost:
		if c.SecretHash == ([32]byte{}) {
			return fmt.Errorf("client %q: a secret or secret_hash is required for %s", c.ID, c.AuthMethod)
		}
	case AuthSecretJWT:
		if len(c.Secret) < 32 {
			return fmt.Errorf("client %q: client_secret_jwt needs a secret of at least 32 bytes (HS256 keys are 256 bits); secret_hash cannot be used", c.ID)
		}
	case AuthPrivateKeyJWT:
		if c.Keys == nil {
			return fmt.Errorf("client %q: private_key_jwt needs jwks, jwks_file or jwks_uri", c.ID)
		}
		if c.SecretHash != ([32]byte{}) || len(c.Secret) > 0 {
			return fmt.Errorf("client %q: a private_key_jwt client has no secret", c.ID)
		}
	case AuthNone:
		if c.SecretHash != ([32]byte{}) {
			return fmt.Errorf("client %q: a public client has no secret; remove secret or public", c.ID)
		}
		if c.Allows(GrantClientCredentials) {
			return fmt.Errorf("client %q: a public client cannot use client_credentials", c.ID)
		}
		if c.PKCEOptional {
			return fmt.Errorf("client %q: PKCE is always required for a public client", c.ID)
		}
	case AuthTLSClient, AuthSelfSignedTLSClient:
		if err := c.validMTLS(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("client %q: auth_method %q is not supported (use %s, %s, %s, %s, %s or %s)", c.ID, c.AuthMethod,
			AuthSecretBasic, AuthSecretPost, AuthSecretJWT, AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLSClient)
	}
	if c.AuthMethod != AuthTLSClient && c.TLSClientSubject != (TLSClientSubject{}) {
		return fmt.Errorf("client %q: tls_client_auth_subject_dn and tls_client_auth_san_* are for auth_method tls_client_auth", c.ID)
	}
	if c.Allows(GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return fmt.Errorf("client %q: authorization_code needs at least one redirect_uri", c.ID)
	}
	if c.Allows(GrantRefreshToken) && !c.Allows(GrantAuthorizationCode) && !c.Allows(GrantPassword) && !c.Allows(GrantDeviceCode) {
		return fmt.Errorf("client %q: refresh_token needs authorization_code, password or %s (refresh tokens come from them)", c.ID, GrantDeviceCode)
	}
	if c.AuthMethod == AuthNone && (c.Allows(GrantPassword) || c.Allows(GrantJWTBearer) || c.Allows(GrantSAML2Bearer) || c.Allows(GrantTokenExchange)) {
		return fmt.Errorf("client %q: a public client cannot use the password, jwt-bearer, saml2-bearer or token-exchange grant", c.ID)
	}
	for _, u := range append(slices.Clone(c.RedirectURIs), c.PostLogoutRedirectURIs...) {
		if err := validateRedirectURI(u); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	if len(c.GrantTypes) == 0 {
		return fmt.Errorf("client %q: grant_types is required", c.ID)
	}
	if err := c.validIDTokenAlg(); err != nil {
		return err
	}
	if f := c.AccessTokenFormat; f != "" && f != FormatJWT && f != FormatOpaque {
		return fmt.Errorf("client %q: access_token_format %q is not supported (use %s or %s)", c.ID, f, FormatJWT, FormatOpaque)
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains(SupportedGrantTypes, g) {
			return fmt.Errorf("client %q: grant type %q is not supported (supported: %s)", c.ID, g, strings.Join(SupportedGrantTypes, ", "))
		}
	}
	if err := c.validDisplay(); err != nil {
		return err
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return fmt.Errorf("client %q: scope %q has characters RFC 6749 §3.3 does not allow", c.ID, s)
		}
	}
	return nil
}

// validDisplay checks what the consent page shows of the client: a name
// of displayText, and links that are absolute https URLs (http on
// loopback) with nothing that could end a Content-Security-Policy
// source or an HTML attribute early, nor a '*' that would widen the CSP.
func (c *Client) validDisplay() error {
	if c.Name != "" && (strings.TrimSpace(c.Name) == "" || utf8.RuneCountInString(c.Name) > 100 || !displayText(c.Name)) {
		return fmt.Errorf("client %q: name must be valid UTF-8 of at most 100 characters, not only spaces, without control or format characters (such as U+0085, U+202E, U+200B) or line separators", c.ID)
	}
	for _, f := range []struct{ name, v string }{{"logo_uri", c.LogoURI}, {"client_uri", c.ClientURI}, {"policy_uri", c.PolicyURI}} {
		if f.v == "" {
			continue
		}
		u, err := url.Parse(f.v)
		ok := err == nil && u.Host != "" && u.User == nil && !strings.ContainsAny(f.v, " \t\r\n;,'\"<>\\*") &&
			(u.Scheme == "https" || u.Scheme == "http" && tokens.IsLoopbackHost(u.Hostname()))
		if !ok {
			return fmt.Errorf("client %q: %s %q must be an absolute https URL (http only on 127.0.0.1, [::1] or localhost) without spaces, quotes, commas, semicolons or '*'", c.ID, f.name, f.v)
		}
	}
	return nil
}

// displayText reports whether s is text the pages may show as it is:
// valid UTF-8 without control characters (Cc, C1 such as U+0085
// included), format characters (Cf: bidi overrides and isolates such as
// U+202E, zero-width characters, the BOM) or line and paragraph
// separators, which could reorder, hide or break what is around it.
func displayText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
	})
}

// logoSource is the Content-Security-Policy source that allows exactly
// the image at logo: scheme, host, port and path. A source whose path
// does not end in "/" matches that path only (CSP3 §6.7.2.10), and a
// source cannot name a query, so a logo URL with a query (or without a
// file path) gets no source and is not shown: allowing its whole path
// or host would let the page load other images from there.
func logoSource(logo string) (string, bool) {
	u, err := url.Parse(logo)
	if err != nil || u.RawQuery != "" || u.ForceQuery {
		return "", false
	}
	path := u.EscapedPath()
	if path == "" || strings.HasSuffix(path, "/") {
		return "", false
	}
	return u.Scheme + "://" + u.Host + path, true
}

// SupportedGrantTypes lists the grant types this engine implements.
var SupportedGrantTypes = []string{GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken, GrantPassword, GrantJWTBearer, GrantSAML2Bearer, GrantTokenExchange, GrantDeviceCode}

// validateRedirectURI accepts absolute https URIs, http on loopback hosts
// (RFC 8252 §7.3), and private-use schemes of native apps (RFC 8252 §7.1,
// which must contain a dot); never fragments or wildcards.
func validateRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(s, "#") || strings.Contains(s, "*") || u.User != nil {
		return fmt.Errorf("redirect_uri %q must be an absolute URI without fragment, userinfo or wildcard", s)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("redirect_uri %q has no host", s)
		}
	case "http":
		if !tokens.IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect_uri %q must use https (http only for 127.0.0.1, [::1] or localhost)", s)
		}
	case "javascript", "data", "file", "vbscript":
		return fmt.Errorf("redirect_uri %q uses a forbidden scheme", s)
	default:
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("redirect_uri %q: a native app's private-use scheme must be a reverse domain name such as com.example.app", s)
		}
	}
	return nil
}

// MatchRedirectURI compares a requested redirect_uri with the registered
// ones as exact strings. The one exception (RFC 8252 §7.3): for http on a
// loopback IP literal the port may differ.
func (c *Client) MatchRedirectURI(requested string) bool {
	if slices.Contains(c.RedirectURIs, requested) {
		return true
	}
	want, ok := loopbackWithoutPort(requested)
	if !ok {
		return false
	}
	for _, reg := range c.RedirectURIs {
		if got, ok := loopbackWithoutPort(reg); ok && got == want {
			return true
		}
	}
	return false
}

// loopbackWithoutPort removes the port from an http redirect URI on a
// loopback IP literal, textually, so that nothing else is normalized.
func loopbackWithoutPort(s string) (string, bool) {
	for _, prefix := range []string{"http://127.0.0.1", "http://[::1]"} {
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, ":") {
			i := 1
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				i++
			}
			if i == 1 {
				return "", false
			}
			rest = rest[i:]
		}
		if rest != "" && rest[0] != '/' && rest[0] != '?' {
			return "", false
		}
		return prefix + rest, true
	}
	return "", false
}
