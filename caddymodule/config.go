package caddymodule

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// ClientConfig registers one OAuth client: its registration and its
// credentials.
type ClientConfig struct {
	grants.ClientSpec

	// Secret is the client secret. Placeholders such as {env.SECRET} are
	// replaced when the config loads; the secret is then kept only as its
	// SHA-256. Use a long random value (32 bytes or more).
	Secret string `json:"secret,omitempty"`

	// SecretHash is the secret's SHA-256 as `sha256:<hex>`, for configs
	// that must not contain the secret itself. Use Secret or SecretHash.
	SecretHash string `json:"secret_hash,omitempty"`

	// JWKSSource holds the public keys of a private_key_jwt client.
	JWKSSource

	// Public marks a client that cannot keep a secret (a single-page or
	// native app): it authenticates with auth method `none` and must use
	// PKCE. Default: false.
	Public bool `json:"public,omitempty"`

	// Exchange lists the targets the client may ask for in a token
	// exchange (RFC 8693 `audience` and `resource`). Default: none, so an
	// exchanged token is for the client's own audience.
	Exchange *ExchangeConfig `json:"exchange,omitempty"`

	// TLSClientCAFile is a PEM file of the CA certificates a
	// tls_client_auth client's certificates must chain to, read when the
	// config loads. Default: the app's tls_client_ca_file.
	TLSClientCAFile string `json:"tls_client_ca_file,omitempty"`

	// TLSClientCertFile is a PEM file of a self_signed_tls_client_auth
	// client's own certificates, read when the config loads: another way
	// to register them than a JWKS. Default: none.
	TLSClientCertFile string `json:"tls_client_cert_file,omitempty"`
}

// JWKSSource is where a set of public keys comes from: at most one of
// inline, a file, or an https URL.
type JWKSSource struct {
	// JWKS is the public key set, inline.
	JWKS json.RawMessage `json:"jwks,omitempty"`

	// JWKSFile is a file holding the public key set, read when the config
	// loads.
	JWKSFile string `json:"jwks_file,omitempty"`

	// JWKSURI is an https URL serving the public key set. It is fetched on
	// first use (5s timeout, 64 KiB cap, no redirects), kept for an hour
	// and fetched again at most every 30s when an assertion names an
	// unknown kid.
	JWKSURI string `json:"jwks_uri,omitempty"`
}

// ExchangeConfig is a client's token-exchange policy.
type ExchangeConfig struct {
	// Audiences the client may name with the `audience` parameter.
	Audiences []string `json:"audiences,omitempty"`

	// Resources the client may name with the `resource` parameter
	// (absolute URIs).
	Resources []string `json:"resources,omitempty"`
}

// TrustIssuerConfig trusts one identity provider for the JWT bearer grant.
type TrustIssuerConfig struct {
	// Issuer is the exact `iss` of the provider's assertions.
	Issuer string `json:"issuer"`

	// JWKSSource holds the provider's public keys. Required.
	JWKSSource

	// SubjectClaim is the assertion claim that becomes the access token's
	// `sub`. Default: sub.
	SubjectClaim string `json:"subject_claim,omitempty"`

	// MapSubject says whose subject the provider asserts. "external"
	// (the default): the token's `sub` is ext# followed by the base64url
	// SHA-256 of the issuer, a 0 byte and the asserted subject, which never
	// equals a local user or client id; the asserted issuer and subject
	// are in the `ext_iss` and `ext_sub` claims (usable in forward_header).
	// "local_users": the provider asserts names of local users; the token
	// gets that user's `sub`, and a subject that is not an existing local
	// user is refused (invalid_grant). Default: external.
	MapSubject string `json:"map_subject,omitempty"`

	// AllowedClients may present this provider's assertions; each must list
	// urn:ietf:params:oauth:grant-type:jwt-bearer in its grant types.
	// Required.
	AllowedClients []string `json:"allowed_clients,omitempty"`

	// Scopes may be granted on this provider's assertions, within the
	// client's own scopes. Default: none.
	Scopes []string `json:"scopes,omitempty"`
}

// SAMLIdPConfig trusts one SAML 2.0 identity provider for the SAML 2.0
// bearer grant.
type SAMLIdPConfig struct {
	// EntityID is the exact `<Issuer>` of the provider's assertions.
	// Required.
	EntityID string `json:"entity_id"`

	// CertFile is a PEM file holding the provider's signing certificate,
	// read when the config loads. Only signatures by this certificate are
	// accepted, and only while it is valid. Required.
	CertFile string `json:"cert_file"`

	// AllowedClients may present this provider's assertions; each must list
	// urn:ietf:params:oauth:grant-type:saml2-bearer in its grant types.
	// Required.
	AllowedClients []string `json:"allowed_clients,omitempty"`

	// SubjectAttribute is the SAML attribute whose single value becomes the
	// access token's `sub`. Default: the Subject's NameID.
	SubjectAttribute string `json:"subject_attribute,omitempty"`

	// MapSubject says whose subject the provider asserts. "external"
	// (the default): the token's `sub` is ext# followed by the base64url
	// SHA-256 of the issuer, a 0 byte and the asserted subject, which never
	// equals a local user or client id; the asserted issuer and subject
	// are in the `ext_iss` and `ext_sub` claims (usable in forward_header).
	// "local_users": the provider asserts names of local users; the token
	// gets that user's `sub`, and a subject that is not an existing local
	// user is refused (invalid_grant). Default: external.
	MapSubject string `json:"map_subject,omitempty"`

	// Scopes may be granted on this provider's assertions, within the
	// client's own scopes. Default: none.
	Scopes []string `json:"scopes,omitempty"`
}

// UserConfig defines a user in the config.
type UserConfig struct {
	// Name is the login name and the `sub` of the user's tokens.
	Name string `json:"name"`
	// PasswordHash is a bcrypt hash, as `caddy hash-password` prints.
	PasswordHash string `json:"password_hash"`
	// Claims are OpenID Connect claims (email, name, given_name, ...),
	// released in ID tokens and at userinfo as the scopes allow.
	Claims map[string]string `json:"claims,omitempty"`
}

// buildAll builds the engine's value of each config entry.
func buildAll[C, T any](cfgs []C, build func(C) (*T, error)) ([]*T, error) {
	out := make([]*T, 0, len(cfgs))
	for _, c := range cfgs {
		v, err := build(c)
		if err != nil {
			return nil, fmt.Errorf("oauth: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// minSecretChars is the shortest client secret loaded without a warning.
// A secret is the client's password, and the server hashes it with one
// SHA-256, not a slow hash: a short one can be guessed offline from the
// hash or online at the token endpoint.
const minSecretChars = 16

// warnWeakSecret warns on logger when the client's secret is short. It
// names the client, never the secret or its length.
func (cc ClientConfig) warnWeakSecret(repl *caddy.Replacer, logger *zap.Logger) {
	if cc.Secret == "" {
		return
	}
	if secret := repl.ReplaceKnown(cc.Secret, ""); secret != "" && utf8.RuneCountInString(secret) < minSecretChars {
		logger.Warn("client secret is shorter than 16 characters and can be guessed; use a long random value (for example: openssl rand -base64 32)",
			zap.String("client_id", cc.ID))
	}
}

func (cc ClientConfig) build(repl *caddy.Replacer, caPool *x509.CertPool) (*grants.Client, error) {
	c := &grants.Client{ClientSpec: cc.ClientSpec}
	if cc.Exchange != nil {
		c.Exchange = grants.ExchangePolicy{Audiences: cc.Exchange.Audiences, Resources: cc.Exchange.Resources}
	}
	switch {
	case cc.Public:
		if err := c.MakePublic(); err != nil {
			return nil, err
		}
	case c.AuthMethod == "":
		c.AuthMethod = grants.AuthSecretBasic
	}
	if err := cc.buildKeys(c); err != nil {
		return nil, err
	}
	if err := cc.buildTLSClientCAs(c, caPool); err != nil {
		return nil, err
	}
	if err := cc.buildSelfSignedCerts(c); err != nil {
		return nil, err
	}
	switch {
	case cc.Secret != "" && cc.SecretHash != "":
		return nil, fmt.Errorf("client %q: use secret or secret_hash, not both", cc.ID)
	case cc.Secret != "":
		secret := repl.ReplaceKnown(cc.Secret, "")
		if secret == "" {
			return nil, fmt.Errorf("client %q: secret %q is empty after replacing placeholders (is the environment variable set?)", cc.ID, cc.Secret)
		}
		if c.AuthMethod == grants.AuthSecretJWT {
			// The HMAC needs the secret itself; nothing else does.
			c.Secret = []byte(secret)
			break
		}
		c.SecretHash = grants.HashSecret(secret)
	case cc.SecretHash != "":
		h, err := grants.ParseSecretHash(cc.SecretHash)
		if err != nil {
			return nil, fmt.Errorf("client %q: %w", cc.ID, err)
		}
		c.SecretHash = h
	}
	return c, c.Validate()
}

// buildKeys loads the key set of a private_key_jwt client.
func (cc ClientConfig) buildKeys(c *grants.Client) error {
	keys, err := cc.JWKSSource.load()
	switch {
	case err != nil:
		return fmt.Errorf("client %q: %w", cc.ID, err)
	case keys != nil && c.AuthMethod != grants.AuthPrivateKeyJWT && c.AuthMethod != grants.AuthSelfSignedTLSClient:
		return fmt.Errorf("client %q: jwks, jwks_file and jwks_uri are for auth_method private_key_jwt and self_signed_tls_client_auth", cc.ID)
	}
	c.Keys = keys
	return nil
}

// build turns the config into the engine's trusted issuer.
func (tc TrustIssuerConfig) build() (*grants.TrustedIssuer, error) {
	keys, err := tc.JWKSSource.load()
	if err != nil {
		return nil, fmt.Errorf("trust_issuer %q: %w", tc.Issuer, err)
	}
	return &grants.TrustedIssuer{Issuer: tc.Issuer, Keys: keys, SubjectClaim: tc.SubjectClaim,
		MapSubject: tc.MapSubject, AllowedClients: tc.AllowedClients, Scopes: tc.Scopes}, nil
}

// build turns the config into the engine's SAML identity provider.
func (sc SAMLIdPConfig) build() (*grants.SAMLIdP, error) {
	idp := &grants.SAMLIdP{EntityID: sc.EntityID, AllowedClients: sc.AllowedClients,
		SubjectAttribute: sc.SubjectAttribute, MapSubject: sc.MapSubject, Scopes: sc.Scopes}
	if sc.CertFile == "" {
		return idp, nil // NewEngine says what is missing
	}
	data, err := os.ReadFile(sc.CertFile)
	if err != nil {
		return nil, fmt.Errorf("saml_idp %q: %w", sc.EntityID, err)
	}
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "CERTIFICATE" {
			if idp.Certificate, err = x509.ParseCertificate(block.Bytes); err != nil {
				return nil, fmt.Errorf("saml_idp %q: cert_file %q: %w", sc.EntityID, sc.CertFile, err)
			}
			return idp, nil
		}
	}
	return nil, fmt.Errorf("saml_idp %q: cert_file %q holds no PEM CERTIFICATE", sc.EntityID, sc.CertFile)
}

// load builds the key set; nil when no source is given.
func (ks JWKSSource) load() (*grants.JWKS, error) {
	inline, file, uri := ks.JWKS, ks.JWKSFile, ks.JWKSURI
	n := 0
	for _, set := range []bool{len(inline) > 0, file != "", uri != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, errors.New("use one of jwks, jwks_file and jwks_uri")
	case uri != "":
		return grants.RemoteJWKS(uri)
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return grants.ParseJWKS(data)
	}
	return grants.ParseJWKS(inline)
}
