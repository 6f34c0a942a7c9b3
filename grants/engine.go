// Package grants is the OAuth 2.0 engine: request rules, client
// authentication, the grant types, token minting and verification, on
// plain net/http types.
package grants

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/internal/lograte"
	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
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

// DefaultSigningAlg signs access tokens unless Config says otherwise.
const DefaultSigningAlg = "ES256"

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
	// SigningAlg is the JWS algorithm of access tokens: one of
	// tokens.SigningAlgs; DefaultSigningAlg when empty.
	SigningAlg string
	// SharedStore says other nodes may use the same storage (PostgreSQL):
	// Start then records the issuer in it, or refuses to start when it
	// holds another. Default false (a bbolt file or memory, used by this
	// process only, whose issuer a config reload may change).
	SharedStore bool
	// DPoP configures DPoP proofs at the token endpoint (RFC 9449).
	DPoP DPoPConfig
	// PAR configures pushed authorization requests (RFC 9126, par.go).
	PAR PARConfig
	// Device configures the device authorization grant (RFC 8628).
	Device DeviceConfig
	// ClientCertHeader says a trusted proxy passes client certificates
	// in a header (the app's client_cert_header). With it, or an https
	// issuer not behind a TLS-terminating proxy, token requests can carry
	// a certificate, and the metadata says tokens get bound to it.
	ClientCertHeader bool
	// Registration turns on dynamic client registration (RFC 7591,
	// RFC 7592); nil, the default, leaves it off.
	Registration *RegistrationConfig
	// ClientIDMetadata turns on client ID metadata documents (an https
	// client_id naming the client's registration); nil, the default,
	// leaves them off.
	ClientIDMetadata *ClientIDMetadataConfig
	// Observer receives token endpoint and security events for metrics;
	// nil for none.
	Observer Observer
	Logger   *zap.Logger
}

// Engine serves the authorization server's endpoints. Its state is set
// by NewEngine and Start and read through methods; nothing outside the
// package reaches into it.
type Engine struct {
	issuer          string
	accessTokenTTL  time.Duration
	sharedStore     bool
	refreshTokenTTL time.Duration
	refreshGrace    time.Duration
	refreshIdleTTL  time.Duration
	clients         map[string]*Client
	users           *Users
	behindTLSProxy  bool
	// certsReach says a client certificate can reach the token endpoint
	// (Config.ClientCertHeader).
	certsReach bool
	// keys is the one key ring: minting signs with it, verifier checks
	// with it.
	keys     *tokens.Keys
	verifier *tokens.Verifier
	// dpop verifies DPoP proofs at the token endpoint (dpop.go).
	dpop *tokens.DPoPVerifier
	// par configures pushed authorization requests, and parLimit counts
	// the pushes of public clients per address (par.go).
	par      PARConfig
	parLimit *throttle
	// device configures the device grant (device.go).
	device DeviceConfig
	// revocations is shared by every engine on the same storage.
	revocations *tokens.Revocations
	web         *web

	store  storage.Store
	logger *zap.Logger
	// audit writes the security events (audit.go).
	audit *zap.Logger
	// failures writes the ERROR lines of failed requests, rate-limited
	// (errors.go, logFailure).
	failures *lograte.Limiter
	realm    string
	// runtimeClients decodes the clients added at run time (clients.go).
	runtimeClients clientCache
	// authErrs are the refusals of client authentication (clientauth.go).
	authErrs authErrors
	// basePath is the issuer's path, under which endpoints live.
	basePath string
	grants   map[string]grantHandler
	// trusted are the issuers of JWT bearer assertions, by iss.
	trusted map[string]*TrustedIssuer
	// samlIdPs are the issuers of SAML bearer assertions, by entity ID.
	samlIdPs map[string]*SAMLIdP

	signingAlg  string
	keyRotation time.Duration
	observer    Observer
	// corsOrigins are the origins browser apps may call from (cors.go).
	corsOrigins appOrigins
	// routeTable holds every endpoint by path, and prefix the path every
	// endpoint but discovery is under (routes.go).
	routeTable map[string]http.HandlerFunc
	prefix     string
	// loginClients are the sign-in clients of oauth_protect gates, by
	// id, replaced whole under loginMu (loginclient.go).
	loginMu      sync.Mutex
	loginClients atomic.Pointer[map[string]*Client]
	// lastMetadata are the RFC 8414 and OIDC discovery documents last
	// served, served again while storage fails.
	lastMetadata [2]atomic.Pointer[Metadata]
	// registrar serves dynamic client registration; nil when it is off
	// (registration.go).
	registrar *registrar
	// cimd resolves client ID metadata documents; nil when off (cimd.go).
	cimd *cimd
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
		if !tokens.IsLoopbackHost(u.Hostname()) {
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
	if cfg.SigningAlg == "" {
		cfg.SigningAlg = DefaultSigningAlg
	}
	if !slices.Contains(tokens.SigningAlgs, cfg.SigningAlg) {
		return nil, fmt.Errorf("signing_alg %q is not supported (use one of %v)", cfg.SigningAlg, tokens.SigningAlgs)
	}
	if cfg.KeyRotation < 0 || (cfg.KeyRotation > 0 && cfg.KeyRotation < MinKeyRotation) {
		return nil, errors.New("key_rotation must be at least 1m (or absent to rotate only on demand)")
	}
	u, _ := url.Parse(cfg.Issuer)
	e := &Engine{
		issuer:          cfg.Issuer,
		accessTokenTTL:  cfg.AccessTokenTTL,
		sharedStore:     cfg.SharedStore,
		refreshTokenTTL: cfg.RefreshTokenTTL,
		refreshGrace:    cfg.RefreshGrace,
		refreshIdleTTL:  cfg.RefreshTokenIdleTTL,
		users:           &Users{config: map[string]*User{}},
		clients:         make(map[string]*Client, len(cfg.Clients)),
		behindTLSProxy:  cfg.BehindTLSProxy,
		certsReach:      cfg.ClientCertHeader || strings.HasPrefix(cfg.Issuer, "https://") && !cfg.BehindTLSProxy,
		signingAlg:      cfg.SigningAlg,
		keyRotation:     cfg.KeyRotation,
		logger:          cfg.Logger,
		realm:           cfg.Issuer,
		authErrs:        newAuthErrors(cfg.Issuer),
		basePath:        strings.TrimSuffix(u.Path, "/"),
	}
	if e.logger == nil {
		e.logger = zap.NewNop()
	}
	e.failures = lograte.New(e.logger)
	e.audit = e.logger.Named(auditLoggerName)
	var err error
	if e.keys, err = tokens.NewKeys(tokens.KeyOptions{Algs: e.ringAlgs(), EncryptionKey: cfg.KeyEncryptionKey, SealPlain: cfg.SealPlainKeys, Generate: generateKey}); err != nil {
		return nil, err
	}
	e.observer = cfg.Observer
	if e.dpop, err = newDPoP(cfg.DPoP, e.keys); err != nil {
		return nil, err
	}
	if err := checkDeviceConfig(&cfg.Device); err != nil {
		return nil, err
	}
	e.device = cfg.Device
	if e.observer == nil {
		e.observer = nopObserver{}
	}
	if err = e.setPAR(cfg.PAR); err != nil {
		return nil, err
	}
	for _, c := range cfg.Clients {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if _, dup := e.clients[c.ID]; dup {
			return nil, fmt.Errorf("client %q is defined twice", c.ID)
		}
		e.clients[c.ID] = c
	}
	if err := e.checkIDTokenAlgs(); err != nil {
		return nil, err
	}
	for _, u := range cfg.Users {
		if err := ValidateUser(u); err != nil {
			return nil, err
		}
		if _, dup := e.users.config[u.Name]; dup {
			return nil, fmt.Errorf("user %q is defined twice", u.Name)
		}
		if _, clash := e.clients[u.Name]; clash {
			return nil, fmt.Errorf("user %q has the name of a client: subjects of users and clients must differ", u.Name)
		}
		u.FromConfig = true
		e.users.config[u.Name] = u
	}
	if differ := e.users.setCost(); len(differ) > 0 {
		e.logger.Warn("users whose password hashes have another bcrypt cost than the others can be told apart by sign-in timing; hash their passwords again with `caddy hash-password`",
			zap.Int("cost", e.users.cost), zap.Strings("users", differ))
	}
	e.users.reserved = func(name string) bool {
		c, _ := e.lookupClient(context.Background(), name)
		return c != nil
	}
	if e.web, err = newWeb(cfg.Web, e.basePath, e.behindTLSProxy); err != nil {
		return nil, err
	}
	e.grants = map[string]grantHandler{
		GrantClientCredentials: e.clientCredentials,
		GrantAuthorizationCode: e.authorizationCode,
		GrantRefreshToken:      e.refreshToken,
		// Every client may be registered for the device grant, run-time
		// ones too: its device code is worth nothing without a user's
		// consent on the verification page.
		GrantDeviceCode: e.deviceCodeGrant,
	}
	if e.trusted, err = byKey(cfg.TrustedIssuers, "trust_issuer", func(ti *TrustedIssuer) (string, error) {
		return ti.Issuer, validateTrustedIssuer(ti, e.clients)
	}); err != nil {
		return nil, err
	}
	if e.samlIdPs, err = byKey(cfg.SAMLIdPs, "saml_idp", func(idp *SAMLIdP) (string, error) {
		return idp.EntityID, validateSAMLIdP(idp, e.clients)
	}); err != nil {
		return nil, err
	}
	// The password and assertion grants exist only where a client is
	// registered for them (RFC 9700 §2.4).
	optional := map[string]grantHandler{GrantPassword: e.password, GrantJWTBearer: e.jwtBearer, GrantTokenExchange: e.tokenExchange,
		GrantSAML2Bearer: e.samlBearer}
	for _, c := range e.clients {
		for g, h := range optional {
			if c.Allows(g) {
				e.grants[g] = h
			}
		}
	}
	if e.registrar, err = newRegistrar(cfg.Registration); err != nil {
		return nil, err
	}
	if e.cimd, err = newCIMD(cfg.ClientIDMetadata); err != nil {
		return nil, err
	}
	e.routeTable, e.prefix = e.routes(), e.paths()["prefix"]
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
func (e *Engine) Start(ctx context.Context, st storage.Store, rev *tokens.Revocations) error {
	if err := e.startClusterRecords(ctx, st); err != nil {
		return err
	}
	if err := e.keys.Load(ctx, st, time.Now()); err != nil {
		return err
	}
	if e.keys.SealPlain() {
		// Every stored key is sealed now: the option would only let a
		// planted plain key in.
		e.logger.Warn("seal_plain_keys is set but no signing key is left unencrypted; remove it, so that a plain key planted in the storage is refused")
	}
	if err := e.web.start(ctx, st, e.users); err != nil {
		return err
	}
	left, err := e.startSubjects(ctx, st)
	if err != nil {
		return err
	}
	e.store = st
	e.users.store = st
	if err := e.users.raiseCostToStored(ctx); err != nil {
		return err
	}
	e.revocations = rev
	e.verifier = tokens.NewVerifier(tokens.VerifierConfig{Issuer: e.issuer, Leeway: verifierLeeway,
		Keys: e.keys, Revocations: rev, Opaque: e.lookupOpaque})
	// Config users and clients removed by this config lose their tokens
	// now, as run-time removal does.
	return e.endLeftConfig(ctx, left)
}

// generateKey makes signing keys; nil for tokens.GenerateKey. Tests hand
// out pooled RSA keys, which take half a second each to make.
var generateKey func(alg string) (crypto.Signer, error)

// verifierLeeway tolerates clock skew between the nodes of a fleet on
// nbf and iat (never on exp).
const verifierLeeway = 30 * time.Second

// Verifier checks the access tokens this engine issued; nil before Start.
func (e *Engine) Verifier() *tokens.Verifier { return e.verifier }

// Issuer is the engine's issuer identifier.
func (e *Engine) Issuer() string { return e.issuer }

func (e *Engine) debug(ctx context.Context, msg string, fields ...zap.Field) {
	if ce := e.logger.Check(zapcore.DebugLevel, msg); ce != nil {
		if id := RequestID(ctx); id != "" {
			fields = append(fields, zap.String("request_id", id))
		}
		ce.Write(fields...)
	}
}
