// Package grants is the OAuth 2.0 engine: request rules, client
// authentication, the grant types, token minting and verification, on
// plain net/http types.
package grants

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Endpoint paths below the issuer's path.
const (
	TokenPath = "/oauth/token"
	JWKSPath  = "/oauth/jwks"
)

// Config is what the engine is built from.
type Config struct {
	// Issuer is the exact iss of every token and the base of every
	// endpoint URL.
	Issuer         string
	AccessTokenTTL time.Duration
	Clients        []*Client
	// BehindTLSProxy says TLS ends in front of this server, so plain-HTTP
	// requests to credential-bearing endpoints are accepted from anywhere.
	BehindTLSProxy bool
	Logger         *zap.Logger
}

// Engine serves the authorization server's endpoints.
type Engine struct {
	Issuer         string
	AccessTokenTTL time.Duration
	Clients        map[string]*Client
	BehindTLSProxy bool
	Verifier       *Verifier

	store  storage.Store
	keys   *KeyRing
	logger *zap.Logger
	realm  string
	// basePath is the issuer's path, under which endpoints live.
	basePath string
	grants   map[string]grantHandler
}

// grantHandler issues tokens for one grant type to an authenticated client
// that is registered for it.
type grantHandler func(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error)

// ValidateIssuer checks an issuer identifier per RFC 8414 §2: https (or
// http on a loopback host, for local use), no query, no fragment, no
// trailing slash.
func ValidateIssuer(iss string) error {
	u, err := url.Parse(iss)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(iss, "/") || strings.ContainsAny(iss, "\"\\ ?#") {
		return fmt.Errorf("issuer %q must be an absolute URL without query, fragment or trailing slash", iss)
	}
	switch u.Scheme {
	case "https":
	case "http":
		h := u.Hostname()
		if h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return fmt.Errorf("issuer %q must use https (plain http is allowed only for localhost)", iss)
		}
	default:
		return fmt.Errorf("issuer %q must use https", iss)
	}
	return nil
}

// NewEngine checks the configuration and builds an engine. It does not
// touch storage; Start does.
func NewEngine(cfg Config) (*Engine, error) {
	if err := ValidateIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	if cfg.AccessTokenTTL <= 0 {
		return nil, errors.New("access_token_ttl must be positive")
	}
	u, _ := url.Parse(cfg.Issuer)
	e := &Engine{
		Issuer:         cfg.Issuer,
		AccessTokenTTL: cfg.AccessTokenTTL,
		Clients:        make(map[string]*Client, len(cfg.Clients)),
		BehindTLSProxy: cfg.BehindTLSProxy,
		Verifier:       &Verifier{Issuer: cfg.Issuer, Leeway: 30 * time.Second},
		logger:         cfg.Logger,
		realm:          cfg.Issuer,
		basePath:       strings.TrimSuffix(u.Path, "/"),
	}
	if e.logger == nil {
		e.logger = zap.NewNop()
	}
	for _, c := range cfg.Clients {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if _, dup := e.Clients[c.ID]; dup {
			return nil, fmt.Errorf("client %q is defined twice", c.ID)
		}
		e.Clients[c.ID] = c
	}
	e.grants = map[string]grantHandler{
		GrantClientCredentials: e.clientCredentials,
	}
	return e, nil
}

// Start attaches the engine to its storage and loads (or creates) the
// signing keys.
func (e *Engine) Start(ctx context.Context, st storage.Store, signingAlg string) error {
	kr, err := LoadKeyRing(ctx, st, signingAlg, time.Now())
	if err != nil {
		return err
	}
	e.store = st
	e.keys = kr
	e.Verifier.SetKeys(kr)
	return nil
}

// Paths returns the path of each endpoint this engine serves, for the
// HTTP layer to route on.
func (e *Engine) Paths() map[string]string {
	return map[string]string{
		"token":     e.basePath + TokenPath,
		"jwks":      e.basePath + JWKSPath,
		"as_meta":   "/.well-known/oauth-authorization-server" + e.basePath,
		"oidc_meta": e.basePath + "/.well-known/openid-configuration",
	}
}

func (e *Engine) debug(msg string, fields ...zap.Field) {
	if ce := e.logger.Check(zapcore.DebugLevel, msg); ce != nil {
		ce.Write(fields...)
	}
}
