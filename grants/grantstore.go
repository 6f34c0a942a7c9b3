package grants

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Codes, refresh tokens and session cookies are 256-bit random strings
// stored only as SHA-256 hashes, so a copy of the database grants nothing.
func newSecretToken() string { return tokens.RandomID(32) }

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// codeRecord is an authorization code's grant, bound to everything the
// token request must repeat.
type codeRecord struct {
	ClientID      string   `json:"client_id,omitempty"`
	RedirectURI   string   `json:"redirect_uri,omitempty"`
	RedirectGiven bool     `json:"redirect_given,omitempty"`
	Challenge     string   `json:"code_challenge,omitempty"`
	Nonce         string   `json:"nonce,omitempty"`
	Scope         []string `json:"scope,omitempty"`
	Resource      string   `json:"resource,omitempty"`
	Subject       string   `json:"sub,omitempty"`
	AuthTime      int64    `json:"auth_time,omitempty"`
	// DPoPJKT is the authorization request's dpop_jkt: redeeming the
	// code needs a proof of that key (RFC 9449 §10).
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// Used is set by the first redemption; Family is the storage key of
	// the grant it created, revoked if the code is presented again.
	Used   bool   `json:"used,omitempty"`
	Family string `json:"family,omitempty"`
}

// familyRecord is one grant, stored under a random handle that only its
// refresh tokens carry. A refresh token is the handle followed by a
// secret, and the record keeps the SHA-256 of the live secret and of the
// one it replaced: a rotation rewrites this one record, in place. Any
// other secret presented with the handle comes from a token that was
// already rotated (the handle is in no other token), which is reuse.
type familyRecord struct {
	// GrantID is the grant's public id, the gid claim of its access
	// tokens. It is not the handle, which is part of a secret.
	GrantID  string   `json:"gid"`
	ClientID string   `json:"client_id"`
	Subject  string   `json:"sub"`
	Scope    []string `json:"scope"`
	AuthTime int64    `json:"auth_time"`
	// Resources is the audience the grant was made for, the aud of its
	// first access token; a refresh may ask for any one of them and gets
	// all of them when it asks for none (RFC 8707 §2.2). A grant stored
	// by a build before this field has none: it keeps what that build
	// gave it on refresh, the client's registered audience (see
	// grantAudience), until it ends at refresh_token_ttl.
	Resources []string `json:"res,omitempty"`
	Revoked   bool     `json:"revoked,omitempty"`
	// Current is the hash of the live refresh token's secret; empty
	// when the client may not refresh.
	Current string `json:"rt,omitempty"`
	// Previous is the hash of the secret that Current replaced at
	// RotatedAt; within the refresh grace it may be presented again.
	Previous  string `json:"prev,omitempty"`
	RotatedAt int64  `json:"rotated_at,omitempty"`
	// Issued is when Current was issued, for refresh_token_idle_ttl.
	// Grants stored before it existed have none: see issuedAt.
	Issued int64 `json:"rt_iat,omitempty"`
	// DPoPJKT binds the refresh tokens of a public client's grant to the
	// DPoP key it was made with (RFC 9449 §5): a refresh must present a
	// proof of that key.
	DPoPJKT string `json:"jkt,omitempty"`
	// X5tS256 binds the refresh tokens of a public client's grant to the
	// client certificate of the request that made it (RFC 8705 §4): a
	// refresh must come over a connection with that certificate. A
	// confidential client's refresh tokens are bound to its own
	// authentication instead and have none.
	X5tS256 string `json:"x5t#S256,omitempty"`
}

// handleLen is the length of a grant handle, tokens.RandomID(16), and secretLen
// that of a refresh token's secret, newSecretToken().
const (
	handleLen = 22
	secretLen = 43
)

// grantKey is where the grant with handle is stored: the handle's SHA-256,
// so that a copy of the file holds no handle, which with any secret would
// count as a reused token and revoke the grant.
func grantKey(handle string) string { return hashToken(handle) }

// newRefreshToken makes a refresh token of the grant with handle and
// returns it with the hash of its secret, to be stored as Current.
func newRefreshToken(handle string) (token, secretHash string) {
	secret := newSecretToken()
	return handle + secret, hashToken(secret)
}

// splitRefreshToken returns the handle, the grant's storage key and the
// hash of the secret of something presented as a refresh token.
func splitRefreshToken(tok string) (handle, key, secretHash string, ok bool) {
	if len(tok) != handleLen+secretLen {
		return "", "", "", false
	}
	return tok[:handleLen], grantKey(tok[:handleLen]), hashToken(tok[handleLen:]), true
}

// isCurrent reports whether secretHash is the grant's live refresh token.
func (f *familyRecord) isCurrent(secretHash string) bool {
	return f.Current != "" && subtle.ConstantTimeCompare([]byte(f.Current), []byte(secretHash)) == 1
}

// inGrace reports whether secretHash is the token Current replaced, still
// inside the grace period.
func (f *familyRecord) inGrace(secretHash string, grace time.Duration, now time.Time) bool {
	return grace > 0 && f.Previous != "" && now.Sub(time.Unix(f.RotatedAt, 0)) <= grace &&
		subtle.ConstantTimeCompare([]byte(f.Previous), []byte(secretHash)) == 1
}

// rotate makes secretHash's successor the live token and returns it: a
// rotation of Current, or, in the grace period, a new successor for
// Previous, which replaces the one the client never received or used.
// Previous works that once: presented again, it is reuse.
func (f *familyRecord) rotate(handle, secretHash string, now time.Time) string {
	if f.isCurrent(secretHash) {
		f.Previous, f.RotatedAt = f.Current, now.Unix()
	} else {
		f.Previous = ""
	}
	next, h := newRefreshToken(handle)
	f.Current, f.Issued = h, now.Unix()
	return next
}

// issuedAt is when the grant's live refresh token was issued. A grant
// stored by a build without Issued gets the best lower bound it holds:
// its last rotation, or else its creation, which is its record's expiry
// less refresh_token_ttl (exact unless that setting changed since), and
// never before the sign-in. An idle timeout switched on later therefore
// counts old grants as idle since then, never as used more recently.
func (f *familyRecord) issuedAt(expires time.Time, ttl time.Duration) time.Time {
	switch {
	case f.Issued != 0:
		return time.Unix(f.Issued, 0)
	case f.RotatedAt != 0:
		return time.Unix(f.RotatedAt, 0)
	}
	if created := expires.Add(-ttl); created.Unix() > f.AuthTime {
		return created
	}
	return time.Unix(f.AuthTime, 0)
}

// refreshDeadline is when the grant's live refresh token stops working:
// at the grant's absolute expiry, or refresh_token_idle_ttl after it was
// issued if that is sooner (RFC 9700 §4.14.2).
func (e *Engine) refreshDeadline(f *familyRecord, expires time.Time) time.Time {
	if e.refreshIdleTTL <= 0 {
		return expires
	}
	if idle := f.issuedAt(expires, e.refreshTokenTTL).Add(e.refreshIdleTTL); idle.Before(expires) {
		return idle
	}
	return expires
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

// revokeFamily marks the family stored under key revoked in tx and
// returns the revocation entry to make effective once the transaction
// commits: the grant's id, kept until every access token it can have
// issued has expired. A grant stored before grant ids existed is named in
// its access tokens by its key.
func (e *Engine) revokeFamily(tx storage.Tx, key string) (map[string]int64, error) {
	// The grant may be another node's, with a longer access_token_ttl.
	horizon, err := e.revocationHorizonTx(tx, time.Now())
	if err != nil {
		return nil, err
	}
	return revokeFamilyTx(tx, key, horizon)
}

// revokeFamilyTx is revokeFamily for access tokens that verify until
// horizon at the latest.
func revokeFamilyTx(tx storage.Tx, key string, horizon time.Time) (map[string]int64, error) {
	var fam familyRecord
	rec, err := getJSON(tx, storage.KindFamilies, key, &fam)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	fam.Revoked = true
	if err := putJSON(tx, storage.KindFamilies, key, &fam, rec.Expires); err != nil {
		return nil, err
	}
	ids := map[string]int64{tokens.GrantRevocationKey(cmp.Or(fam.GrantID, key)): horizon.Unix()}
	if err := tokens.PersistRevoked(tx, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// startGrant records a new grant with handle in tx: its family, holding
// the first access token so that revoking the family revokes it, and,
// when the client may refresh, the family's first refresh token. It
// returns the access token's claims and the refresh token ("" when none).
func (e *Engine) startGrant(tx storage.Tx, c *Client, handle, subject string, scope, aud []string, authTime int64, now time.Time, dpopJKT, certTh string) (*tokens.AccessClaims, string, error) {
	fam := familyRecord{GrantID: tokens.RandomID(16), ClientID: c.ID, Subject: subject, Scope: scope, AuthTime: authTime,
		Resources: aud, DPoPJKT: dpopJKT, X5tS256: certTh}
	at := tokens.NewAccessClaims(e.issuer, subject, c.ID, aud, scope, now, e.accessTokenTTL)
	at.Grant = fam.GrantID
	var rt string
	if c.Allows(GrantRefreshToken) {
		rt, fam.Current = newRefreshToken(handle)
		fam.Issued = now.Unix()
	}
	return at, rt, putJSON(tx, storage.KindFamilies, grantKey(handle), &fam, now.Add(e.grantLifetime(c)))
}

// grantLifetime is how long a new grant of c lives: as long as its
// refresh tokens, or, without them, as long as its one access token
// verifies, so that revoking the grant reaches it to the end.
func (e *Engine) grantLifetime(c *Client) time.Duration {
	if c.Allows(GrantRefreshToken) {
		return e.refreshTokenTTL
	}
	return e.accessTokenTTL + verifierLeeway
}

// storageError turns a backend failure into the client-facing error,
// keeping the failure as its cause for the log.
func storageError(err error) *Error {
	if err == nil {
		return nil
	}
	return errUnavailable.withCause(err)
}

// storageFailure marks a storage failure inside a check whose other
// failures are the client's (the lookup of an asserted subject), so that
// the caller answers temporarily_unavailable instead of refusing a good
// grant.
type storageFailure struct{ err error }

func (f storageFailure) Error() string { return f.err.Error() }
func (f storageFailure) Unwrap() error { return f.err }

// asStorageError is storageError of the storageFailure in err's chain,
// or nil when there is none.
func asStorageError(err error) *Error {
	var sf storageFailure
	if errors.As(err, &sf) {
		return storageError(sf.err)
	}
	return nil
}
