package grants

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Codes, refresh tokens and session cookies are 256-bit random strings
// stored only as SHA-256 hashes, so a copy of the database grants nothing.
func newSecretToken() string { return randomID(32) }

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// codeRecord is an authorization code's grant, bound to everything the
// token request must repeat.
type codeRecord struct {
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	RedirectGiven bool     `json:"redirect_given"`
	Challenge     string   `json:"code_challenge,omitempty"`
	Nonce         string   `json:"nonce,omitempty"`
	Scope         []string `json:"scope"`
	Resource      string   `json:"resource,omitempty"`
	Subject       string   `json:"sub"`
	AuthTime      int64    `json:"auth_time"`
	// Used is set by the first redemption; Family names the grant it
	// created, revoked if the code is presented again.
	Used   bool   `json:"used,omitempty"`
	Family string `json:"family,omitempty"`
}

// familyRecord is one grant: every refresh token rotated from one code
// shares it, and reuse of any rotated token revokes it whole.
type familyRecord struct {
	ClientID string   `json:"client_id"`
	Subject  string   `json:"sub"`
	Scope    []string `json:"scope"`
	AuthTime int64    `json:"auth_time"`
	Revoked  bool     `json:"revoked,omitempty"`
}

// refreshRecord is one refresh token of a family.
type refreshRecord struct {
	Family string `json:"family"`
	Used   bool   `json:"used,omitempty"`
	UsedAt int64  `json:"used_at,omitempty"`
	// Next is the hash of the token this one was rotated into.
	Next string `json:"next,omitempty"`
}

func getJSON(tx storage.Tx, kind storage.Kind, key string, v any) (storage.Record, error) {
	rec, err := tx.Get(kind, key)
	if err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(rec.Value, v)
}

func putJSON(tx storage.Tx, kind storage.Kind, key string, v any, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(kind, key, storage.Record{Value: b, Expires: expires})
}

// grantRevocationKey names a whole grant in the revocation set. Access
// tokens carry their grant's id (the gid claim), so revoking a grant
// revokes every access token it issued with one entry, however many
// rotations it went through. The "." keeps it apart from jtis (base64url)
// and from the subject and client entries (beforeKey, with ":").
func grantRevocationKey(family string) string { return "g." + family }

// revokeFamily marks a family revoked in tx and returns the revocation
// entry to make effective once the transaction commits: the grant's id,
// kept until every access token it can have issued has expired.
func (e *Engine) revokeFamily(tx storage.Tx, id string) (map[string]int64, error) {
	var fam familyRecord
	rec, err := getJSON(tx, storage.KindFamilies, id, &fam)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	fam.Revoked = true
	if err := putJSON(tx, storage.KindFamilies, id, &fam, rec.Expires); err != nil {
		return nil, err
	}
	ids := map[string]int64{grantRevocationKey(id): time.Now().Add(e.AccessTokenTTL + e.Verifier.Leeway).Unix()}
	if err := persistRevoked(tx, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// startGrant records a new grant in tx: its family, holding the first
// access token so that revoking the family revokes it, and, when the
// client may refresh, the family's first refresh token. It returns the
// access token's claims and the refresh token ("" when none).
func (e *Engine) startGrant(tx storage.Tx, c *Client, family, subject string, scope, aud []string, authTime int64, now time.Time) (*AccessClaims, string, error) {
	at := newAccessClaims(e.Issuer, subject, c.ID, aud, scope, now, e.AccessTokenTTL)
	at.Grant = family
	fam := familyRecord{ClientID: c.ID, Subject: subject, Scope: scope, AuthTime: authTime}
	famExp := now.Add(e.AccessTokenTTL)
	var rt string
	if c.Allows(GrantRefreshToken) {
		famExp = now.Add(e.RefreshTokenTTL)
		rt = newSecretToken()
		if err := putJSON(tx, storage.KindRefresh, hashToken(rt), &refreshRecord{Family: family}, famExp); err != nil {
			return nil, "", err
		}
	}
	return at, rt, putJSON(tx, storage.KindFamilies, family, &fam, famExp)
}

// storageError turns a backend failure into the client-facing error.
func storageError(err error) *Error {
	if err == nil {
		return nil
	}
	return errUnavailable
}
