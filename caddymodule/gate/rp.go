package gate

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// relyingParty is the gate as an OpenID Connect client of its provider:
// golang.org/x/oauth2 for the code flow and refresh, go-oidc for
// discovery and the ID token. With the built-in provider every request
// it makes goes in process through the app's RoundTripper.
type relyingParty struct {
	clientID   string
	client     *http.Client
	provider   *oidc.Provider
	idVerifier *oidc.IDTokenVerifier
	oauth      oauth2.Config
	// endSession and revocation are the discovered endpoints, or "".
	endSession string
	revocation string
	sealer     *tokens.Sealer
	// sessionAAD and loginAAD bind the cookies to this provider and
	// client: a cookie sealed for another issuer or gate does not open.
	sessionAAD []byte
	loginAAD   []byte
}

// rpRetryAfter is how long a failed discovery (provider or storage
// unavailable) is answered from memory before it is tried again, so that
// a down provider is not asked on every request.
const rpRetryAfter = 5 * time.Second

// rpTimeout bounds one attempt at discovery.
const rpTimeout = 10 * time.Second

// errUnavailable marks a failure of the provider or of storage: the
// browser gets 503 with Retry-After, not a page that blames it.
var errUnavailable = errors.New("sign-in provider unavailable")

// relyingParty returns the relying party, making it on first use.
func (ls *loginState) relyingParty(ctx context.Context) (*relyingParty, error) {
	ls.rpMu.Lock()
	defer ls.rpMu.Unlock()
	if ls.rp != nil {
		return ls.rp, nil
	}
	if ls.rpErr != nil && ls.now().Before(ls.rpRetry) {
		return nil, ls.rpErr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rpTimeout)
	defer cancel()
	rp, err := ls.makeRelyingParty(ctx)
	if err != nil {
		ls.rpErr, ls.rpRetry = fmt.Errorf("%w: %v", errUnavailable, err), ls.now().Add(rpRetryAfter)
		ls.logger.Error("oauth_protect: sign-in provider not ready; retrying on a later request",
			zapIssuer(ls.issuerURL), zapErr(err))
		return nil, ls.rpErr
	}
	ls.rp, ls.rpErr = rp, nil
	return rp, nil
}

func (ls *loginState) makeRelyingParty(ctx context.Context) (*relyingParty, error) {
	rp := &relyingParty{}
	var err error
	if ls.external {
		rp.clientID = ls.clientID
		rp.client = ls.externalClient
		if rp.client == nil {
			rp.client = externalHTTPClient()
		}
	} else {
		var rt http.RoundTripper
		audience := ls.audience
		if audience == audienceAny {
			audience = "" // tokens for no API in particular
		}
		rp.clientID, rt, err = ls.app.LoginClient(ls.redirectURI, ls.postLogoutURI, ls.name, audience, ls.scopes)
		if err != nil {
			return nil, fmt.Errorf("registering the gate's client: %w", err)
		}
		rp.client = &http.Client{Transport: rt, Timeout: rpTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if ls.app != nil {
		rp.sealer, err = ls.app.SessionSealer()
	} else {
		rp.sealer, err = loadSessionSealer(ctx, ls.storage)
	}
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	rp.provider, err = oidc.NewProvider(oidc.ClientContext(ctx, rp.client), ls.issuerURL)
	if err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", ls.issuerURL, err)
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		Revocation string   `json:"revocation_endpoint"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := rp.provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", ls.issuerURL, err)
	}
	rp.endSession, rp.revocation = meta.EndSession, meta.Revocation
	// The ID token's algorithm is pinned to those discovery lists (go-oidc
	// does so when SupportedSigningAlgs is empty and discovery names any);
	// a provider that lists none gets go-oidc's default, RS256 only.
	rp.idVerifier = rp.provider.Verifier(&oidc.Config{ClientID: rp.clientID, Now: func() time.Time { return ls.now() }})
	endpoint := rp.provider.Endpoint()
	if ls.external && ls.clientSecret != "" {
		endpoint.AuthStyle = oauth2.AuthStyleInHeader
	} else {
		// A public client, or the built-in one whose RoundTripper
		// authenticates it: client_id in the body, no secret.
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	rp.oauth = oauth2.Config{ClientID: rp.clientID, ClientSecret: ls.clientSecret, Endpoint: endpoint,
		RedirectURL: ls.redirectURI, Scopes: ls.scopes}
	bind := "\x00" + ls.issuerURL + "\x00" + rp.clientID + "\x00" + ls.redirectURI
	rp.sessionAAD = []byte("oauthgate session" + bind)
	rp.loginAAD = []byte("oauthgate login" + bind)
	return rp, nil
}

// ctx carries the relying party's HTTP client to oauth2 and go-oidc.
func (rp *relyingParty) ctx(parent context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(parent, oauth2.HTTPClient, rp.client), rp.client)
}

// externalHTTPClient is the client for an external provider: bounded in
// every phase, and it follows no redirects (a token endpoint that
// redirects is misconfigured, and a redirect could carry the code or
// secret elsewhere).
func externalHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 5 * time.Second
	tr.ResponseHeaderTimeout = 10 * time.Second
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// sessionKeyName is where a gate without the oauth app keeps the secret
// its session cookies are sealed with, in Caddy's storage: every gate
// (and every node sharing the storage) seals with the same key.
const sessionKeyName = "oauth_protect/session.key"

// loadSessionSealer loads the sealing secret from storage, making it
// once under the storage's lock.
func loadSessionSealer(ctx context.Context, st storageLike) (*tokens.Sealer, error) {
	if st == nil {
		return nil, errors.New("no storage for the session key")
	}
	secret, err := st.Load(ctx, sessionKeyName)
	if errors.Is(err, fs.ErrNotExist) {
		if err := st.Lock(ctx, sessionKeyName); err != nil {
			return nil, fmt.Errorf("locking %s: %w", sessionKeyName, err)
		}
		defer func() { _ = st.Unlock(context.WithoutCancel(ctx), sessionKeyName) }()
		secret, err = st.Load(ctx, sessionKeyName)
		if errors.Is(err, fs.ErrNotExist) {
			secret = make([]byte, 32)
			_, _ = rand.Read(secret)
			if err = st.Store(ctx, sessionKeyName, secret); err != nil {
				return nil, fmt.Errorf("storing %s: %w", sessionKeyName, err)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", sessionKeyName, err)
	}
	return tokens.NewSealer(secret)
}

// storageLike is the part of certmagic.Storage the session key needs.
type storageLike interface {
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
}
