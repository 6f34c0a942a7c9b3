package grants

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// CodeTTL is how long an authorization code can be redeemed.
const CodeTTL = 60 * time.Second

// usedCodeRetention is the longest a redeemed code is remembered, so that
// a replay can be recognised and revoke what the first redemption issued.
// A grant that ends sooner takes its code with it: a replay after that
// would have nothing to revoke.
const usedCodeRetention = 15 * time.Minute

// validPKCEValue checks a code_verifier or S256 code_challenge: 43 to 128
// unreserved characters (RFC 7636 §4.1, §4.2).
func validPKCEValue(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// validS256Challenge checks an S256 code_challenge: the unpadded base64url
// encoding of a SHA-256 hash, so exactly 43 characters whose last one
// carries no stray bits (RFC 7636 §4.2). Anything else matches no
// verifier, so a code issued for it could never be redeemed.
func validS256Challenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// challengeKey is where a code_challenge bound to a live code is
// recorded (among the single-use values), so that another transaction
// cannot use it (RFC 9700 §2.1.1). Only its hash is kept.
func challengeKey(challenge string) string {
	return "pkce:" + hashToken(challenge)
}

// errChallengeReused is the redirect error for a code_challenge that a
// live code already uses.
var errChallengeReused = &redirectError{CodeInvalidRequest,
	"code_challenge is already in use: make a new code_verifier for every authorization request"}

// challengeInUse reports whether a live code was issued for challenge.
func (e *Engine) challengeInUse(ctx context.Context, challenge string) (bool, error) {
	var used bool
	err := e.store.View(ctx, func(tx storage.Tx) error {
		_, err := tx.Get(storage.KindAssertions, challengeKey(challenge))
		used = err == nil
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
		return err
	})
	return used, err
}

// s256 is the PKCE S256 transformation.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var errBadCode = errCode(CodeInvalidGrant, "the authorization code is invalid, expired or already used")

var errUserGone = errCode(CodeInvalidGrant, "the user of this grant no longer exists")

// checkRedemption checks everything a code is bound to.
func checkRedemption(cr *codeRecord, c *Client, form Form) *Error {
	if cr.ClientID != c.ID {
		return errBadCode
	}
	switch ru := form.Get("redirect_uri"); {
	case cr.RedirectGiven && ru == "":
		return errRequest("redirect_uri is required: the authorization request had one")
	case ru != "" && ru != cr.RedirectURI:
		return errCode(CodeInvalidGrant, "redirect_uri does not match the authorization request")
	}
	if res := form.Get("resource"); cr.Resource != "" && res != "" && canonResource(res) != canonResource(cr.Resource) {
		return errCode(CodeInvalidTarget, "resource differs from the authorization request")
	}
	verifier := form.Get("code_verifier")
	switch {
	case cr.Challenge == "" && verifier != "":
		return errCode(CodeInvalidGrant, "code_verifier was sent but the authorization request had no code_challenge")
	case cr.Challenge != "" && verifier == "":
		return errCode(CodeInvalidGrant, "code_verifier is required")
	case cr.Challenge != "" && (!validPKCEValue(verifier) || subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(cr.Challenge)) != 1):
		return errCode(CodeInvalidGrant, "code_verifier does not match the code_challenge")
	}
	return nil
}

// authorizationCode is the RFC 6749 §4.1.3 grant. The code is redeemed in
// one transaction: a second redemption fails and revokes every token the
// first one issued; a failed redemption burns the code.
func (e *Engine) authorizationCode(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	code := form.Get("code")
	if code == "" {
		return nil, errRequest("code is required")
	}
	if _, oerr := e.audienceFor(c, form.Get("resource")); oerr != nil {
		return nil, oerr
	}
	key := hashToken(code)
	now := time.Now()
	var (
		oerr    *Error
		cr      codeRecord
		at      *tokens.AccessClaims
		rt      string
		revoked map[string]int64
	)
	err := e.store.Batch(ctx, func(tx storage.Tx) error {
		cr, at, rt, revoked, oerr = codeRecord{}, nil, "", nil, nil
		rec, err := getJSON(tx, storage.KindCodes, key, &cr)
		if errors.Is(err, storage.ErrNotFound) {
			oerr = errBadCode
			return nil
		}
		if err != nil {
			return err
		}
		if cr.Used {
			oerr = errBadCode
			revoked, err = e.revokeFamily(tx, cr.Family)
			return err
		}
		// A spent code keeps only what a replay needs: that it was used,
		// and the grant to revoke.
		if oerr = checkRedemption(&cr, c, form); oerr == nil && cr.DPoPJKT != "" && cr.DPoPJKT != dpopJKT(ctx) {
			oerr = errDPoPCode
		}
		if oerr != nil {
			return putJSON(tx, storage.KindCodes, key, &codeRecord{Used: true}, rec.Expires)
		}
		handle := tokens.RandomID(16)
		spent := &codeRecord{Used: true, Family: grantKey(handle)}
		if err := putJSON(tx, storage.KindCodes, key, spent, now.Add(min(usedCodeRetention, e.grantLifetime(c)))); err != nil {
			return err
		}
		aud, _ := e.audienceFor(c, cmp.Or(form.Get("resource"), cr.Resource))
		at, rt, err = e.startGrant(tx, c, handle, cr.Subject, cr.Scope, aud, cr.AuthTime, now, refreshBinding(ctx, c), refreshCertBinding(ctx, c))
		return err
	})
	if err != nil {
		return nil, storageError(err)
	}
	e.revocations.Add(revoked)
	if oerr != nil {
		return nil, oerr
	}
	return e.userTokens(ctx, c, at, rt, cr.Nonce, cr.AuthTime)
}
