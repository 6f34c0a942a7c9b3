package grants

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"strings"
	"time"
	"unicode"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// IDClaims are the claims of an OpenID Connect ID token (OIDC Core §2).
type IDClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	AuthTime  int64  `json:"auth_time,omitempty"`
	Nonce     string `json:"nonce,omitempty"`
	AZP       string `json:"azp"`
	ATHash    string `json:"at_hash,omitempty"`
	// Grant is the id of the grant the token was issued from, so that a
	// token exchanged from it is revoked with the grant.
	Grant string `json:"gid,omitempty"`
	// Profile and email claims, as the granted scopes allow.
	Name              string `json:"name,omitempty"`
	GivenName         string `json:"given_name,omitempty"`
	FamilyName        string `json:"family_name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"`
	// Groups are the user's groups (the groups scope), for a gate's
	// allow_groups.
	Groups []string `json:"groups,omitempty"`
}

// ScopeGroups releases the user's groups claim, as a JSON array of
// strings, in ID tokens and at the userinfo endpoint. The user's claim is
// one string listing the groups separated by commas or spaces
// (`claim groups "admins, ops"`). It is no OIDC standard scope, but the
// one Keycloak, Dex and others use.
const ScopeGroups = "groups"

// splitGroups reads the groups claim of a user: names separated by
// commas or white space.
func splitGroups(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// scopeClaims maps OIDC scopes to the user claims they release (OIDC Core
// §5.4).
var scopeClaims = map[string][]string{
	"profile": {"name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email":     {"email", "email_verified"},
	"phone":     {"phone_number", "phone_number_verified"},
	"address":   {"address"},
	ScopeGroups: {"groups"},
}

// userClaims returns the user's claims that the scopes release.
func userClaims(u *User, scopes []string) map[string]any {
	out := map[string]any{}
	for _, s := range scopes {
		for _, name := range scopeClaims[s] {
			v, ok := u.Claims[name]
			if !ok {
				if name == "preferred_username" {
					out[name] = u.Name
				}
				continue
			}
			if name == "groups" {
				if g := splitGroups(v); len(g) > 0 {
					out[name] = g
				}
				continue
			}
			if name == "email_verified" || name == "phone_number_verified" {
				out[name] = v == "true"
				continue
			}
			out[name] = v
		}
	}
	return out
}

// atHash is the OIDC at_hash of an access token for the key's algorithm:
// the left half of the hash, base64url.
func atHash(k *tokens.Key, accessToken string) string {
	var h hash.Hash
	if k.Alg.String() == "EdDSA" {
		h = sha512.New()
	} else {
		h = sha256.New()
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// newIDClaims fills an ID token for a user signed in at authTime.
func newIDClaims(issuer string, u *User, clientID, nonce string, scopes []string, authTime, now time.Time, ttl time.Duration) *IDClaims {
	c := &IDClaims{
		Issuer:    issuer,
		Subject:   u.Subject(),
		Audience:  clientID,
		AZP:       clientID,
		IssuedAt:  now.Unix(),
		ExpiresAt: now.Add(ttl).Unix(),
		AuthTime:  authTime.Unix(),
		Nonce:     nonce,
	}
	claims := userClaims(u, scopes)
	str := func(name string) string { s, _ := claims[name].(string); return s }
	c.Name, c.GivenName, c.FamilyName = str("name"), str("given_name"), str("family_name")
	c.PreferredUsername, c.Email = str("preferred_username"), str("email")
	c.Groups, _ = claims["groups"].([]string)
	if v, ok := claims["email_verified"].(bool); ok {
		c.EmailVerified = &v
	}
	return c
}
