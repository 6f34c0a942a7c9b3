package grants

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Errors of run-time client management.
var (
	ErrClientExists   = errors.New("client already exists")
	ErrClientNotFound = errors.New("client not found")
	// ErrConfigClient refuses to change a client defined in the config:
	// config entries win and change only with the config.
	ErrConfigClient = errors.New("client is defined in the config")
)

// ClientSpec is a client's registration as operators, the config and
// storage see it: everything but its credentials.
type ClientSpec struct {
	// ID is the client_id.
	ID string `json:"client_id"`

	// Name is what the sign-in and consent pages call the client (the
	// RFC 7591 client_name), e.g. "Billing". Default: the client id.
	Name string `json:"client_name,omitempty"`

	// LogoURI is an image the consent page shows beside the client's
	// name (RFC 7591 logo_uri): an https URL (http only on loopback).
	// The page's Content-Security-Policy allows exactly this URL.
	// Default: none.
	LogoURI string `json:"logo_uri,omitempty"`

	// ClientURI is the client's home page, linked from the consent page
	// (RFC 7591 client_uri): an https URL (http only on loopback).
	// Default: none.
	ClientURI string `json:"client_uri,omitempty"`

	// PolicyURI is the client's privacy policy, linked from the consent
	// page (RFC 7591 policy_uri): an https URL (http only on loopback).
	// Default: none.
	PolicyURI string `json:"policy_uri,omitempty"`

	// AuthMethod is the only client authentication method the client may
	// use at the token endpoint: client_secret_basic (default),
	// client_secret_post, client_secret_jwt (an HMAC-signed assertion
	// keyed with the secret, which is then kept in memory in the clear;
	// at least 32 bytes), private_key_jwt (an assertion signed with a key
	// of the client's JWKS) or none (a public client).
	AuthMethod string `json:"auth_method,omitempty"`

	// TLSClientSubject is the subject a tls_client_auth client's
	// certificate carries (RFC 8705 §2.1.2). Default: none.
	TLSClientSubject

	// GrantTypes the client may use: authorization_code, refresh_token
	// (with authorization_code, password or the device grant),
	// client_credentials, urn:ietf:params:oauth:grant-type:device_code
	// (RFC 8628, public or confidential clients), and the opt-in grants
	// password, urn:ietf:params:oauth:grant-type:jwt-bearer,
	// urn:ietf:params:oauth:grant-type:saml2-bearer and
	// urn:ietf:params:oauth:grant-type:token-exchange (confidential clients
	// only; each is offered only when a client lists it). Required.
	GrantTypes []string `json:"grant_types,omitempty"`

	// Scopes the client may be granted. A token request without a scope
	// gets all of them.
	Scopes []string `json:"scopes,omitempty"`

	// Audience lists the resources the client's tokens are for (the `aud`
	// claim). A token request may pick one with the RFC 8707 `resource`
	// parameter; without it the token is for all of them. Default: the
	// issuer.
	Audience []string `json:"audience,omitempty"`

	// RedirectURIs are where authorization responses may go, compared as
	// exact strings (for http://127.0.0.1 and http://[::1] any port,
	// RFC 8252 §7.3).
	RedirectURIs []string `json:"redirect_uris,omitempty"`

	// PostLogoutRedirectURIs are where the browser may be sent after
	// sign-out, compared as exact strings.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`

	// Trusted clients skip the consent page. Default: false.
	Trusted bool `json:"trusted,omitempty"`

	// PKCEOptional lets a confidential client use the code flow without
	// PKCE. Default: false (S256 required). Public clients always need it.
	PKCEOptional bool `json:"pkce_optional,omitempty"`

	// ResourceServer marks a client that is an API checking tokens at the
	// introspection endpoint: it is shown the access tokens whose audience
	// includes one of its Audience values (and nothing else), instead of
	// the tokens issued to it. Default: false.
	ResourceServer bool `json:"resource_server,omitempty"`

	// AccessTokenFormat is jwt (default: an RFC 9068 JWT, checked in
	// memory) or opaque (a random reference whose claims stay in storage;
	// oauth_protect and introspection look it up, one storage read each).
	AccessTokenFormat string `json:"access_token_format,omitempty"`

	// IDTokenSignedResponseAlg is the algorithm of the client's ID tokens
	// (the OIDC Registration name): RS256 (default), which every relying
	// party accepts, or the server's signing_alg. The server always holds
	// an RS256 key for this, besides the signing_alg key.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty"`

	// DPoPBoundAccessTokens makes the client send a DPoP proof with every
	// token request (RFC 9449 §5.2), so that all its access tokens are
	// DPoP-bound. Default: false (a proof is used when sent).
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens,omitempty"`

	// RequirePushedAuthorizationRequests makes the client send its
	// authorization requests through the PAR endpoint (RFC 9126 §6): a
	// plain one is refused with invalid_request. Default: false (unless
	// the server requires it of every client).
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`
}

// MakePublic registers the client as public (a single-page or native
// app, which cannot keep a secret): it authenticates with none and must
// use PKCE. An explicit other auth method is refused.
func (s *ClientSpec) MakePublic() error {
	if s.AuthMethod != "" && s.AuthMethod != AuthNone {
		return fmt.Errorf("client %q: a public client authenticates with none, not %s", s.ID, s.AuthMethod)
	}
	s.AuthMethod = AuthNone
	return nil
}

// storedClient is a run-time client at rest. The secret is kept only as
// its SHA-256.
type storedClient struct {
	ClientSpec
	SecretHash string    `json:"secret_sha256,omitempty"`
	Created    time.Time `json:"created"`
	// Registered, RegTokenHash (SHA-256 of the registration access
	// token), JWKS and Used belong to clients that registered themselves
	// (registration.go).
	Registered   bool            `json:"registered,omitempty"`
	RegTokenHash string          `json:"registration_token_sha256,omitempty"`
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	JWKSURI      string          `json:"jwks_uri,omitempty"`
	Used         bool            `json:"used,omitempty"`
}

func (sc *storedClient) client() (*Client, error) {
	c := &Client{ClientSpec: sc.ClientSpec, Registered: sc.Registered, registeredUsed: sc.Used}
	if sc.JWKS != nil {
		keys, err := ParseJWKS(sc.JWKS)
		if err != nil {
			return nil, fmt.Errorf("stored client %q has malformed jwks: %w", sc.ID, err)
		}
		c.Keys = keys
	}
	if sc.JWKSURI != "" {
		c.Keys = clientJWKS(sc.JWKSURI)
	}
	if sc.SecretHash != "" {
		h, err := hex.DecodeString(sc.SecretHash)
		if err != nil || len(h) != len(c.SecretHash) {
			return nil, fmt.Errorf("stored client %q has a malformed secret hash", sc.ID)
		}
		copy(c.SecretHash[:], h)
	}
	return c, nil
}

// lookupClient finds a client: in the config first, then among those
// registered at run time. It returns nil, nil for an unknown client.
func (e *Engine) lookupClient(ctx context.Context, id string) (*Client, error) {
	if c, ok := e.clients[id]; ok {
		return c, nil
	}
	if c := e.loginClient(id); c != nil {
		return c, nil
	}
	if e.cimd != nil && isCIMDClientID(id) {
		return e.cimdClient(ctx, id), nil
	}
	if id == "" || e.store == nil {
		return nil, nil
	}
	var c *Client
	err := e.store.View(ctx, func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindClients, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		c, err = e.runtimeClients.decode(id, rec.Value)
		return err
	})
	if c != nil && c.Registered {
		c = e.registrar.current(c)
	}
	return c, err
}

// clientCache keeps the run-time clients decoded, by id with the stored
// bytes they came from: a lookup still reads storage (a change by another
// config on the same file, or a removal, is seen at once), but decodes
// only what changed.
type clientCache struct {
	m sync.Map // id -> *cachedClient
}

type cachedClient struct {
	raw []byte
	c   *Client
}

// decode returns the client stored as raw, decoding it only when raw
// differs from what was decoded before. raw is valid only in the
// transaction it was read in, so a copy is kept.
func (cc *clientCache) decode(id string, raw []byte) (*Client, error) {
	if v, ok := cc.m.Load(id); ok {
		if hit := v.(*cachedClient); bytes.Equal(hit.raw, raw) {
			return hit.c, nil
		}
	}
	var sc storedClient
	if err := json.Unmarshal(raw, &sc); err != nil {
		return nil, err
	}
	c, err := sc.client()
	if err != nil {
		return nil, err
	}
	cc.m.Store(id, &cachedClient{raw: bytes.Clone(raw), c: c})
	return c, nil
}

// forget drops a removed client.
func (cc *clientCache) forget(id string) { cc.m.Delete(id) }

// ClientInfo is a client as operators see it: never its secret.
type ClientInfo struct {
	ClientSpec
	// Source is "config" or "storage" (added at run time).
	Source string `json:"source"`
}

// ListClients returns the config clients, then the run-time ones, each
// sorted by id.
func (e *Engine) ListClients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	for _, c := range e.clients {
		out = append(out, ClientInfo{c.ClientSpec, "config"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	stored, err := e.storedClients(ctx)
	for _, c := range stored {
		out = append(out, ClientInfo{c.ClientSpec, "storage"})
	}
	return out, err
}

// storedClients returns the clients registered at run time, by id.
func (e *Engine) storedClients(ctx context.Context) ([]*Client, error) {
	if e.store == nil {
		return nil, nil
	}
	var out []*Client
	err := e.store.View(ctx, func(tx storage.Tx) error {
		out = out[:0]
		return tx.ForEach(storage.KindClients, func(id string, rec storage.Record) error {
			var sc storedClient
			if err := json.Unmarshal(rec.Value, &sc); err != nil {
				return err
			}
			c, err := sc.client()
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// allClients returns every client: the config's and the run-time ones.
func (e *Engine) allClients(ctx context.Context) ([]*Client, error) {
	stored, err := e.storedClients(ctx)
	return append(slices.Collect(maps.Values(e.clients)), stored...), err
}

// AddClient registers a client at run time. A confidential client gets a
// new secret of 256 random bits, returned once and stored only as its
// SHA-256; a public one (AuthNone) gets none. c.SecretHash is ignored.
func (e *Engine) AddClient(ctx context.Context, c *Client) (secret string, err error) {
	return e.addClient(ctx, c, nil)
}

// registration is what a client that registers itself (RFC 7591) adds
// to its record: the hash of its registration access token, its keys,
// when it goes unless used, and the cap on such clients.
type registration struct {
	tokenHash  string
	jwks       json.RawMessage
	jwksURI    string
	expires    time.Time
	maxClients int
}

// errRegistryFull: as many registered clients exist as the config allows.
var errRegistryFull = errors.New("too many registered clients")

// addClient is AddClient, for a self-registered client when reg is set.
func (e *Engine) addClient(ctx context.Context, c *Client, reg *registration) (secret string, err error) {
	if _, ok := e.clients[c.ID]; ok {
		return "", ErrConfigClient
	}
	if c.AuthMethod == "" {
		c.AuthMethod = AuthSecretBasic
	}
	if isMTLS(c.AuthMethod) {
		// Their CAs and certificates are files the config loads.
		return "", fmt.Errorf("client %q: %s clients are registered in the Caddyfile: a client block with auth_method %[2]s and tls_client_auth_san_dns (or another tls_client_auth_* name; tls_client_ca_file in the oauth block) or tls_client_cert_file; run-time registration does not support them yet", c.ID, c.AuthMethod)
	}
	c.SecretHash = [32]byte{}
	if c.AuthMethod != AuthNone && c.AuthMethod != AuthPrivateKeyJWT {
		secret = newSecretToken()
		c.SecretHash = HashSecret(secret)
	}
	if err := c.Validate(); err != nil {
		return "", err
	}
	if err := e.checkIDTokenAlg(c); err != nil {
		return "", err
	}
	if _, err := e.users.Lookup(ctx, c.ID); err == nil {
		return "", fmt.Errorf("client id %q is a user name; users and clients must have different names", c.ID)
	} else if !errors.Is(err, ErrUserNotFound) {
		return "", err
	}
	// A client acts under its id as subject: a removed user's subject
	// must not come back as a client.
	if used, err := nameWasUser(ctx, e.store, c.ID); err != nil {
		return "", err
	} else if used {
		return "", fmt.Errorf("client id %q was a user name; subjects are never reassigned, choose another id", c.ID)
	}
	sc := storedClient{ClientSpec: c.ClientSpec, Created: time.Now().UTC()}
	if secret != "" {
		sc.SecretHash = hex.EncodeToString(c.SecretHash[:])
	}
	var expires time.Time
	if reg != nil {
		sc.Registered, sc.RegTokenHash, sc.JWKS, sc.JWKSURI, expires = true, reg.tokenHash, reg.jwks, reg.jwksURI, reg.expires
	}
	err = e.store.Update(ctx, func(tx storage.Tx) error {
		if _, err := tx.Get(storage.KindClients, c.ID); err == nil {
			return ErrClientExists
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if reg != nil {
			if n, err := countRegistered(tx); err != nil {
				return err
			} else if n >= reg.maxClients {
				return errRegistryFull
			}
		}
		// Its id is now a used subject: a later user of that name gets
		// another one.
		if err := recordClientTx(tx, c.ID, false); err != nil {
			return err
		}
		return putJSON(tx, storage.KindClients, c.ID, &sc, expires)
	})
	if err != nil {
		return "", err
	}
	e.corsOrigins.forget()
	e.observer.AdminChange(changeClient, actionCreated)
	fields := []zap.Field{zap.String("client_id", c.ID), zap.String("auth_method", c.AuthMethod),
		zap.Strings("grant_types", c.GrantTypes), zap.Strings("fields", specFields(&c.ClientSpec))}
	if reg != nil {
		// Registered by itself (RFC 7591), not by an operator.
		fields = append(fields, zap.Bool("self_registered", true))
	}
	e.auditLine(ctx, zapcore.InfoLevel, auditClientCreated, fields...)
	return secret, nil
}

// countRegistered counts the clients that registered themselves.
func countRegistered(tx storage.Tx) (int, error) {
	n := 0
	err := tx.ForEach(storage.KindClients, func(_ string, rec storage.Record) error {
		var v struct {
			Registered bool `json:"registered"`
		}
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			return err
		}
		if v.Registered {
			n++
		}
		return nil
	})
	return n, err
}

// RemoveClient deletes a run-time client and revokes every grant and
// token issued to it.
func (e *Engine) RemoveClient(ctx context.Context, id string) error {
	if _, ok := e.clients[id]; ok {
		return ErrConfigClient
	}
	n, err := e.revokeAllOf(ctx, func(tx storage.Tx) (string, func(*familyRecord) bool, error) {
		if _, err := tx.Get(storage.KindClients, id); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return "", nil, ErrClientNotFound
			}
			return "", nil, err
		}
		// Clients registered before client ids were recorded are
		// recorded now.
		if err := recordClientTx(tx, id, false); err != nil {
			return "", nil, err
		}
		return tokens.BeforeKey("client", id), func(f *familyRecord) bool { return f.ClientID == id }, tx.Delete(storage.KindClients, id)
	}, nil)
	if err != nil {
		return err
	}
	e.corsOrigins.forget()
	e.runtimeClients.forget(id)
	e.observer.AdminChange(changeClient, actionRemoved)
	e.auditLine(ctx, zapcore.InfoLevel, auditClientRemoved, zap.String("client_id", id), zap.Int("grants_revoked", n))
	return nil
}
