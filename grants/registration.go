package grants

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// RegisterPath is the dynamic client registration endpoint (RFC 7591
// §3) and, with ?client_id=, each registered client's configuration
// endpoint (RFC 7592 §2).
const RegisterPath = "/oauth/register"

// RegistrationConfig turns on dynamic client registration (RFC 7591)
// and its management protocol (RFC 7592). A nil *RegistrationConfig, the
// default, leaves the registration endpoint unanswered (404) and
// unadvertised.
type RegistrationConfig struct {
	// InitialAccessToken, when set, is the bearer token a registration
	// request must carry (RFC 7591 §3); without it registration is open
	// to anyone who can reach the endpoint. Default: none (open).
	InitialAccessToken string
	// Rate is how many registrations one client address may make per
	// minute; the next ones get 429 with Retry-After. Default 10.
	Rate int
	// MaxBody is the largest registration request body in bytes; a larger
	// one gets 413. Default 16384.
	MaxBody int64
	// MaxClients is how many registered clients may exist at once; past
	// it registration answers 400 invalid_client_metadata saying the
	// server is full. Default 1000.
	MaxClients int
	// UnusedClientTTL removes a registered client that obtained no token
	// in this long after registering (an abandoned registration, or a
	// flood of them). Default 24h.
	UnusedClientTTL time.Duration
	// Scopes are the scopes a registered client may ask for (its scope
	// member must be a subset); a registration without scope gets them
	// all. Default: openid profile email offline_access.
	Scopes []string
	// Audience is the resources registered clients' tokens may be for
	// (RFC 8707 resource values). Default: the issuer.
	Audience []string
	// GrantTypes are the grant types a registered client may list, among
	// authorization_code, refresh_token and client_credentials. Default:
	// authorization_code and refresh_token, so that every token a
	// registered client gets is one a user allowed: client_credentials
	// would let anyone who can register mint tokens with no user.
	GrantTypes []string
}

// Registration defaults.
const (
	DefaultRegistrationRate       = 10
	DefaultRegistrationMaxBody    = 16 << 10
	DefaultRegistrationMaxClients = 1000
	DefaultUnusedClientTTL        = 24 * time.Hour
)

// DefaultRegistrationScopes are the scopes registered clients may ask for
// unless RegistrationConfig.Scopes says otherwise.
var DefaultRegistrationScopes = []string{"openid", "profile", "email", "offline_access"}

// registrar is the engine's registration state: its settings with
// defaults filled in and the per-address rate limit.
type registrar struct {
	cfg  RegistrationConfig
	rate *throttle
}

func newRegistrar(cfg *RegistrationConfig) (*registrar, error) {
	if cfg == nil {
		return nil, nil
	}
	c := *cfg
	switch {
	case c.Rate < 0 || c.MaxBody < 0 || c.MaxClients < 0 || c.UnusedClientTTL < 0:
		return nil, errors.New("registration: rate, max_body, max_clients and unused_client_ttl must be positive (or absent for their defaults)")
	case c.InitialAccessToken != "" && len(c.InitialAccessToken) < 16:
		return nil, errors.New("registration: initial_access_token must be at least 16 characters (use a long random value)")
	}
	if c.Rate == 0 {
		c.Rate = DefaultRegistrationRate
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultRegistrationMaxBody
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultRegistrationMaxClients
	}
	if c.UnusedClientTTL == 0 {
		c.UnusedClientTTL = DefaultUnusedClientTTL
	}
	if c.Scopes == nil {
		c.Scopes = DefaultRegistrationScopes
	}
	if c.GrantTypes == nil {
		c.GrantTypes = DefaultRegistrationGrants
	}
	for _, gt := range c.GrantTypes {
		if !slices.Contains(registrableGrants, gt) {
			return nil, fmt.Errorf("registration: grant type %q cannot be offered to registered clients (use %s)", gt, strings.Join(registrableGrants, ", "))
		}
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return nil, fmt.Errorf("registration: scope %q has characters RFC 6749 §3.3 does not allow", s)
		}
	}
	for _, a := range c.Audience {
		if u, err := url.Parse(a); err != nil || !u.IsAbs() || u.Fragment != "" {
			return nil, fmt.Errorf("registration: audience %q must be an absolute URI without fragment (RFC 8707)", a)
		}
	}
	return &registrar{cfg: c, rate: newThrottle(ThrottleConfig{MaxFailures: c.Rate, Window: time.Minute, BaseLock: time.Minute})}, nil
}

// registrationIDPrefix starts every server-chosen client id, so a
// registered client is told apart from the operator's at a glance.
const registrationIDPrefix = "reg_"

// Registration error codes (RFC 7591 §3.2.2).
const (
	CodeInvalidRedirectURI    = "invalid_redirect_uri"
	CodeInvalidClientMetadata = "invalid_client_metadata"
)

func errMetadata(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidClientMetadata, Status: http.StatusBadRequest, Description: fmt.Sprintf(format, args...)}
}

// clientMetadata is the RFC 7591 §2 metadata we accept and echo. Members
// not listed here are dropped: neither stored nor echoed (DCR-04).
type clientMetadata struct {
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types"`
	ClientName              string          `json:"client_name,omitempty"`
	ClientURI               string          `json:"client_uri,omitempty"`
	LogoURI                 string          `json:"logo_uri,omitempty"`
	PolicyURI               string          `json:"policy_uri,omitempty"`
	Scope                   string          `json:"scope,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	ApplicationType         string          `json:"application_type,omitempty"`
	DPoPBoundAccessTokens   bool            `json:"dpop_bound_access_tokens,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	// ClientID is read from client ID metadata documents only (cimd.go);
	// registration ignores it.
	ClientID string `json:"-"`
}

// registrationResponse is the RFC 7591 §3.2.1 / RFC 7592 §3 answer.
type registrationResponse struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	clientMetadata
}

// registrableGrants are the grant types registration may offer, and
// DefaultRegistrationGrants those it offers unless configured.
var (
	registrableGrants         = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	DefaultRegistrationGrants = []string{GrantAuthorizationCode, GrantRefreshToken}
)

// registeredAuthMethods are the token_endpoint_auth_method values a
// registered client may choose.
var registeredAuthMethods = []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthNone}

// parseClientMetadata reads and checks a registration body. Each known
// member must have its JSON type; unknown members are ignored. document
// says the body is a client ID metadata document, whose client_id and
// jwks_uri are read.
func (g *registrar) parseClientMetadata(body []byte, document bool) (*clientMetadata, *Error) {
	var raw map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&raw); err != nil || raw == nil {
		return nil, errMetadata("the body must be a JSON object of client metadata (RFC 7591 §2)")
	}
	if d.More() {
		return nil, errMetadata("the body must be one JSON object")
	}
	if name := duplicateMember(body); name != "" {
		return nil, errMetadata("%s is given twice; give each member once", name)
	}
	var m clientMetadata
	for name, dst := range map[string]any{
		"redirect_uris": &m.RedirectURIs, "token_endpoint_auth_method": &m.TokenEndpointAuthMethod,
		"grant_types": &m.GrantTypes, "response_types": &m.ResponseTypes, "client_name": &m.ClientName,
		"client_uri": &m.ClientURI, "logo_uri": &m.LogoURI, "policy_uri": &m.PolicyURI, "scope": &m.Scope,
		"application_type": &m.ApplicationType, "dpop_bound_access_tokens": &m.DPoPBoundAccessTokens,
	} {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			if name == "redirect_uris" {
				return nil, &Error{Code: CodeInvalidRedirectURI, Status: http.StatusBadRequest, Description: "redirect_uris must be an array of strings"}
			}
			return nil, errMetadata("%s has the wrong JSON type (RFC 7591 §2)", name)
		}
	}
	if v, ok := raw["jwks"]; ok && string(v) != "null" {
		if len(v) == 0 || v[0] != '{' {
			return nil, errMetadata("jwks must be a JSON Web Key Set object")
		}
		m.JWKS = v
	}
	if v, ok := raw["jwks_uri"]; ok && string(v) != "null" {
		if m.JWKS != nil {
			return nil, errMetadata("jwks and jwks_uri cannot both be given (RFC 7591 §2)")
		}
		if json.Unmarshal(v, &m.JWKSURI) != nil {
			return nil, errMetadata("jwks_uri has the wrong JSON type (RFC 7591 §2)")
		}
		if u, err := url.Parse(m.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
			return nil, errMetadata("jwks_uri must be an absolute https URL without userinfo or fragment")
		} else if why := unreachableKeyHost(u); why != "" {
			return nil, errMetadata("jwks_uri names %s; keys are fetched from public hosts only", why)
		}
	}
	if document && (json.Unmarshal(raw["client_id"], &m.ClientID) != nil || m.ClientID == "") {
		return nil, errMetadata("client_id is required, a string")
	}
	return &m, nil
}

// client turns checked metadata into a client: defaults filled in
// (RFC 7591 §2), every rule of Validate and of registration applied.
func (g *registrar) client(m *clientMetadata, id string) (*Client, *Error) {
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = AuthSecretBasic
	}
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{GrantAuthorizationCode}
	}
	code := slices.Contains(m.GrantTypes, GrantAuthorizationCode)
	if len(m.ResponseTypes) == 0 && code {
		m.ResponseTypes = []string{"code"}
	}
	if m.ResponseTypes == nil {
		m.ResponseTypes = []string{}
	}
	switch {
	case !slices.Contains(registeredAuthMethods, m.TokenEndpointAuthMethod):
		return nil, errMetadata("token_endpoint_auth_method %q is not supported here (use %s)", m.TokenEndpointAuthMethod, strings.Join(registeredAuthMethods, ", "))
	case m.ApplicationType != "" && m.ApplicationType != "web" && m.ApplicationType != "native":
		return nil, errMetadata("application_type must be web or native")
	case m.TokenEndpointAuthMethod == AuthPrivateKeyJWT && m.JWKS == nil && m.JWKSURI == "":
		return nil, errMetadata("private_key_jwt needs the client's public keys: jwks or jwks_uri")
	case m.TokenEndpointAuthMethod != AuthPrivateKeyJWT && (m.JWKS != nil || m.JWKSURI != ""):
		return nil, errMetadata("jwks and jwks_uri are only used with token_endpoint_auth_method private_key_jwt")
	case m.TokenEndpointAuthMethod == AuthNone && slices.Contains(m.GrantTypes, GrantClientCredentials):
		return nil, errMetadata("a public client (token_endpoint_auth_method none) cannot use client_credentials")
	case slices.ContainsFunc(m.ResponseTypes, func(s string) bool { return s != "code" }):
		return nil, errMetadata("only response_types [\"code\"] is supported")
	case code != (len(m.ResponseTypes) > 0):
		return nil, errMetadata("response_types code and grant_types authorization_code go together (RFC 7591 §2.1)")
	case slices.Contains(m.GrantTypes, GrantRefreshToken) && !code:
		return nil, errMetadata("refresh_token needs authorization_code")
	}
	for _, gt := range m.GrantTypes {
		if !slices.Contains(g.cfg.GrantTypes, gt) {
			return nil, errMetadata("grant type %q is not available to registered clients (use %s)", gt, strings.Join(g.cfg.GrantTypes, ", "))
		}
	}
	if code && len(m.RedirectURIs) == 0 {
		return nil, &Error{Code: CodeInvalidRedirectURI, Status: http.StatusBadRequest, Description: "redirect_uris is required for authorization_code"}
	}
	uris, oerr := checkRegisteredRedirectURIs(m.RedirectURIs)
	if oerr != nil {
		return nil, oerr
	}
	if m.RedirectURIs != nil {
		m.RedirectURIs = uris
	}
	scopes := slices.Clone(g.cfg.Scopes)
	if m.Scope != "" {
		scopes = strings.Fields(m.Scope)
		for _, s := range scopes {
			if !slices.Contains(g.cfg.Scopes, s) {
				return nil, errMetadata("scope %q is not available to registered clients (available: %s)", s, strings.Join(g.cfg.Scopes, " "))
			}
		}
	}
	m.Scope = strings.Join(scopes, " ")
	// application_type only picks which redirect URIs make sense; it is
	// not kept, so it is not echoed either (a later read could not).
	m.ApplicationType = ""
	c := &Client{ClientSpec: ClientSpec{
		ID: id, Name: m.ClientName, LogoURI: m.LogoURI, ClientURI: m.ClientURI, PolicyURI: m.PolicyURI,
		AuthMethod: m.TokenEndpointAuthMethod, GrantTypes: slices.Clone(m.GrantTypes), Scopes: scopes,
		Audience: slices.Clone(g.cfg.Audience), RedirectURIs: slices.Clone(m.RedirectURIs),
		DPoPBoundAccessTokens: m.DPoPBoundAccessTokens,
	}, Registered: true}
	if m.JWKS != nil {
		keys, err := ParseJWKS(m.JWKS)
		if err != nil {
			return nil, errMetadata("jwks: %v", err)
		}
		c.Keys = keys
	}
	if m.JWKSURI != "" {
		c.Keys = clientJWKS(m.JWKSURI)
	}
	// Validate's rules, with secrets checked by addClient; a placeholder
	// hash stands for the secret it will make, a placeholder id for a
	// metadata document's URL (ids of config clients have no ':').
	probe := *c
	probe.ID = "registered-client"
	if c.AuthMethod == AuthSecretBasic || c.AuthMethod == AuthSecretPost {
		probe.SecretHash = HashSecret("placeholder")
	}
	if err := probe.Validate(); err != nil {
		return nil, errMetadata("%s", strings.TrimPrefix(err.Error(), fmt.Sprintf("client %q: ", probe.ID)))
	}
	return c, nil
}

// serveRegister is the registration endpoint (RFC 7591 §3) and the
// client configuration endpoint (RFC 7592 §2, with ?client_id=).
func (e *Engine) serveRegister(w http.ResponseWriter, r *http.Request) {
	g := e.registrar
	if g == nil {
		serveNoEndpoint(w, r)
		return
	}
	if e.cors(w, r, corsRegistration, "POST, GET, PUT, DELETE") {
		return
	}
	oerr := e.register(w, r)
	if oerr != nil {
		e.refused(r.Context(), "register", "registration refused", oerr)
		WriteError(w, oerr)
	}
}

func (e *Engine) register(w http.ResponseWriter, r *http.Request) *Error {
	if err := e.requireTLS(r); err != nil {
		DiscardBody(r)
		return err
	}
	if id := r.URL.Query().Get("client_id"); r.URL.RawQuery != "" {
		return e.manageClient(w, r, id)
	}
	if r.Method != http.MethodPost {
		DiscardBody(r)
		return &Error{Code: CodeInvalidRequest, Status: http.StatusMethodNotAllowed, Allow: http.MethodPost,
			Description: "register a client with POST (RFC 7591 §3.1)"}
	}
	g := e.registrar
	now := time.Now()
	ip := clientIPOf(r.Context())
	if ip == "" {
		ip = ClientIP(r)
	}
	if until := g.rate.lockedUntil(now, ip); !until.IsZero() {
		DiscardBody(r)
		return &Error{Code: "too_many_requests", Status: http.StatusTooManyRequests, RetryAfter: max(1, int(until.Sub(now).Round(time.Second)/time.Second)),
			Description: "too many registrations from this address; try again later"}
	}
	if tok := g.cfg.InitialAccessToken; tok != "" {
		got, ok := bearerOf(r)
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			// A refused attempt counts toward the rate like a
			// registration, so the token cannot be guessed without limit.
			g.rate.failLimit(now, g.cfg.Rate, ip)
			DiscardBody(r)
			return &Error{Code: "invalid_token", Status: http.StatusUnauthorized, Challenge: `Bearer error="invalid_token"`,
				Description: "registration needs the initial access token as a Bearer token"}
		}
	}
	body, oerr := g.readBody(w, r)
	if oerr != nil {
		return oerr
	}
	g.rate.failLimit(now, g.cfg.Rate, ip)
	m, oerr := g.parseClientMetadata(body, false)
	if oerr != nil {
		return oerr
	}
	c, oerr := g.client(m, registrationIDPrefix+tokens.RandomID(16))
	if oerr != nil {
		return oerr
	}
	regToken := newSecretToken()
	secret, err := e.addClient(r.Context(), c, &registration{tokenHash: hashHex(regToken), maxClients: g.cfg.MaxClients, jwks: m.JWKS,
		jwksURI: m.JWKSURI, expires: now.Add(g.cfg.UnusedClientTTL)})
	switch {
	case errors.Is(err, errRegistryFull):
		return errMetadata("the server holds as many registered clients as it allows (%d); try again later or ask its operator", g.cfg.MaxClients)
	case err != nil:
		return errUnavailable.withCause(err)
	}
	resp := e.registrationResponse(c, m, now)
	resp.ClientSecret, resp.RegistrationAccessToken = secret, regToken
	w.Header().Set("Location", resp.RegistrationClientURI)
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// readBody reads a JSON body of at most MaxBody bytes.
func (g *registrar) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		DiscardBody(r)
		return nil, errMetadata("the body must be JSON with Content-Type: application/json")
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.cfg.MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, &Error{Code: CodeInvalidRequest, Status: http.StatusRequestEntityTooLarge,
			Description: fmt.Sprintf("the registration body is larger than %d bytes", g.cfg.MaxBody)}
	case err != nil:
		return nil, errMetadata("the body could not be read")
	}
	return buf.Bytes(), nil
}

// registrationResponse echoes a client's registered metadata.
func (e *Engine) registrationResponse(c *Client, m *clientMetadata, issued time.Time) *registrationResponse {
	resp := &registrationResponse{ClientID: c.ID, ClientIDIssuedAt: issued.Unix(), clientMetadata: *m,
		RegistrationClientURI: e.issuer + RegisterPath + "?client_id=" + url.QueryEscape(c.ID)}
	if c.AuthMethod == AuthSecretBasic || c.AuthMethod == AuthSecretPost {
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	return resp
}

// metadataOf rebuilds the echoed metadata of a stored client.
func metadataOf(sc *storedClient) *clientMetadata {
	m := &clientMetadata{RedirectURIs: sc.RedirectURIs, TokenEndpointAuthMethod: sc.AuthMethod, GrantTypes: sc.GrantTypes,
		ResponseTypes: []string{}, ClientName: sc.Name, ClientURI: sc.ClientURI, LogoURI: sc.LogoURI, PolicyURI: sc.PolicyURI,
		Scope: strings.Join(sc.Scopes, " "), JWKS: sc.JWKS, JWKSURI: sc.JWKSURI, DPoPBoundAccessTokens: sc.DPoPBoundAccessTokens}
	if slices.Contains(sc.GrantTypes, GrantAuthorizationCode) {
		m.ResponseTypes = []string{"code"}
	}
	return m
}

// bearerOf is the Bearer token of the Authorization header, its scheme
// matched case-insensitively (RFC 7235 §2.1).
func bearerOf(r *http.Request) (string, bool) {
	tok, status, _ := tokens.BearerToken(r)
	return tok, status == 0
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// manageClient is the client configuration endpoint (RFC 7592): GET
// reads, PUT replaces, DELETE removes a registered client, each with the
// registration access token it was given. An unknown client and a wrong
// token look alike (401), so the endpoint tells nobody which ids exist.
func (e *Engine) manageClient(w http.ResponseWriter, r *http.Request, id string) *Error {
	ctx := r.Context()
	denied := &Error{Code: "invalid_token", Status: http.StatusUnauthorized, Challenge: `Bearer error="invalid_token"`,
		Description: "the registration access token is missing, wrong, or the client is gone"}
	if r.Method != http.MethodGet && r.Method != http.MethodPut && r.Method != http.MethodDelete {
		DiscardBody(r)
		return &Error{Code: CodeInvalidRequest, Status: http.StatusMethodNotAllowed, Allow: "GET, PUT, DELETE",
			Description: "the client configuration endpoint takes GET, PUT and DELETE (RFC 7592 §2)"}
	}
	tok, ok := bearerOf(r)
	if !ok || tok == "" || len(r.URL.Query()["client_id"]) != 1 {
		DiscardBody(r)
		return denied
	}
	sc, rec, err := e.registeredClient(ctx, id)
	if err != nil {
		DiscardBody(r)
		return errUnavailable.withCause(err)
	}
	if sc == nil || sc.RegTokenHash == "" || subtle.ConstantTimeCompare([]byte(hashHex(tok)), []byte(sc.RegTokenHash)) != 1 {
		DiscardBody(r)
		return denied
	}
	switch r.Method {
	case http.MethodGet:
		// What the client may use now, as the token endpoint sees it.
		c := e.registrar.current(&Client{ClientSpec: sc.ClientSpec, Registered: true})
		now := *sc
		now.GrantTypes, now.Scopes = c.GrantTypes, c.Scopes
		writeJSON(w, http.StatusOK, e.registrationResponse(c, metadataOf(&now), sc.Created))
		return nil
	case http.MethodDelete:
		if err := e.RemoveClient(ctx, id); err != nil && !errors.Is(err, ErrClientNotFound) {
			return errUnavailable.withCause(err)
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	body, oerr := e.registrar.readBody(w, r)
	if oerr != nil {
		return oerr
	}
	var ids struct {
		ClientID     any `json:"client_id"`
		ClientSecret any `json:"client_secret"`
	}
	_ = json.Unmarshal(body, &ids)
	if ids.ClientID != id {
		return errMetadata("client_id in the body must be the client's id (RFC 7592 §2.2)")
	}
	// A client_secret in the body must be the current one (RFC 7592
	// §2.2); the server never takes a new one from the client.
	if ids.ClientSecret != nil {
		s, ok := ids.ClientSecret.(string)
		if !ok || sc.SecretHash == "" || subtle.ConstantTimeCompare([]byte(hashHex(s)), []byte(sc.SecretHash)) != 1 {
			return errMetadata("client_secret in the body must be the client's current secret, or absent")
		}
	}
	m, oerr := e.registrar.parseClientMetadata(body, false)
	if oerr != nil {
		return oerr
	}
	c, oerr := e.registrar.client(m, id)
	if oerr != nil {
		return oerr
	}
	secret, err := e.updateRegisteredClient(ctx, sc, rec, c, m)
	if err != nil {
		return errUnavailable.withCause(err)
	}
	resp := e.registrationResponse(c, m, sc.Created)
	resp.ClientSecret = secret
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// registeredClient reads a dynamically registered client at rest; nil
// when there is none of that id (or it is not a registered one).
func (e *Engine) registeredClient(ctx context.Context, id string) (*storedClient, storage.Record, error) {
	var sc *storedClient
	var rec storage.Record
	if id == "" || e.store == nil {
		return nil, rec, nil
	}
	err := e.store.View(ctx, func(tx storage.Tx) error {
		var err error
		rec, err = tx.Get(storage.KindClients, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var v storedClient
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			return err
		}
		if v.Registered {
			sc = &v
		}
		rec.Value = nil
		return nil
	})
	return sc, rec, err
}

// updateRegisteredClient replaces a registered client's metadata (RFC
// 7592 §2.2), keeping its id, registration token, secret (when it still
// authenticates with one) and expiry. A client that newly needs a secret
// gets one, returned once.
func (e *Engine) updateRegisteredClient(ctx context.Context, old *storedClient, rec storage.Record, c *Client, m *clientMetadata) (secret string, err error) {
	sc := storedClient{ClientSpec: c.ClientSpec, Created: old.Created, Registered: true, RegTokenHash: old.RegTokenHash, JWKS: m.JWKS,
		JWKSURI: m.JWKSURI, Used: old.Used}
	if c.AuthMethod == AuthSecretBasic || c.AuthMethod == AuthSecretPost {
		sc.SecretHash = old.SecretHash
		if sc.SecretHash == "" {
			secret = newSecretToken()
			h := HashSecret(secret)
			sc.SecretHash = hex.EncodeToString(h[:])
		}
	}
	err = e.store.Update(ctx, func(tx storage.Tx) error {
		cur, err := tx.Get(storage.KindClients, c.ID)
		if err != nil {
			return err
		}
		return putJSON(tx, storage.KindClients, c.ID, &sc, cur.Expires)
	})
	if err != nil {
		return "", err
	}
	e.corsOrigins.forget()
	e.auditLine(ctx, zapcore.InfoLevel, auditClientUpdated, zap.String("client_id", c.ID), zap.Strings("fields", specFields(&c.ClientSpec)))
	return secret, nil
}

// markClientUsed keeps a registered client that obtained a token: its
// record loses the expiry that removes clients never used. Only the
// first token writes.
func (e *Engine) markClientUsed(ctx context.Context, c *Client) {
	if !c.Registered || c.registeredUsed || e.store == nil {
		return
	}
	err := e.store.Update(ctx, func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindClients, c.ID)
		if err != nil {
			return err
		}
		var sc storedClient
		if err := json.Unmarshal(rec.Value, &sc); err != nil || sc.Used {
			return err
		}
		sc.Used = true
		return putJSON(tx, storage.KindClients, c.ID, &sc, time.Time{})
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		e.logFailure(ctx, "token", CodeTemporarilyUnavailable, err)
	}
}

// exampleClients stand for the clients registration may create, for the
// metadata: their grant types, scopes and authentication methods. The
// private_key_jwt one has an empty key set, whose algorithms the
// metadata lists as those of any jwks_uri would be.
func (g *registrar) exampleClients() []*Client {
	if g == nil {
		return nil
	}
	var out []*Client
	for _, method := range registeredAuthMethods {
		c := &Client{ClientSpec: ClientSpec{AuthMethod: method, GrantTypes: g.cfg.GrantTypes, Scopes: g.cfg.Scopes}, Registered: true}
		if method == AuthNone {
			c.GrantTypes = slices.DeleteFunc(slices.Clone(g.cfg.GrantTypes), func(gt string) bool { return gt == GrantClientCredentials })
		}
		if method == AuthPrivateKeyJWT {
			c.Keys = &JWKS{uri: "https://registered.invalid/"}
		}
		out = append(out, c)
	}
	return out
}

// current is a registered client as the registration settings in force
// now allow it: its grant types, scopes and audience narrowed to what
// registration offers today (with registration off, its defaults and no
// audience but the issuer). A client keeps only what it registered, and
// loses what the operator has stopped offering since, such as
// client_credentials. c is shared (the client cache): a narrowed client
// is a copy.
func (g *registrar) current(c *Client) *Client {
	grantTypes, scopes, audience := DefaultRegistrationGrants, DefaultRegistrationScopes, []string(nil)
	if g != nil {
		grantTypes, scopes, audience = g.cfg.GrantTypes, g.cfg.Scopes, g.cfg.Audience
	}
	keep := func(have, allowed []string) []string {
		return slices.DeleteFunc(slices.Clone(have), func(v string) bool { return !slices.Contains(allowed, v) })
	}
	n := *c
	n.GrantTypes = keep(c.GrantTypes, grantTypes)
	n.Scopes = keep(c.Scopes, scopes)
	n.Audience = keep(c.Audience, audience)
	return &n
}
