package grants

// The fixtures of the grants tests: the issuer,
// the clients and users, the store, and newEngine, the one way a test
// builds and starts an engine.

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/mem"
)

// The issuer every fixture engine has, and the client-credentials
// fixture (ccFixture): its resource, secrets and access-token lifetime.
const (
	testIssuer  = "https://as.test"
	testRS      = "https://app.test"
	basicSecret = "s3cr:et%+"
	postSecret  = "p0st-secret"
	testTTL     = 10 * time.Minute
)

// Secrets of the sign-in fixture clients, and the address browsers use.
const (
	webSecret     = "s3cr:et%+" // needs form-encoding inside Basic
	siBasicSecret = "basic-secret"
	trustedSecret = "trusted-secret"
	nopkceSecret  = "nopkce-secret"
	loopbackAddr  = "127.0.0.1:12345"
)

var testSecrets = map[string]string{
	"c-web":     webSecret,
	"c-basic":   siBasicSecret,
	"c-trusted": trustedSecret,
	"c-nopkce":  nopkceSecret,
	"c-ropc":    pwSecret,
}

// testRedirect is the redirect URI each client registered first.
var testRedirect = map[string]string{
	"c-web":     "https://client.test/cb",
	"c-basic":   "https://basic.test/cb",
	"c-trusted": "https://trusted.test/cb",
	"c-nopkce":  "https://nopkce.test/cb",
	"c-pub":     "http://127.0.0.1/cb",
	"c-multi":   "https://multi.test/a",
}

// openStore opens the fresh store every fixture engine runs on (unless
// withStore says otherwise) and closes it when the test ends. It is the
// one place that chooses the backend of the grants tests: the in-memory
// store, which passes the same conformance suite as bbolt
// (storage/storagetest) without an fsync per write; durability is
// tested on bbolt in storage/bolt and integration/.
func openStore(t testing.TB) storage.Store {
	t.Helper()
	st := mem.New()
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// ccClients are the client-credentials fixture clients (ccFixture).
func ccClients() []*Client {
	return []*Client{
		{
			ClientSpec: ClientSpec{
				ID:         "c-basic",
				AuthMethod: AuthSecretBasic,
				GrantTypes: []string{GrantClientCredentials},
				Scopes:     []string{"read", "write"},
				Audience:   []string{testRS},
			},
			SecretHash: HashSecret(basicSecret),
		},
		{
			ClientSpec: ClientSpec{
				ID:         "c-post",
				AuthMethod: AuthSecretPost,
				GrantTypes: []string{GrantClientCredentials},
				Scopes:     []string{"read"},
				Audience:   []string{testRS, "https://other.test"},
			},
			SecretHash: HashSecret(postSecret),
		},
		{
			ClientSpec: ClientSpec{
				// No scopes and no audience: tokens carry no scope and are for
				// the issuer itself.
				ID:         "c-bare",
				AuthMethod: AuthSecretBasic,
				GrantTypes: []string{GrantClientCredentials},
			},
			SecretHash: HashSecret("bare"),
		},
	}
}

// webClients are the sign-in fixture clients, the default of newEngine:
// code and refresh clients of every authentication method.
func webClients() []*Client {
	codeRefresh := []string{GrantAuthorizationCode, GrantRefreshToken}
	return []*Client{
		{
			ClientSpec: ClientSpec{
				ID:                     "c-web",
				AuthMethod:             AuthSecretBasic,
				GrantTypes:             codeRefresh,
				Scopes:                 []string{"openid", "profile", "email", "read", "write"},
				Audience:               []string{"https://app.test"},
				RedirectURIs:           []string{"https://client.test/cb"},
				PostLogoutRedirectURIs: []string{"https://client.test/bye"},
			},
			SecretHash: HashSecret(webSecret),
		},
		{
			ClientSpec: ClientSpec{
				ID:           "c-trusted",
				AuthMethod:   AuthSecretPost,
				GrantTypes:   codeRefresh,
				Scopes:       []string{"openid", "profile", "email", "read"},
				RedirectURIs: []string{"https://trusted.test/cb"},
				Trusted:      true,
			},
			SecretHash: HashSecret(trustedSecret),
		},
		{
			ClientSpec: ClientSpec{
				ID:           "c-pub",
				AuthMethod:   AuthNone,
				GrantTypes:   codeRefresh,
				Scopes:       []string{"openid", "read"},
				RedirectURIs: []string{"http://127.0.0.1/cb"},
			},
		},
		{
			ClientSpec: ClientSpec{
				ID:           "c-basic",
				AuthMethod:   AuthSecretBasic,
				GrantTypes:   []string{GrantAuthorizationCode, GrantClientCredentials},
				Scopes:       []string{"openid", "read"},
				RedirectURIs: []string{"https://basic.test/cb"},
			},
			SecretHash: HashSecret(siBasicSecret),
		},
		{
			ClientSpec: ClientSpec{
				ID:           "c-nopkce",
				AuthMethod:   AuthSecretBasic,
				GrantTypes:   []string{GrantAuthorizationCode},
				Scopes:       []string{"openid", "read"},
				Trusted:      true,
				PKCEOptional: true,
				RedirectURIs: []string{"https://nopkce.test/cb"},
			},
			SecretHash: HashSecret(nopkceSecret),
		},
		{
			ClientSpec: ClientSpec{
				ID:           "c-multi",
				AuthMethod:   AuthNone,
				GrantTypes:   []string{GrantAuthorizationCode},
				Scopes:       []string{"openid"},
				Trusted:      true,
				RedirectURIs: []string{"https://multi.test/a", "https://multi.test/b?x=1"},
			},
		},
	}
}

// testUsers are the sign-in fixture users: alice (with claims) and bob.
func testUsers() []*User {
	return []*User{
		{Name: "alice", PasswordHash: testHash("alice-pw"),
			Claims: map[string]string{"email": "alice@example.test", "email_verified": "true", "name": "Alice Liddell"}},
		{Name: "bob", PasswordHash: testHash("bob-pw")},
	}
}

// testConfig is the configuration newEngine starts from: the sign-in
// fixture clients and users.
func testConfig() Config {
	return Config{
		Issuer:          testIssuer,
		AccessTokenTTL:  5 * time.Minute,
		RefreshTokenTTL: time.Hour,
		Clients:         webClients(),
		Users:           testUsers(),
		Web:             WebConfig{SessionTTL: time.Hour},
	}
}

// testHash returns a cheap bcrypt hash of pw (MinCost keeps tests fast).
var testHash = func() func(string) string {
	var mu sync.Mutex
	cache := map[string]string{}
	return func(pw string) string {
		mu.Lock()
		defer mu.Unlock()
		if h, ok := cache[pw]; ok {
			return h
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		cache[pw] = string(h)
		return string(h)
	}
}()

// fixture is what newEngine builds: a base configuration, the changes
// the options made to it, and where the engine runs.
type fixture struct {
	base  func() Config
	mods  []func(testing.TB, *Config)
	store storage.Store
	// rev, when set (revSet), is the revocation set Start gets instead of
	// one loaded from the store.
	rev    *tokens.Revocations
	revSet bool
}

// engineOpt changes the fixture newEngine builds. Options apply in order,
// after the base configuration, whatever their position.
type engineOpt func(*fixture)

// newEngine builds and starts an engine of the sign-in fixture
// (testConfig) on a fresh store (openStore), with the revocation set
// loaded from it as the app does; opts change any of that.
func newEngine(t testing.TB, opts ...engineOpt) *Engine {
	t.Helper()
	e, err := startEngine(t, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// startEngine is newEngine for tests that expect NewEngine or Start to
// fail: it returns the error.
func startEngine(t testing.TB, opts ...engineOpt) (*Engine, error) {
	t.Helper()
	f := fixture{base: testConfig}
	for _, o := range opts {
		o(&f)
	}
	cfg := f.base()
	for _, mod := range f.mods {
		mod(t, &cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		return nil, fmt.Errorf("NewEngine: %w", err)
	}
	if f.store == nil {
		f.store = openStore(t)
	}
	ctx := context.Background()
	rev := f.rev
	if !f.revSet {
		if rev, err = tokens.LoadRevocations(ctx, f.store); err != nil {
			return nil, fmt.Errorf("LoadRevocations: %w", err)
		}
	}
	if err := e.Start(ctx, f.store, rev); err != nil {
		return nil, fmt.Errorf("Start: %w", err)
	}
	return e, nil
}

// ccFixture starts from the client-credentials fixture instead of the
// sign-in one: the ccClients, no users, access tokens for testTTL.
func ccFixture() engineOpt {
	return func(f *fixture) {
		f.base = func() Config {
			return Config{
				Issuer:          testIssuer,
				AccessTokenTTL:  testTTL,
				RefreshTokenTTL: time.Hour,
				Clients:         ccClients(),
				Web:             WebConfig{SessionTTL: time.Hour},
				Logger:          zap.NewNop(),
			}
		}
	}
}

// withConfig changes the configuration; a nil mod changes nothing.
func withConfig(mod func(*Config)) engineOpt {
	return func(f *fixture) {
		if mod != nil {
			f.mods = append(f.mods, func(_ testing.TB, c *Config) { mod(c) })
		}
	}
}

// withConfigT is withConfig for changes that may fail the test.
func withConfigT(mod func(testing.TB, *Config)) engineOpt {
	return func(f *fixture) { f.mods = append(f.mods, mod) }
}

// withClients registers more clients.
func withClients(cs ...*Client) engineOpt {
	return withConfig(func(c *Config) { c.Clients = append(c.Clients, cs...) })
}

// withLogger logs to l.
func withLogger(l *zap.Logger) engineOpt {
	return withConfig(func(c *Config) { c.Logger = l })
}

// observedLogger logs at debug level to logs, which the test reads.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

// withStore runs the engine on st instead of a fresh store.
func withStore(st storage.Store) engineOpt {
	return func(f *fixture) { f.store = st }
}

// withRevocations starts the engine with rev (nil: none) instead of the
// set loaded from its store: engines that stand for one server across a
// config reload share it.
func withRevocations(rev *tokens.Revocations) engineOpt {
	return func(f *fixture) { f.rev, f.revSet = rev, true }
}

// partnerKeys is the JWKS of the trusted issuer jbIssuer: caOtherKey,
// kid "idp1".
func partnerKeys(t testing.TB) *JWKS {
	t.Helper()
	keys, err := ParseJWKS(caJWKS(t, caOtherKey.Public(), "idp1", ""))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// withAssertionClients registers c-jwt (client_secret_jwt) and c-pkj
// (private_key_jwt, caKey as kid "k1").
func withAssertionClients() engineOpt {
	return withConfigT(func(t testing.TB, c *Config) { c.Clients = append(c.Clients, caClients(t)...) })
}

// withJWTBearer trusts jbIssuer (caOtherKey, kid "idp1") for c-jb; c-jb2
// may use the grant but is not allowed for that issuer. mod, when not
// nil, changes the trusted issuer.
func withJWTBearer(mod func(*TrustedIssuer)) engineOpt {
	return withConfigT(func(t testing.TB, c *Config) {
		ti := &TrustedIssuer{Issuer: jbIssuer, Keys: partnerKeys(t), AllowedClients: []string{"c-jb"}, Scopes: []string{"read", "write"}}
		if mod != nil {
			mod(ti)
		}
		c.Clients = append(c.Clients,
			&Client{
				ClientSpec: ClientSpec{
					ID:         "c-jb",
					AuthMethod: AuthSecretPost,
					GrantTypes: []string{GrantJWTBearer},
					Scopes:     []string{"read", "write", "admin"},
				},
				SecretHash: HashSecret(postSecret),
			},
			&Client{ClientSpec: ClientSpec{ID: "c-jb2", AuthMethod: AuthSecretPost, GrantTypes: []string{GrantJWTBearer}}, SecretHash: HashSecret(postSecret)})
		c.TrustedIssuers = []*TrustedIssuer{ti}
	})
}

// withSAML trusts samlIdP for c-saml; c-saml2 may use the grant but is
// not allowed for that IdP. mod, when not nil, changes the IdP.
func withSAML(mod func(*SAMLIdP)) engineOpt {
	return withConfigT(func(t testing.TB, c *Config) {
		idp, _ := samlSigners(t)
		p := &SAMLIdP{EntityID: samlIdP, Certificate: idp.Certificate(), AllowedClients: []string{"c-saml"}, Scopes: []string{"read", "write"}}
		if mod != nil {
			mod(p)
		}
		c.Clients = append(c.Clients,
			&Client{
				ClientSpec: ClientSpec{
					ID:         "c-saml",
					AuthMethod: AuthSecretPost,
					GrantTypes: []string{GrantSAML2Bearer},
					Scopes:     []string{"read", "write", "admin"},
				},
				SecretHash: HashSecret(postSecret),
			},
			&Client{ClientSpec: ClientSpec{ID: "c-saml2", AuthMethod: AuthSecretPost, GrantTypes: []string{GrantSAML2Bearer}}, SecretHash: HashSecret(postSecret)})
		c.SAMLIdPs = []*SAMLIdP{p}
	})
}

// withExchange registers c-tx, which may exchange for audience urn:svc:b
// and resource https://b.test and use jbIssuer's assertions, and the
// actors svc-a and svc-b (client_credentials, secret = id).
func withExchange() engineOpt {
	return withConfigT(func(t testing.TB, c *Config) {
		c.Clients = append(c.Clients,
			&Client{
				ClientSpec: ClientSpec{
					ID:         "c-tx",
					AuthMethod: AuthSecretPost,
					GrantTypes: []string{GrantTokenExchange, GrantJWTBearer},
					Scopes:     []string{"openid", "read", "write"},
				},
				SecretHash: HashSecret(postSecret),
				Exchange:   ExchangePolicy{Audiences: []string{"urn:svc:b"}, Resources: []string{"https://b.test"}},
			},
			// Actors: services acting under their client ids.
			&Client{ClientSpec: ClientSpec{ID: "svc-a", AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("svc-a")},
			&Client{ClientSpec: ClientSpec{ID: "svc-b", AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("svc-b")})
		c.TrustedIssuers = []*TrustedIssuer{{Issuer: jbIssuer, Keys: partnerKeys(t), AllowedClients: []string{"c-tx"}, Scopes: []string{"read"}}}
	})
}

// withLocalSubjects registers c-tx (token exchange and jwt-bearer, no
// exchange policy) and trusts jbIssuer for it, its subjects mapped to
// local users.
func withLocalSubjects() engineOpt {
	return withConfigT(func(t testing.TB, c *Config) {
		c.Clients = append(c.Clients, &Client{
			ClientSpec: ClientSpec{
				ID:         "c-tx",
				AuthMethod: AuthSecretPost,
				GrantTypes: []string{GrantTokenExchange, GrantJWTBearer},
				Scopes:     []string{"openid", "read"},
			},
			SecretHash: HashSecret(postSecret),
		})
		c.TrustedIssuers = []*TrustedIssuer{{Issuer: jbIssuer, Keys: partnerKeys(t), AllowedClients: []string{"c-tx"},
			Scopes: []string{"read"}, MapSubject: MapSubjectLocalUsers}}
	})
}

// Secrets of the introspecting resource servers (withResourceServers).
const (
	opRSSecret  = "rs-app-secret"
	opRSBSecret = "rs-b-secret"
)

// withResourceServers registers two resource-server clients (RFC 7662 §4):
// rs-app for https://app.test (c-web's audience) and rs-b for
// https://b.test.
func withResourceServers() engineOpt {
	return withClients(
		&Client{
			ClientSpec: ClientSpec{
				ID:             "rs-app",
				AuthMethod:     AuthSecretBasic,
				GrantTypes:     []string{GrantClientCredentials},
				Audience:       []string{"https://app.test"},
				ResourceServer: true,
			},
			SecretHash: HashSecret(opRSSecret),
		},
		&Client{
			ClientSpec: ClientSpec{
				ID:             "rs-b",
				AuthMethod:     AuthSecretBasic,
				GrantTypes:     []string{GrantClientCredentials},
				Audience:       []string{"https://b.test"},
				ResourceServer: true,
			},
			SecretHash: HashSecret(opRSBSecret),
		})
}

const pwSecret = "ropc-secret-0123456789"

// withROPC registers c-ropc (password and refresh, client_secret_basic)
// and c-ropc-once (password only, client_secret_post).
func withROPC() engineOpt {
	return withClients(
		&Client{
			ClientSpec: ClientSpec{
				ID:         "c-ropc",
				AuthMethod: AuthSecretBasic,
				GrantTypes: []string{GrantPassword, GrantRefreshToken},
				Scopes:     []string{"openid", "email", "read"},
			},
			SecretHash: HashSecret(pwSecret),
		},
		&Client{
			ClientSpec: ClientSpec{
				ID:         "c-ropc-once",
				AuthMethod: AuthSecretPost,
				GrantTypes: []string{GrantPassword},
				Scopes:     []string{"read"},
			},
			SecretHash: HashSecret(pwSecret),
		})
}

// withTwoAPIs registers c-web and c-ropc (withROPC, given before) for two
// APIs: https://app.test and https://billing.test/api.
func withTwoAPIs() engineOpt {
	return withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-web" || cl.ID == "c-ropc" {
				cl.Audience = []string{"https://app.test", "https://billing.test/api"}
			}
		}
	})
}

// withThrottle locks a user after 3 failures from one address and an
// address after 6, and adds the users carol, dave, erin and frank
// (password: name + "-pw").
func withThrottle() engineOpt {
	return withConfig(func(c *Config) {
		c.Web.Throttle = ThrottleConfig{MaxFailures: 3, UserMaxFailures: 6, IPMaxFailures: 6, IPDelay: 50 * time.Millisecond}
		for _, n := range []string{"carol", "dave", "erin", "frank"} {
			c.Users = append(c.Users, &User{Name: n, PasswordHash: testHash(n + "-pw")})
		}
	})
}

// withEveryGrant registers invClients, trusts jbIssuer for the
// jwt-bearer and exchange ones and samlIdP for the SAML ones (the
// invariants of docs/security.md).
func withEveryGrant() engineOpt {
	return withConfigT(func(t testing.TB, c *Config) {
		idp, _ := samlSigners(t)
		c.Clients = append(c.Clients, invClients()...)
		c.TrustedIssuers = []*TrustedIssuer{{Issuer: jbIssuer, Keys: partnerKeys(t), Scopes: []string{"read"},
			AllowedClients: []string{"inv-jb", "inv-jb-o", "inv-tx", "inv-tx-o"}}}
		c.SAMLIdPs = []*SAMLIdP{{EntityID: samlIdP, Certificate: idp.Certificate(), Scopes: []string{"read"},
			AllowedClients: []string{"inv-saml", "inv-saml-o"}}}
	})
}

// Every engine now holds an RSA key for ID tokens, and a 2048-bit RSA key
// takes about half a second to make. Tests draw RSA keys from a small
// pool instead, made on first use and handed out in turn: consecutive
// draws always differ, which is all a rotation in one test needs.
func init() {
	real := tokens.GenerateKey
	const size = 4
	var (
		mu   sync.Mutex
		pool []crypto.Signer
		next int
	)
	generateKey = func(alg string) (crypto.Signer, error) {
		if alg != "RS256" && alg != "PS256" {
			k, err := real(alg)
			if err == nil {
				remember(k)
			}
			return k, err
		}
		mu.Lock()
		defer mu.Unlock()
		if len(pool) < size {
			k, err := real(alg)
			if err != nil {
				return nil, err
			}
			pool = append(pool, k)
			remember(k)
			return k, nil
		}
		k := pool[next%size]
		next++
		return k, nil
	}
}

// privateKeys are the private keys the engines of these tests made, by
// kid (the RFC 7638 thumbprint of the public key), so that a test can
// sign hostile content with an engine's real key (signRaw).
var privateKeys sync.Map

func remember(k crypto.Signer) {
	pub, err := jwk.Import(k.Public())
	if err != nil {
		panic(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	privateKeys.Store(base64.RawURLEncoding.EncodeToString(tp), k)
}

// signRaw signs an arbitrary header and payload with one of an engine's
// keys, bypassing MintAccessToken, so tests can produce tokens that carry
// our real signature over hostile content.
func signRaw(t testing.TB, k *tokens.Key, hdr, payload string) string {
	t.Helper()
	priv, ok := privateKeys.Load(k.ID)
	if !ok {
		t.Fatalf("no private key for kid %s", k.ID)
	}
	signer, err := jws.SignerFor(k.Alg)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := signer.Sign(priv, []byte(input))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// hdrMap is the header our keys put on access tokens; mod edits it.
func hdrMap(k *tokens.Key, mod func(map[string]any)) map[string]any {
	m := map[string]any{"alg": k.Alg.String(), "kid": k.ID, "typ": "at+jwt"}
	if mod != nil {
		mod(m)
	}
	return m
}

// RequestIDString is a request id known in advance, for Front.RequestID.
type RequestIDString string

func (s RequestIDString) String() string { return string(s) }
