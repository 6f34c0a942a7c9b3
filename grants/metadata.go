package grants

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Metadata is the RFC 8414 authorization server metadata, which OIDC
// Discovery extends. It lists only what this server actually does.
type Metadata struct {
	Issuer                                 string   `json:"issuer"`
	AuthorizationEndpoint                  string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	JWKSURI                                string   `json:"jwks_uri"`
	UserinfoEndpoint                       string   `json:"userinfo_endpoint"`
	EndSessionEndpoint                     string   `json:"end_session_endpoint"`
	ScopesSupported                        []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	ResponseModesSupported                 []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgsSupported  []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported,omitempty"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationAuthSigningAlgsSupported     []string `json:"revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
	IntrospectionEndpoint                  string   `json:"introspection_endpoint"`
	IntrospectionAuthMethodsSupported      []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionAuthSigningAlgsSupported  []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	AuthorizationResponseISSParamSupported bool     `json:"authorization_response_iss_parameter_supported,omitempty"`
	PromptValuesSupported                  []string `json:"prompt_values_supported,omitempty"`
	SubjectTypesSupported                  []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported       []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                        []string `json:"claims_supported"`
	// DPoPSigningAlgValuesSupported are the DPoP proof algorithms the
	// token endpoint accepts (RFC 9449 §5.1).
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
	// PushedAuthorizationRequestEndpoint is the PAR endpoint (RFC 9126
	// §5), listed with the authorization endpoint.
	PushedAuthorizationRequestEndpoint string `json:"pushed_authorization_request_endpoint,omitempty"`
	// RequirePushedAuthorizationRequests says every client must push its
	// authorization requests (RFC 9126 §5).
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`
	// TLSClientCertBoundAccessTokens: a token request over a connection
	// with a client certificate always gets a bound token (RFC 8705 §3.3).
	TLSClientCertBoundAccessTokens bool `json:"tls_client_certificate_bound_access_tokens"`
	// RegistrationEndpoint is where clients register themselves (RFC
	// 7591), when registration is on.
	RegistrationEndpoint string `json:"registration_endpoint,omitempty"`
	// ClientIDMetadataDocumentSupported: an https client_id names the
	// client's metadata document, when that is on.
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported,omitempty"`
	// DeviceAuthorizationEndpoint is listed when some client may use the
	// device grant (RFC 8628 §4).
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint,omitempty"`
}

// metadata builds the document. Both documents carry the same members: the
// OIDC ones are registered for RFC 8414 too. Endpoint URLs are built on the
// issuer as written: Paths() holds the decoded path a router matches on,
// which differs from the issuer's spelling when the issuer path is
// percent-encoded.
func (e *Engine) metadata(ctx context.Context) (*Metadata, error) { return e.metadataDoc(ctx, false) }

// metadataDoc builds the RFC 8414 document, or with oidc the OpenID
// Provider configuration, which differs in one rule: OIDC Discovery §3
// makes authorization_endpoint REQUIRED of every OpenID provider, so it
// (and the code flow it serves) is always listed there, while RFC 8414
// lists it only when some client can use it.
func (e *Engine) metadataDoc(ctx context.Context, oidc bool) (*Metadata, error) {
	clients, err := e.allClients(ctx)
	if err != nil {
		return nil, err
	}
	// The gates' sign-in clients add their grant types and scopes; their
	// authentication method is in-process only and is not listed.
	if m := e.loginClients.Load(); m != nil {
		clients = append(clients, slices.Collect(maps.Values(*m))...)
	}
	// With registration on, what a registered client may be is listed
	// as if such clients existed.
	clients = append(clients, e.registrar.exampleClients()...)
	if e.cimd != nil {
		// Public clients only: none, or private_key_jwt.
		for _, c := range e.cimd.rules.exampleClients() {
			if c.AuthMethod == AuthNone || c.AuthMethod == AuthPrivateKeyJWT {
				clients = append(clients, c)
			}
		}
	}
	m := &Metadata{
		Issuer:                            e.issuer,
		TokenEndpoint:                     e.issuer + TokenPath,
		JWKSURI:                           e.issuer + JWKSPath,
		UserinfoEndpoint:                  e.issuer + UserinfoPath,
		EndSessionEndpoint:                e.issuer + LogoutPath,
		ResponseTypesSupported:            []string{},
		TokenEndpointAuthMethodsSupported: []string{AuthSecretBasic, AuthSecretPost},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  e.idTokenAlgs(),
		ClaimsSupported: []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash",
			"name", "given_name", "family_name", "preferred_username", "email", "email_verified", "groups"},
	}
	// The authorization endpoint and what belongs to it are advertised
	// only when some client can use them (RFC 8414 §2).
	if oidc || slices.ContainsFunc(clients, func(c *Client) bool { return c.Allows(GrantAuthorizationCode) }) {
		m.AuthorizationEndpoint = e.issuer + AuthorizePath
		m.ResponseTypesSupported = []string{"code"}
		m.ResponseModesSupported = []string{"query"}
		m.CodeChallengeMethodsSupported = []string{"S256"}
		m.AuthorizationResponseISSParamSupported = true
		m.PromptValuesSupported = []string{"none", "login", "consent"}
		m.PushedAuthorizationRequestEndpoint = e.issuer + PARPath
		m.RequirePushedAuthorizationRequests = e.par.Require
	}
	// Assertion methods and none are listed when some client uses them;
	// the signing algorithms are those the clients' keys can verify.
	// Only where a certificate can reach us: over TLS we terminate, or
	// in a trusted proxy's header (RFC 8705 §3.3).
	m.TLSClientCertBoundAccessTokens = e.certsReach
	for _, method := range []string{AuthSecretJWT, AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLSClient, AuthNone} {
		if slices.ContainsFunc(clients, func(c *Client) bool { return c.AuthMethod == method }) {
			m.TokenEndpointAuthMethodsSupported = append(m.TokenEndpointAuthMethodsSupported, method)
		}
	}
	m.TokenEndpointAuthSigningAlgsSupported = assertionAlgs(clients)
	for _, c := range clients {
		for _, s := range c.Scopes {
			if !slices.Contains(m.ScopesSupported, s) {
				m.ScopesSupported = append(m.ScopesSupported, s)
			}
		}
		for _, g := range c.GrantTypes {
			if !slices.Contains(m.GrantTypesSupported, g) {
				m.GrantTypesSupported = append(m.GrantTypesSupported, g)
			}
		}
	}
	// Both authenticate clients exactly as the token endpoint does
	// (authenticateClient): revocation takes all its methods (public
	// clients name themselves), introspection all but none.
	m.RevocationEndpoint = e.issuer + RevokePath
	m.RevocationEndpointAuthMethodsSupported = m.TokenEndpointAuthMethodsSupported
	m.RevocationAuthSigningAlgsSupported = m.TokenEndpointAuthSigningAlgsSupported
	m.IntrospectionEndpoint = e.issuer + IntrospectPath
	m.IntrospectionAuthMethodsSupported = slices.DeleteFunc(slices.Clone(m.TokenEndpointAuthMethodsSupported), func(s string) bool { return s == AuthNone })
	m.IntrospectionAuthSigningAlgsSupported = m.TokenEndpointAuthSigningAlgsSupported
	m.DPoPSigningAlgValuesSupported = e.dpop.Algs()
	if e.registrar != nil {
		m.RegistrationEndpoint = e.issuer + RegisterPath
	}
	m.ClientIDMetadataDocumentSupported = e.cimd != nil
	if slices.Contains(m.GrantTypesSupported, GrantDeviceCode) {
		m.DeviceAuthorizationEndpoint = e.issuer + DeviceAuthorizationPath
	}
	slices.Sort(m.ScopesSupported)
	slices.Sort(m.GrantTypesSupported)
	if m.GrantTypesSupported == nil {
		m.GrantTypesSupported = []string{}
	}
	return m, nil
}

// assertionAlgs lists the JWS algorithms client assertions can be
// verified with: for client_secret_jwt, the HMAC algorithms the secret is
// long enough for (secretKeys); for private_key_jwt, the algorithm each
// fixed key is pinned to, and every assertion algorithm for a jwks_uri,
// which may publish any of them. Asymmetric ones first, each list in the
// order of AssertionAlgs and SecretJWTAlgs; nil when no client uses
// assertions.
func assertionAlgs(clients []*Client) []string {
	have := map[string]bool{}
	for _, c := range clients {
		switch c.AuthMethod {
		case AuthSecretJWT:
			for _, alg := range SecretJWTAlgs {
				if c.secretKeys(alg) != nil {
					have[alg] = true
				}
			}
		case AuthPrivateKeyJWT:
			for _, alg := range c.Keys.algs() {
				have[alg] = true
			}
		}
	}
	var out []string
	for _, alg := range append(slices.Clone(AssertionAlgs), SecretJWTAlgs...) {
		if have[alg] {
			out = append(out, alg)
		}
	}
	return out
}

// serveMetadata answers the RFC 8414 and OIDC Discovery documents.
func (e *Engine) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if e.cors(w, r, corsAnyOrigin, "GET, HEAD") || !readOnly(w, r) {
		return
	}
	oidc := r.URL.Path == e.basePath+"/.well-known/openid-configuration"
	last := &e.lastMetadata[0]
	if oidc {
		last = &e.lastMetadata[1]
	}
	m, err := e.metadataDoc(r.Context(), oidc)
	if err != nil {
		e.logFailure(r.Context(), "metadata", CodeTemporarilyUnavailable, err)
		// The document changes only when a run-time client changes:
		// the last one served is a better answer than 503 to a client
		// that starts while storage is away (JWKS needs no storage).
		if m = last.Load(); m == nil {
			WriteError(w, storageError(err))
			return
		}
	} else {
		last.Store(m)
	}
	writePublicJSON(w, m)
}

// serveJWKS publishes the public half of every key that still verifies.
func (e *Engine) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if e.cors(w, r, corsAnyOrigin, "GET, HEAD") || !readOnly(w, r) {
		return
	}
	set := jwk.NewSet()
	for _, k := range e.keyRing().All() {
		pub, err := k.PublicJWK()
		if err != nil {
			WriteError(w, errServer)
			return
		}
		_ = set.AddKey(pub)
	}
	writePublicJSON(w, set)
}

// readOnly allows GET and HEAD and answers 405 otherwise.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	WriteError(w, &Error{Code: CodeInvalidRequest, Description: "this endpoint accepts only GET",
		Status: http.StatusMethodNotAllowed, Allow: "GET, HEAD"})
	return false
}

// writePublicJSON writes a public, briefly cacheable document. Browsers of
// single-page apps read these, so any origin may.
func writePublicJSON(w http.ResponseWriter, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		WriteError(w, errServer)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
}
