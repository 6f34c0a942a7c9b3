package grants

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Metadata is the RFC 8414 authorization server metadata, which OIDC
// Discovery extends. It lists only what this server actually does.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	// OIDC Discovery members (only in openid-configuration).
	SubjectTypesSupported            []string `json:"subject_types_supported,omitempty"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported,omitempty"`
}

// metadata builds the document. oidc adds the OpenID Discovery members.
func (e *Engine) metadata(oidc bool) *Metadata {
	// Endpoint URLs are built on the issuer as written: Paths() holds the
	// decoded path a router matches on, which differs from the issuer's
	// spelling when the issuer path is percent-encoded.
	m := &Metadata{
		Issuer:                            e.Issuer,
		TokenEndpoint:                     e.Issuer + TokenPath,
		JWKSURI:                           e.Issuer + JWKSPath,
		ResponseTypesSupported:            []string{},
		TokenEndpointAuthMethodsSupported: []string{AuthSecretBasic, AuthSecretPost},
	}
	for _, c := range e.Clients {
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
	slices.Sort(m.ScopesSupported)
	slices.Sort(m.GrantTypesSupported)
	if m.GrantTypesSupported == nil {
		m.GrantTypesSupported = []string{}
	}
	if oidc {
		m.SubjectTypesSupported = []string{"public"}
		m.IDTokenSigningAlgValuesSupported = []string{e.keys.Current.Alg.String()}
	}
	return m
}

// ServeMetadata answers the RFC 8414 document, or the OIDC Discovery one
// when oidc is set.
func (e *Engine) ServeMetadata(w http.ResponseWriter, r *http.Request, oidc bool) {
	if !readOnly(w, r) {
		return
	}
	writePublicJSON(w, e.metadata(oidc))
}

// ServeJWKS publishes the public half of every key that still verifies.
func (e *Engine) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if !readOnly(w, r) {
		return
	}
	set := jwk.NewSet()
	for _, k := range e.keys.All() {
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
