// Package caddymodule plugs the OAuth engine into Caddy: the oauth app
// (a global option), the oauth_server and oauth_protect handlers and their
// Caddyfile syntax.
package caddymodule

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `oauth` app: the authorization server's configuration and
// state, shared by every oauth_server and oauth_protect handler.
type App struct {
	// Issuer is the issuer identifier: the exact `iss` of every token and
	// the base URL of every endpoint. It must be https without a trailing
	// slash (http is allowed for localhost). Required.
	Issuer string `json:"issuer"`

	// StoragePath is the bbolt file that holds signing keys and grants.
	// Default: `oauth/oauth.db` in Caddy's data directory.
	StoragePath string `json:"storage_path,omitempty"`

	// SigningAlg is the JWS algorithm access tokens are signed with: ES256
	// (default), EdDSA, RS256 or PS256. A key for it is generated at first
	// start and kept in storage.
	SigningAlg string `json:"signing_alg,omitempty"`

	// AccessTokenTTL is how long access tokens (and ID tokens) live.
	// Default: 10m.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`

	// RefreshTokenTTL is the absolute lifetime of a grant's refresh
	// tokens: rotation never extends it. Default: 720h (30 days).
	RefreshTokenTTL caddy.Duration `json:"refresh_token_ttl,omitempty"`

	// RefreshTokenIdleTTL ends a grant whose refresh token was not used
	// for this long: the next refresh is refused with invalid_grant
	// (RFC 9700 §4.14.2). Each rotation restarts it; refresh_token_ttl
	// still bounds the grant. It must be shorter than refresh_token_ttl.
	// Default: 0 (off).
	RefreshTokenIdleTTL caddy.Duration `json:"refresh_token_idle_ttl,omitempty"`

	// RefreshGracePeriod lets a rotated refresh token be used once more
	// within this time if the token it was rotated into was never used
	// (the client lost the response). Default: 0 (off); at most 1m.
	RefreshGracePeriod caddy.Duration `json:"refresh_grace_period,omitempty"`

	// SessionTTL is how long a browser stays signed in at the login page.
	// Default: 12h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	// TemplatesDir holds replacement HTML templates for the sign-in pages
	// (login.html, consent.html, error.html, logout.html, loggedout.html);
	// any that are missing use the built-in ones. Default: built-in pages.
	TemplatesDir string `json:"templates_dir,omitempty"`

	// Logo is an image file shown on the sign-in pages instead of the
	// built-in logo.
	Logo string `json:"logo,omitempty"`

	// LoginMaxFailures is how many failed sign-ins a user name may have
	// from one client address within 15 minutes before that pair is
	// locked out, for 30s and then twice as long after each further
	// failure; four times as many, from any addresses, lock the name. A
	// client address (Caddy's client IP, which honours trusted_proxies) is
	// never locked: past four times as many failures its failed sign-ins
	// are answered after a delay, while a correct password from it is
	// checked and answered at once. Default: 5.
	LoginMaxFailures int `json:"login_max_failures,omitempty"`

	// BehindTLSProxy says TLS ends in a proxy in front of Caddy, so the
	// token endpoint may answer plain-HTTP requests from any address.
	// Without it, plain HTTP is answered only for loopback clients.
	// Default: false.
	BehindTLSProxy bool `json:"behind_tls_proxy,omitempty"`

	// SweepInterval is how often expired codes, refresh tokens, sessions,
	// revocations and retired keys are deleted from storage, in small
	// transactions, so the file reaches a steady size. One sweeper runs
	// per storage file; the interval of the newest config wins. Default: 1m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// KeyRotation, when set, makes a new signing key once the current one
	// is this old (at least 1m). Old keys keep verifying, and stay in the
	// JWKS, until every token they signed has expired. Default: no
	// automatic rotation (rotate on demand with `caddy oauth keys rotate`).
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`

	// KeyEncryptionKey encrypts the private signing keys in storage with
	// AES-256-GCM (a key derived from it with HKDF-SHA256). Use a
	// placeholder such as {env.OAUTH_KEK}; at least 32 bytes. When empty,
	// the OAUTH_KEK environment variable is used; without either, keys are
	// stored unencrypted. Keys found stored plain are refused (they may
	// have been planted by someone who can write the storage file) unless
	// SealPlainKeys is set. Default: none.
	KeyEncryptionKey string `json:"key_encryption_key,omitempty"`

	// SealPlainKeys, with KeyEncryptionKey, seals the signing keys stored
	// unencrypted (by a server that had no key encryption key) instead of
	// refusing them: set it for the one start that migrates a storage file
	// to sealed keys, then remove it; a warning is logged at every start
	// while it is set. Default: false.
	SealPlainKeys bool `json:"seal_plain_keys,omitempty"`

	// Clients are the registered OAuth clients.
	Clients []ClientConfig `json:"clients,omitempty"`

	// TrustIssuers are identity providers whose signed JWTs clients may
	// exchange for access tokens with the JWT bearer grant (RFC 7523).
	TrustIssuers []TrustIssuerConfig `json:"trust_issuers,omitempty"`

	// SAMLIdPs are SAML 2.0 identity providers whose signed assertions
	// clients may exchange for access tokens with the SAML 2.0 bearer
	// grant (RFC 7522).
	SAMLIdPs []SAMLIdPConfig `json:"saml_idps,omitempty"`

	// Users can sign in at the login page. More can be added at run time
	// with `caddy oauth user add`; those live in storage.
	Users []UserConfig `json:"users,omitempty"`

	engine *grants.Engine
	logger *zap.Logger
	path   string
	// life is the app's run-time state, behind a pointer so that App
	// values can be copied.
	life *lifecycle
}

// lifecycle tracks whether this config holds the storage file.
type lifecycle struct {
	mu      sync.Mutex
	started bool
	// closed is set by Cleanup: after it, storage is never opened again
	// for this config, or nothing would ever release it.
	closed bool
	// running is the started engine, read without the lock on every
	// request.
	running atomic.Pointer[grants.Engine]
	// stopKeys ends the key maintenance task; keysDone is closed when it
	// has ended.
	stopKeys, keysDone chan struct{}
}

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

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the configuration and builds the engine. It does not
// open storage, so `caddy validate` works while a server holds the file.
func (a *App) Provision(ctx caddy.Context) error {
	a.life = new(lifecycle)
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("oauth: registering metrics: %w", err)
	}
	if a.Issuer == "" {
		return errors.New("oauth: issuer is required (for example: issuer https://auth.example.com)")
	}
	if a.SigningAlg == "" {
		a.SigningAlg = "ES256"
	}
	if a.AccessTokenTTL == 0 {
		a.AccessTokenTTL = caddy.Duration(10 * time.Minute)
	}
	if a.RefreshTokenTTL == 0 {
		a.RefreshTokenTTL = caddy.Duration(720 * time.Hour)
	}
	if a.SessionTTL == 0 {
		a.SessionTTL = caddy.Duration(12 * time.Hour)
	}
	if a.SweepInterval < 0 {
		return errors.New("oauth: sweep_interval must be positive")
	}
	path := a.StoragePath
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "oauth", "oauth.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("oauth: storage_path %q: %w", path, err)
	}
	a.path = filepath.Clean(abs)

	repl := caddy.NewReplacer()
	clients, err := buildAll(a.Clients, func(cc ClientConfig) (*grants.Client, error) { return cc.build(repl) })
	if err != nil {
		return err
	}
	trusted, err := buildAll(a.TrustIssuers, TrustIssuerConfig.build)
	if err != nil {
		return err
	}
	idps, err := buildAll(a.SAMLIdPs, SAMLIdPConfig.build)
	if err != nil {
		return err
	}
	kek := repl.ReplaceKnown(a.KeyEncryptionKey, "")
	if a.KeyEncryptionKey != "" && kek == "" {
		return fmt.Errorf("oauth: key_encryption_key %q is empty after replacing placeholders (is the environment variable set?)", a.KeyEncryptionKey)
	}
	if kek == "" {
		kek = os.Getenv("OAUTH_KEK")
	}
	if kek == "" {
		a.logger.Warn("signing keys are stored unencrypted: anyone who can read the storage file can sign tokens; set key_encryption_key (or OAUTH_KEK) to encrypt them",
			zap.String("storage_path", a.path))
	}
	users := make([]*grants.User, 0, len(a.Users))
	for _, uc := range a.Users {
		users = append(users, &grants.User{Name: uc.Name, PasswordHash: uc.PasswordHash, Claims: uc.Claims})
	}
	a.engine, err = grants.NewEngine(grants.Config{
		Issuer:          a.Issuer,
		AccessTokenTTL:  time.Duration(a.AccessTokenTTL),
		RefreshTokenTTL: time.Duration(a.RefreshTokenTTL),
		RefreshGrace:    time.Duration(a.RefreshGracePeriod),
		Clients:         clients,
		Users:           users,
		TrustedIssuers:  trusted,
		SAMLIdPs:        idps,

		RefreshTokenIdleTTL: time.Duration(a.RefreshTokenIdleTTL),
		Web: grants.WebConfig{
			SessionTTL:   time.Duration(a.SessionTTL),
			TemplatesDir: a.TemplatesDir,
			LogoFile:     a.Logo,
			Throttle:     grants.ThrottleConfig{MaxFailures: a.LoginMaxFailures},
		},
		BehindTLSProxy:   a.BehindTLSProxy,
		SigningAlg:       a.SigningAlg,
		KeyRotation:      time.Duration(a.KeyRotation),
		KeyEncryptionKey: []byte(kek),
		SealPlainKeys:    a.SealPlainKeys,
		Observer:         metricsObserver{},
		Logger:           a.logger,
	})
	if err != nil {
		return fmt.Errorf("oauth: %w", err)
	}
	return nil
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

func (cc ClientConfig) build(repl *caddy.Replacer) (*grants.Client, error) {
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
	case keys != nil && c.AuthMethod != grants.AuthPrivateKeyJWT:
		return fmt.Errorf("client %q: jwks, jwks_file and jwks_uri are for auth_method private_key_jwt", cc.ID)
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

// Start opens storage and loads the signing keys.
func (a *App) Start() error {
	if _, err := a.ready(); err != nil {
		return err
	}
	live.Store(a)
	return nil
}

// Stop implements caddy.App. Storage is released in Cleanup, after the
// next config (if any) has taken its own reference.
func (a *App) Stop() error {
	live.CompareAndSwap(a, nil)
	return nil
}

// Cleanup releases this config's reference to the storage file. The
// engine stays usable for requests of this config still in flight: its
// keys are in memory, and storage stays open while a newer config holds
// it (otherwise storage calls fail as unavailable).
func (a *App) Cleanup() error {
	l := a.life
	if l == nil {
		return nil // Provision failed before anything was acquired
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if !l.started {
		return nil
	}
	close(l.stopKeys)
	<-l.keysDone
	_, err := stores.Delete(a.path)
	return err
}

// ready returns the engine, opening storage first if Start has not run
// yet: apps start in no fixed order, so a request may reach a handler
// before this app's Start.
func (a *App) ready() (*grants.Engine, error) {
	l := a.life
	if e := l.running.Load(); e != nil {
		return e, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return a.engine, nil
	}
	if l.closed {
		return nil, errors.New("oauth: this config has been unloaded")
	}
	val, _, err := stores.LoadOrNew(a.path, func() (caddy.Destructor, error) {
		st, err := bolt.Open(a.path, 3*time.Second)
		if err != nil {
			return nil, err
		}
		rev, err := tokens.LoadRevocations(context.Background(), st)
		if err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("oauth storage: reading revocations from %s: %w", a.path, err)
		}
		return &storeHandle{Store: st, rev: rev,
			sweeper: grants.StartSweeper(st, rev, time.Duration(a.SweepInterval), caddy.Log().Named("oauth.sweeper"))}, nil
	})
	if err != nil {
		return nil, err
	}
	h := val.(*storeHandle)
	h.sweeper.SetInterval(time.Duration(a.SweepInterval))
	if err := a.engine.Start(context.Background(), h.Store, h.rev); err != nil {
		_, _ = stores.Delete(a.path)
		return nil, fmt.Errorf("oauth: starting on storage %s: %w", a.path, err)
	}
	l.started = true
	l.stopKeys, l.keysDone = make(chan struct{}), make(chan struct{})
	go a.maintainKeys(l.stopKeys, l.keysDone)
	l.running.Store(a.engine)
	return a.engine, nil
}

// maintainKeys rotates the signing key when key_rotation says so and
// reloads the key ring, so this config signs with a key another config
// on the same file made and drops retired keys from its JWKS.
func (a *App) maintainKeys(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(a.engine.KeyMaintenanceInterval())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if err := a.engine.MaintainKeys(context.Background(), now); err != nil {
				a.logger.Error("maintaining the signing keys failed; will retry", zap.Error(err))
			}
		}
	}
}

// stores shares one open bbolt handle per file across configs: Caddy
// provisions and starts a new config before it cleans up the old one,
// and bbolt allows one handle per file per process.
var stores = caddy.NewUsagePool()

// storeHandle is what configs on one file share: the store, the
// in-memory revocation set fed from it, and the sweeper that deletes its
// expired records.
type storeHandle struct {
	storage.Store
	rev     *tokens.Revocations
	sweeper *grants.Sweeper
}

// Destruct stops the sweeper, then closes the file.
func (h *storeHandle) Destruct() error {
	h.sweeper.Stop()
	return h.Store.Close()
}

// appFrom finds the oauth app for a handler.
func appFrom(ctx caddy.Context, directive string) (*App, error) {
	v, err := ctx.AppIfConfigured("oauth")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("%s needs the `oauth` global option (with at least an issuer)", directive)
	}
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
