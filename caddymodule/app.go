// Package caddymodule plugs the OAuth engine into Caddy: the oauth app
// (a global option), the oauth_server and oauth_protect handlers and their
// Caddyfile syntax.
package caddymodule

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
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

	// Storage is where signing keys, grants and users are kept: a module
	// of the oauth.storage namespace, named by its "module" key, such as
	// {"module": "bolt", "path": "/var/lib/caddy/oauth.db"}. It and
	// storage_path are mutually exclusive. Default: the bolt module at
	// storage_path.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=oauth.storage inline_key=module"`

	// StoragePath is the shorthand for the bolt storage module: the bbolt
	// file that holds signing keys and grants. Not allowed with storage.
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

	// ScopeDescriptions are what the consent page says each scope lets
	// the client do, by scope ("invoices:read": "Read your invoices").
	// They override the built-in descriptions of openid, profile, email,
	// address, phone and offline_access; a scope without a description
	// is shown as itself. Default: the built-in ones only.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`

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

	// DPoPNonce makes the token endpoint require a server nonce in every
	// DPoP proof (RFC 9449 §8): a proof without the current one gets 400
	// use_dpop_nonce and the nonce in a DPoP-Nonce header, and the client
	// retries with it. Nonces are derived from the signing key, so every
	// node on one storage accepts those of the others. Default: false
	// (proofs are limited by their iat and single-use jti instead).
	DPoPNonce bool `json:"dpop_nonce,omitempty"`

	// DPoPSigningAlgs are the algorithms a DPoP proof may be signed with,
	// listed in the metadata as dpop_signing_alg_values_supported. Only
	// asymmetric ones are allowed. Default: ES256 ES384 ES512 EdDSA RS256
	// RS384 RS512 PS256 PS384 PS512.
	DPoPSigningAlgs []string `json:"dpop_signing_algs,omitempty"`

	// RequirePushedAuthorizationRequests makes every client send its
	// authorization requests through the PAR endpoint, /oauth/par
	// (RFC 9126): a plain request to the authorization endpoint is
	// refused with invalid_request, and the metadata says
	// require_pushed_authorization_requests. The sign-in clients of
	// oauth_protect are exempt. Default: false (a client may still
	// require it for itself).
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`

	// PushedRequestTTL is how long a request_uri from the PAR endpoint
	// stays usable (once), 1s to 10m. Default: 60s.
	PushedRequestTTL caddy.Duration `json:"pushed_request_ttl,omitempty"`

	// DeviceCodeTTL is how long a device code and its user code of the
	// device authorization grant (RFC 8628) stay valid: the expires_in of
	// the device authorization response. Default: 10m; between 1m and 1h.
	DeviceCodeTTL caddy.Duration `json:"device_code_ttl,omitempty"`

	// DevicePollInterval is the least time a device waits between two
	// polls of the token endpoint (the interval of the device
	// authorization response); a device that polls faster gets slow_down
	// and a longer interval. Default: 5s; whole seconds between 1s and 1m.
	DevicePollInterval caddy.Duration `json:"device_poll_interval,omitempty"`
	// TLSClientCAFile is a PEM file of the CA certificates that issue the
	// certificates of tls_client_auth clients (RFC 8705 §2.1), for every
	// such client without its own tls_client_ca_file. Default: none.
	TLSClientCAFile string `json:"tls_client_ca_file,omitempty"`

	// ClientCertHeader reads the client certificate (RFC 9440
	// Client-Cert) from a header set by a TLS-terminating proxy, for
	// requests whose direct peer is one of its trusted_proxies only; from
	// anyone else the header is removed unread. Default: none (the
	// certificate comes from Caddy's own TLS connection only).
	ClientCertHeader *tokens.CertHeader `json:"client_cert_header,omitempty"`

	// Registration turns on dynamic client registration (RFC 7591, RFC
	// 7592) at <issuer>/oauth/register. Default: off.
	Registration *RegistrationConfig `json:"registration,omitempty"`

	// ClientIDMetadata turns on client ID metadata documents: an https
	// client_id names the client's metadata, fetched from there. Default:
	// off.
	ClientIDMetadata *ClientIDMetadataConfig `json:"client_id_metadata,omitempty"`

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
	// store opens the storage: the provisioned storage module.
	store StoreOpener
	// kekSource names where the key encryption key came from, for its
	// errors: key_encryption_key (with its placeholder) or the OAUTH_KEK
	// environment variable.
	kekSource string
	// ctx finds the http app at Start, for warnIssuerNotServed.
	ctx caddy.Context
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
	// store is the storage the engine started on, for the admin API's
	// backup; set with running.
	store storage.Store
	// watch tells the engine of key changes on other nodes; nil unless
	// the storage is shared (storewatch.go).
	watch *storeWatch
	// stopKeys ends the key maintenance task; keysDone is closed when it
	// has ended.
	stopKeys, keysDone chan struct{}
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
	a.ctx = ctx
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
	if err := a.provisionStorage(ctx); err != nil {
		return err
	}

	if a.ClientCertHeader != nil {
		if err := a.ClientCertHeader.Provision(); err != nil {
			return fmt.Errorf("oauth: %w", err)
		}
	}
	repl := caddy.NewReplacer()
	var caPool *x509.CertPool
	if a.TLSClientCAFile != "" {
		pool, err := loadCAFile(a.TLSClientCAFile)
		if err != nil {
			return fmt.Errorf("oauth: %w", err)
		}
		caPool = pool
	}
	clients, err := buildAll(a.Clients, func(cc ClientConfig) (*grants.Client, error) {
		cc.warnWeakSecret(repl, a.logger)
		return cc.build(repl, caPool)
	})
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
	a.kekSource = "key_encryption_key"
	if kek != a.KeyEncryptionKey {
		// A placeholder: naming it tells which variable to fix.
		a.kekSource = "key_encryption_key " + a.KeyEncryptionKey
	}
	if kek == "" {
		var set bool
		kek, set = os.LookupEnv("OAUTH_KEK")
		a.kekSource = "the OAUTH_KEK environment variable (used because key_encryption_key is not set)"
		if set && kek == "" {
			// Set but empty is a mistake (an unexpanded secret, an empty
			// file), not a wish to store the keys in the clear.
			return fmt.Errorf("oauth: %s is set but empty; give it a key of at least %d bytes (for example: openssl rand -base64 32), or unset it to store the signing keys unencrypted",
				a.kekSource, tokens.MinKeyEncryptionKeyLen)
		}
	}
	if kek != "" && len(kek) < tokens.MinKeyEncryptionKeyLen {
		return fmt.Errorf("oauth: %s is %d bytes; a key encryption key must be at least %d (for example: openssl rand -base64 32)",
			a.kekSource, len(kek), tokens.MinKeyEncryptionKeyLen)
	}
	if kek == "" && isShared(a.store) {
		return fmt.Errorf("oauth: storage %s is shared by every node that uses it, so the signing keys in it must be encrypted: set key_encryption_key (for example: key_encryption_key {env.OAUTH_KEK}, with OAUTH_KEK from openssl rand -base64 32) to the same value on every node",
			a.store.StoreName())
	}
	if kek == "" {
		a.logger.Warn("signing keys are stored unencrypted: anyone who can read the storage file can sign tokens; set key_encryption_key (or OAUTH_KEK) to encrypt them",
			zap.String("storage", a.store.StoreName()))
	}
	registration, err := a.Registration.build(repl)
	if err != nil {
		return err
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
			SessionTTL:        time.Duration(a.SessionTTL),
			TemplatesDir:      a.TemplatesDir,
			LogoFile:          a.Logo,
			ScopeDescriptions: a.ScopeDescriptions,
			Throttle:          grants.ThrottleConfig{MaxFailures: a.LoginMaxFailures},
		},
		BehindTLSProxy:   a.BehindTLSProxy,
		SigningAlg:       a.SigningAlg,
		KeyRotation:      time.Duration(a.KeyRotation),
		KeyEncryptionKey: []byte(kek),
		SealPlainKeys:    a.SealPlainKeys,
		DPoP:             grants.DPoPConfig{Nonce: a.DPoPNonce, Algs: a.DPoPSigningAlgs},
		PAR:              grants.PARConfig{Require: a.RequirePushedAuthorizationRequests, TTL: time.Duration(a.PushedRequestTTL)},
		Device:           grants.DeviceConfig{CodeTTL: time.Duration(a.DeviceCodeTTL), Interval: time.Duration(a.DevicePollInterval)},
		ClientCertHeader: a.ClientCertHeader != nil,
		Registration:     registration,
		ClientIDMetadata: a.ClientIDMetadata.build(),
		SharedStore:      isShared(a.store),
		Observer:         metricsObserver{},
		Logger:           a.logger,
	})
	if err != nil {
		return fmt.Errorf("oauth: %w", err)
	}
	return nil
}

// Start opens storage and loads the signing keys.
func (a *App) Start() error {
	if _, err := a.ready(); err != nil {
		return err
	}
	a.warnIssuerNotServed(a.ctx)
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
	l.watch.removeEngine(a.engine)
	return releaseStore(a.store.StoreKey())
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
	h, err := acquireStore(a.store, time.Duration(a.SweepInterval))
	if err != nil {
		return nil, err
	}
	if err := a.engine.Start(context.Background(), h.Store, h.rev); err != nil {
		_ = releaseStore(a.store.StoreKey())
		if errors.Is(err, tokens.ErrKeyEncryption) {
			hint := ""
			if isShared(a.store) {
				hint = "; a shared storage needs the same key_encryption_key on every node"
			}
			return nil, fmt.Errorf("oauth: starting on storage %s: %w (the key encryption key is from %s%s)", a.store.StoreName(), err, a.kekSource, hint)
		}
		return nil, fmt.Errorf("oauth: starting on storage %s: %w", a.store.StoreName(), err)
	}
	l.started = true
	l.stopKeys, l.keysDone = make(chan struct{}), make(chan struct{})
	go a.maintainKeys(l.stopKeys, l.keysDone)
	l.store, l.watch = h.Store, h.watch
	l.watch.addEngine(a.engine)
	l.running.Store(a.engine)
	return a.engine, nil
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

// Verifier checks the access tokens this app issues, for oauth_protect;
// it opens the storage on first use.
func (a *App) Verifier() (*tokens.Verifier, error) {
	eng, err := a.ready()
	if err != nil {
		return nil, err
	}
	return eng.Verifier(), nil
}

// GateSettings tells oauth_protect the issuer and the TLS rule.
func (a *App) GateSettings() (issuer string, behindTLSProxy bool) {
	return a.Issuer, a.BehindTLSProxy
}

// DPoPSettings tells oauth_protect the proof algorithms and the server
// nonces (nil unless dpop_nonce) of the token endpoint, so that one
// nonce serves both.
func (a *App) DPoPSettings() (algs []string, nonces *tokens.DPoPNonces) {
	return a.engine.DPoPAlgs(), a.engine.DPoPNonces()
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
