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
	TokenPath      = "/oauth/token"
	JWKSPath       = "/oauth/jwks"
	AuthorizePath  = "/oauth/authorize"
	UserinfoPath   = "/oauth/userinfo"
	LogoutPath     = "/oauth/logout"
	AssetsPath     = "/oauth/assets/"
	RevokePath     = "/oauth/revoke"
	IntrospectPath = "/oauth/introspect"
)

// Config is what the engine is built from.
type Config struct {
	// Issuer is the exact iss of every token and the base of every
	// endpoint URL.
	Issuer         string
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the absolute lifetime of a refresh-token family.
	RefreshTokenTTL time.Duration
	// RefreshTokenIdleTTL, when positive, ends a grant whose refresh
	// token was not used for this long (RFC 9700 §4.14.2); zero (the
	// default) turns it off. RefreshTokenTTL still applies.
	RefreshTokenIdleTTL time.Duration
	// RefreshGrace lets a rotated refresh token be used again this long
	// after rotation, if its successor was never used (a lost response).
	// Zero (the default) turns it off.
	RefreshGrace time.Duration
	Clients      []*Client
	Users        []*User
	// TrustedIssuers are the identity providers whose JWTs the JWT bearer
	// grant accepts.
	TrustedIssuers []*TrustedIssuer
	// SAMLIdPs are the identity providers whose SAML 2.0 assertions the
	// SAML bearer grant accepts.
	SAMLIdPs []*SAMLIdP
	// Web configures the sign-in pages.
	Web WebConfig
	// BehindTLSProxy says TLS ends in front of this server, so plain-HTTP
	// requests to credential-bearing endpoints are accepted from anywhere.
	BehindTLSProxy bool
	// KeyRotation, when positive, makes a new signing key once the
	// current one is this old. Zero rotates only on demand.
	KeyRotation time.Duration
	// KeyEncryptionKey, when set (at least 32 bytes), encrypts the
	// private signing keys in storage with AES-256-GCM.
	KeyEncryptionKey []byte
	// SealPlainKeys lets a server with KeyEncryptionKey seal signing keys
	// it finds stored unencrypted (the one-time migration of a store from
	// before the key encryption key). Without it such keys are refused,
	// since someone who can write the storage file could plant one.
	// Default false.
	SealPlainKeys bool
	// Observer receives token endpoint events for metrics; nil for none.
	Observer Observer
	Logger   *zap.Logger
}

// Engine serves the authorization server's endpoints.
type Engine struct {
	Issuer          string
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	RefreshGrace    time.Duration
	RefreshIdleTTL  time.Duration
	Clients         map[string]*Client
	Users           *Users
	BehindTLSProxy  bool
	Verifier        *Verifier
	// Revocations is shared by every engine on the same storage.
	Revocations *Revocations
	web         *web

	store  storage.Store
	logger *zap.Logger
	realm  string
	// basePath is the issuer's path, under which endpoints live.
	basePath string
	grants   map[string]grantHandler
	// trusted are the issuers of JWT bearer assertions, by iss.
	trusted map[string]*TrustedIssuer
	// samlIdPs are the issuers of SAML bearer assertions, by entity ID.
	samlIdPs map[string]*SAMLIdP

	signingAlg  string
	keyRotation time.Duration
	sealer      *keySealer
	observer    Observer
	// corsOrigins are the origins browser apps may call from (cors.go).
	corsOrigins appOrigins
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
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = 720 * time.Hour
	}
	if cfg.Web.SessionTTL == 0 {
		cfg.Web.SessionTTL = 12 * time.Hour
	}
	if cfg.RefreshTokenTTL < 0 {
		return nil, errors.New("refresh_token_ttl must be positive")
	}
	if cfg.RefreshTokenIdleTTL < 0 || (cfg.RefreshTokenIdleTTL > 0 && cfg.RefreshTokenIdleTTL >= cfg.RefreshTokenTTL) {
		return nil, errors.New("refresh_token_idle_ttl must be positive and shorter than refresh_token_ttl (or absent for no idle timeout)")
	}
	if cfg.RefreshGrace < 0 || cfg.RefreshGrace > time.Minute {
		return nil, errors.New("refresh_grace_period must be between 0 and 1m")
	}
	u, _ := url.Parse(cfg.Issuer)
	e := &Engine{
		Issuer:          cfg.Issuer,
		AccessTokenTTL:  cfg.AccessTokenTTL,
		RefreshTokenTTL: cfg.RefreshTokenTTL,
		RefreshGrace:    cfg.RefreshGrace,
		RefreshIdleTTL:  cfg.RefreshTokenIdleTTL,
		Users:           &Users{config: map[string]*User{}},
		Clients:         make(map[string]*Client, len(cfg.Clients)),
		BehindTLSProxy:  cfg.BehindTLSProxy,
		Verifier:        NewVerifier(cfg.Issuer, 30*time.Second),
		logger:          cfg.Logger,
		realm:           cfg.Issuer,
		basePath:        strings.TrimSuffix(u.Path, "/"),
	}
	if e.logger == nil {
		e.logger = zap.NewNop()
	}
	var err error
	if e.sealer, err = checkKeyConfig(cfg); err != nil {
		return nil, err
	}
	e.keyRotation = cfg.KeyRotation
	e.observer = cfg.Observer
	if e.observer == nil {
		e.observer = nopObserver{}
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
	for _, u := range cfg.Users {
		if err := ValidateUser(u); err != nil {
			return nil, err
		}
		if _, dup := e.Users.config[u.Name]; dup {
			return nil, fmt.Errorf("user %q is defined twice", u.Name)
		}
		if _, clash := e.Clients[u.Name]; clash {
			return nil, fmt.Errorf("user %q has the name of a client: subjects of users and clients must differ", u.Name)
		}
		u.FromConfig = true
		e.Users.config[u.Name] = u
	}
	if differ := e.Users.setCost(); len(differ) > 0 {
		e.logger.Warn("users whose password hashes have another bcrypt cost than the others can be told apart by sign-in timing; hash their passwords again with `caddy hash-password`",
			zap.Int("cost", e.Users.cost), zap.Strings("users", differ))
	}
	e.Users.reserved = func(name string) bool {
		c, _ := e.lookupClient(context.Background(), name)
		return c != nil
	}
	if e.web, err = newWeb(e, cfg.Web); err != nil {
		return nil, err
	}
	e.grants = map[string]grantHandler{
		GrantClientCredentials: e.clientCredentials,
		GrantAuthorizationCode: e.authorizationCode,
		GrantRefreshToken:      e.refreshToken,
	}
	if e.trusted, err = byKey(cfg.TrustedIssuers, "trust_issuer", func(ti *TrustedIssuer) (string, error) {
		return ti.Issuer, validateTrustedIssuer(ti, e.Clients)
	}); err != nil {
		return nil, err
	}
	if e.samlIdPs, err = byKey(cfg.SAMLIdPs, "saml_idp", func(idp *SAMLIdP) (string, error) {
		return idp.EntityID, validateSAMLIdP(idp, e.Clients)
	}); err != nil {
		return nil, err
	}
	// The password and assertion grants exist only where a client is
	// registered for them (RFC 9700 §2.4; ROPC-01).
	optional := map[string]grantHandler{GrantPassword: e.password, GrantJWTBearer: e.jwtBearer, GrantTokenExchange: e.tokenExchange,
		GrantSAML2Bearer: e.samlBearer}
	for _, c := range e.Clients {
		for g, h := range optional {
			if c.Allows(g) {
				e.grants[g] = h
			}
		}
	}
	return e, nil
}

// byKey checks each item and indexes it by its key, refusing a key that
// is defined twice; what names the items in errors.
func byKey[T any](items []*T, what string, check func(*T) (string, error)) (map[string]*T, error) {
	m := make(map[string]*T, len(items))
	for _, it := range items {
		k, err := check(it)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s %q is defined twice", what, k)
		}
		m[k] = it
	}
	return m, nil
}

// Start attaches the engine to its storage and the revocation set shared
// by every engine on it, and loads (or creates) the signing keys and the
// form-protection key.
func (e *Engine) Start(ctx context.Context, st storage.Store, signingAlg string, rev *Revocations) error {
	e.signingAlg = signingAlg
	if err := e.checkIDTokenAlgs(); err != nil {
		return err
	}
	kr, err := loadKeyRing(ctx, st, e.ringAlgs(), e.sealer, time.Now())
	if err != nil {
		return err
	}
	if e.sealer != nil && e.sealer.sealPlain {
		// Every stored key is sealed now: the option would only let a
		// planted plain key in.
		e.logger.Warn("seal_plain_keys is set but no signing key is left unencrypted; remove it, so that a plain key planted in the storage is refused")
	}
	if err := e.web.start(ctx, st); err != nil {
		return err
	}
	left, err := e.startSubjects(ctx, st)
	if err != nil {
		return err
	}
	e.store = st
	e.signingAlg = signingAlg
	e.Users.store = st
	if err := e.Users.raiseCostToStored(ctx); err != nil {
		return err
	}
	e.Revocations = rev
	e.Verifier.revocations = rev
	e.Verifier.opaque = e.lookupOpaque
	e.Verifier.SetKeys(kr)
	// Config users and clients removed by this config lose their tokens
	// now, as run-time removal does.
	return e.endLeftConfig(ctx, left)
}

// Paths returns the path of each endpoint this engine serves, for the
// HTTP layer to route on.
func (e *Engine) Paths() map[string]string {
	return map[string]string{
		"token":      e.basePath + TokenPath,
		"jwks":       e.basePath + JWKSPath,
		"authorize":  e.basePath + AuthorizePath,
		"userinfo":   e.basePath + UserinfoPath,
		"logout":     e.basePath + LogoutPath,
		"assets":     e.basePath + AssetsPath,
		"revoke":     e.basePath + RevokePath,
		"introspect": e.basePath + IntrospectPath,
		"as_meta":    "/.well-known/oauth-authorization-server" + e.basePath,
		"oidc_meta":  e.basePath + "/.well-known/openid-configuration",
		// Every endpoint but discovery is under prefix; a path there that
		// is no endpoint is answered 404, not passed on.
		"prefix": e.basePath + "/oauth/",
	}
}

func (e *Engine) debug(ctx context.Context, msg string, fields ...zap.Field) {
	if ce := e.logger.Check(zapcore.DebugLevel, msg); ce != nil {
		if id, ok := RequestID(ctx); ok {
			fields = append(fields, zap.String("request_id", id))
		}
		ce.Write(fields...)
	}
}

type requestIDKey struct{}

// WithRequestID tags a request's context with the id the HTTP server gave
// it, so that the engine's log lines can be matched with the access log.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// WithLazyRequestID is WithRequestID for an id that is made on first use:
// id.String() runs only when a line is logged. Caddy makes its request
// uuid lazily on purpose (a random read, and a field in the access log).
func WithLazyRequestID(ctx context.Context, id fmt.Stringer) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the id WithRequestID or WithLazyRequestID gave ctx.
func RequestID(ctx context.Context) (string, bool) {
	switch id := ctx.Value(requestIDKey{}).(type) {
	case string:
		return id, true
	case fmt.Stringer:
		return id.String(), true
	}
	return "", false
}
