package grants

import (
	"net/http"
	"slices"
	"strings"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Introspection is the RFC 7662 §2.2 answer. An inactive token is
// exactly {"active":false}.
type Introspection struct {
	Active    bool            `json:"active"`
	Scope     string          `json:"scope,omitempty"`
	ClientID  string          `json:"client_id,omitempty"`
	Username  string          `json:"username,omitempty"`
	TokenType string          `json:"token_type,omitempty"`
	ExpiresAt int64           `json:"exp,omitempty"`
	IssuedAt  int64           `json:"iat,omitempty"`
	NotBefore int64           `json:"nbf,omitempty"`
	Subject   string          `json:"sub,omitempty"`
	Audience  tokens.Audience `json:"aud,omitempty"`
	Issuer    string          `json:"iss,omitempty"`
	ID        string          `json:"jti,omitempty"`
	// ExtIss and ExtSub are the external identity provider's issuer and
	// subject of a token obtained with its assertion.
	ExtIss string `json:"ext_iss,omitempty"`
	ExtSub string `json:"ext_sub,omitempty"`
	// Groups are the user's groups of an access token granted the groups
	// scope (as in the token itself).
	Groups []string `json:"groups,omitempty"`
	// Cnf is the confirmation of a sender-constrained token (RFC 8705
	// §3.2, RFC 9449 §6.2).
	Cnf *tokens.Cnf `json:"cnf,omitempty"`
}

// serveIntrospect is the RFC 7662 introspection endpoint. Only
// confidential clients may call it. A client sees the tokens issued to it;
// a resource-server client (Client.ResourceServer) sees instead the access
// tokens whose audience includes one of its audience values, and nothing
// else (RFC 7662 §4). Everything else is {"active":false}.
func (e *Engine) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	answerJSON(e, w, r, "introspect", "introspection refused", e.introspect)
}

var inactive = &Introspection{}

func (e *Engine) introspect(w http.ResponseWriter, r *http.Request) (*Introspection, *Error) {
	c, form, oerr := e.clientRequest(w, r)
	if oerr != nil {
		return nil, oerr
	}
	if c.AuthMethod == AuthNone {
		return nil, &Error{Code: CodeInvalidClient, Status: http.StatusUnauthorized,
			Description: "introspection needs an authenticated confidential client"}
	}
	f, err := e.lookupToken(r.Context(), form.Get("token"), form.Get("token_type_hint"))
	if err != nil {
		return nil, storageError(err)
	}
	if f == nil || !c.mayIntrospect(f) {
		return inactive, nil
	}
	if a := f.access; a != nil {
		tokenType := "Bearer"
		if a.Cnf != nil && a.Cnf.JKT != "" {
			tokenType = "DPoP"
		}
		return &Introspection{Active: true, Scope: a.Scope, ClientID: a.ClientID, Username: username(a.Subject, a.ClientID),
			TokenType: tokenType, Cnf: a.Cnf, ExpiresAt: a.ExpiresAt, IssuedAt: a.IssuedAt, NotBefore: a.NotBefore,
			Subject: a.Subject, Audience: a.Audience, Issuer: a.Issuer, ID: a.ID, ExtIss: a.ExtIss, ExtSub: a.ExtSub, Groups: a.Groups}, nil
	}
	fam := f.family
	return &Introspection{Active: true, Scope: strings.Join(fam.Scope, " "), ClientID: fam.ClientID,
		Username: username(fam.Subject, fam.ClientID), TokenType: HintRefreshToken,
		ExpiresAt: f.expires.Unix(), Subject: fam.Subject, Issuer: e.issuer}, nil
}

// mayIntrospect applies the visibility rule of serveIntrospect.
func (c *Client) mayIntrospect(f *foundToken) bool {
	if !c.ResourceServer {
		return f.clientID() == c.ID
	}
	return f.access != nil && slices.ContainsFunc(c.Audience, f.access.Audience.Contains)
}

// username is the user a token acts for: none when the client acts on
// its own behalf.
func username(sub, clientID string) string {
	if sub == clientID {
		return ""
	}
	return sub
}
