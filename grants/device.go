package grants

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// The device authorization grant (RFC 8628): a device without a browser
// (a TV, a CLI, a CI job) asks the device authorization endpoint for a
// device code and a user code, shows the user code, and polls the token
// endpoint while the user approves on another device's browser at the
// verification page (devicepage.go).

// GrantDeviceCode is the device authorization grant type (RFC 8628 §3.4).
const GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// Endpoint paths of the device grant below the issuer's path.
const (
	// DeviceAuthorizationPath is the device authorization endpoint
	// (RFC 8628 §3.1), where the device asks for its codes.
	DeviceAuthorizationPath = "/oauth/device_authorization"
	// DevicePath is the verification page (RFC 8628 §3.3), where the user
	// enters the user code.
	DevicePath = "/oauth/device"
)

// Error codes of the device grant's polling (RFC 8628 §3.5).
const (
	CodeAuthorizationPending = "authorization_pending"
	CodeSlowDown             = "slow_down"
	CodeAccessDenied         = "access_denied"
	CodeExpiredToken         = "expired_token"
)

// Defaults and bounds of DeviceConfig.
const (
	DefaultDeviceCodeTTL  = 10 * time.Minute
	DefaultDeviceInterval = 5 * time.Second
	// deviceSlowDownStep is how much every slow_down adds to the interval
	// (RFC 8628 §3.5: "MUST be increased by 5 seconds for this and all
	// subsequent requests").
	deviceSlowDownStep = 5 * time.Second
)

// DeviceConfig configures the device authorization grant.
type DeviceConfig struct {
	// CodeTTL is how long a device code and its user code stay valid
	// (expires_in). Default DefaultDeviceCodeTTL (10m); between 1m and 1h.
	CodeTTL time.Duration
	// Interval is the minimum time between two polls of the token
	// endpoint (interval). Default DefaultDeviceInterval (5s); between 1s
	// and 1m.
	Interval time.Duration
}

// checkDeviceConfig fills in the defaults and checks the bounds.
func checkDeviceConfig(c *DeviceConfig) error {
	c.CodeTTL = cmp.Or(c.CodeTTL, DefaultDeviceCodeTTL)
	c.Interval = cmp.Or(c.Interval, DefaultDeviceInterval)
	if c.CodeTTL < time.Minute || c.CodeTTL > time.Hour {
		return errors.New("device_code_ttl must be between 1m and 1h")
	}
	if c.Interval < time.Second || c.Interval > time.Minute || c.Interval%time.Second != 0 {
		return errors.New("device_poll_interval must be whole seconds between 1s and 1m")
	}
	return nil
}

// userCodeAlphabet are the characters of user codes: consonants without
// vowels (no words) and without easily confused ones (RFC 8628 §6.1).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCodeLen is the number of characters of a user code: 20^8 ≈ 2^34.6
// codes, against which a few guesses per address and minute (the
// verification page's throttle) and a code's short life leave an
// attacker no chance (RFC 8628 §5.1).
const userCodeLen = 8

// newUserCode makes a random user code, normalized (no dash).
func newUserCode() string {
	b := make([]byte, 0, userCodeLen)
	var buf [16]byte
	for len(b) < userCodeLen {
		_, _ = rand.Read(buf[:])
		for _, x := range buf {
			// 240 is the largest multiple of 20 below 256: a byte at or
			// above it would favour the first letters.
			if x < 240 && len(b) < userCodeLen {
				b = append(b, userCodeAlphabet[x%20])
			}
		}
	}
	return string(b)
}

// normalizeUserCode reads a user code as typed: case-insensitive, with
// dashes and spaces ignored (RFC 8628 §6.1). ok is false for text that
// cannot be a user code.
func normalizeUserCode(s string) (code string, ok bool) {
	if len(s) > 64 {
		return "", false
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '-' || r == ' ' || r == '\t':
		case 'a' <= r && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		default:
			b.WriteRune(r)
		}
	}
	code = b.String()
	if len(code) != userCodeLen {
		return "", false
	}
	for i := 0; i < len(code); i++ {
		if !strings.ContainsRune(userCodeAlphabet, rune(code[i])) {
			return "", false
		}
	}
	return code, true
}

// displayUserCode shows a normalized user code as XXXX-XXXX.
func displayUserCode(code string) string {
	if len(code) != userCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// Device states.
const (
	devicePending  = "pending"
	deviceApproved = "approved"
	deviceDenied   = "denied"
	deviceUsed     = "used"
)

// deviceRecord is a device authorization, stored (among the codes) under
// deviceKey of its device code. The user code points to it from
// userCodeKey until the user decides.
type deviceRecord struct {
	ClientID string   `json:"client_id"`
	Scope    []string `json:"scope"`
	Resource string   `json:"resource,omitempty"`
	UserCode string   `json:"user_code"`
	// Expires is when the codes expire (expires_in); the record is kept
	// as long again, so that a late poll learns expired_token rather than
	// invalid_grant.
	Expires int64 `json:"expires"`
	// Interval is the current minimum time between polls in seconds; it
	// grows with every slow_down. LastPoll is the last poll, in unix
	// milliseconds.
	Interval int64  `json:"interval"`
	LastPoll int64  `json:"last_poll,omitempty"`
	Status   string `json:"status"`
	// Subject and AuthTime are the approving user's, once approved, and
	// Approved when (Unix seconds).
	Subject  string `json:"sub,omitempty"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Approved int64  `json:"approved,omitempty"`
}

// approvalRevoked reports whether everything of the approving user or of
// the client was revoked (RevokeSubject, RevokeClient, removing either)
// at or after the approval: an approval is not a token, so the
// revocation could not reach it, and a device an attacker had approved
// with a stolen password must not get tokens once the operator revoked
// the user.
func approvalRevoked(tx storage.Tx, dr *deviceRecord) (bool, error) {
	for _, k := range [...]string{tokens.BeforeKey("sub", dr.Subject), tokens.BeforeKey("client", dr.ClientID)} {
		rec, err := tx.Get(storage.KindRevoked, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if at, err := strconv.ParseInt(string(rec.Value), 10, 64); err != nil || at >= dr.Approved {
			return true, nil
		}
	}
	return false, nil
}

// deviceKey and userCodeKey are where a device record and its user code
// live in storage.KindCodes: prefixed, so that no authorization code hash
// can be one of them, and hashed, so that the storage holds neither code.
func deviceKey(deviceCode string) string { return "device:" + hashToken(deviceCode) }
func userCodeKey(userCode string) string { return "user_code:" + hashToken(userCode) }

// DeviceAuthorizationResponse is the RFC 8628 §3.2 success body.
type DeviceAuthorizationResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// serveDeviceAuthorization is the device authorization endpoint
// (RFC 8628 §3.1): the client authenticates as at the token endpoint (a
// public client names itself with client_id) and gets a device code to
// poll with and a user code to show.
func (e *Engine) serveDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	answerJSON(e, w, r, "device_authorization", "device authorization refused", e.deviceAuthorization)
}

func (e *Engine) deviceAuthorization(w http.ResponseWriter, r *http.Request) (*DeviceAuthorizationResponse, *Error) {
	c, form, oerr := e.authenticatedForm(w, r)
	if oerr != nil {
		return nil, oerr
	}
	if !c.Allows(GrantDeviceCode) {
		return nil, errCode(CodeUnauthorizedClient, "this client may not use the device authorization grant: add "+GrantDeviceCode+" to its grant_types")
	}
	if c.AuthMethod == AuthNone {
		if oerr := e.limitPublic(r, "device"); oerr != nil {
			return nil, oerr
		}
	}
	scope, aud, oerr := e.scopeAndAudience(c, form, c.Scopes)
	if oerr != nil {
		return nil, oerr
	}
	resource := ""
	if form.Get("resource") != "" {
		resource = aud[0]
	}
	cfg := e.device
	now := time.Now()
	deviceCode := newSecretToken()
	rec := deviceRecord{ClientID: c.ID, Scope: scope, Resource: resource, Expires: now.Add(cfg.CodeTTL).Unix(),
		Interval: int64(cfg.Interval / time.Second), Status: devicePending}
	keep := now.Add(2 * cfg.CodeTTL)
	err := e.store.Batch(r.Context(), func(tx storage.Tx) error {
		// A user code is unique among the live ones: of 20^8, a clash is
		// rare, and another draw settles it.
		free := false
		for i := 0; i < 8 && !free; i++ {
			rec.UserCode = newUserCode()
			_, err := tx.Get(storage.KindCodes, userCodeKey(rec.UserCode))
			if free = errors.Is(err, storage.ErrNotFound); !free && err != nil {
				return err
			}
		}
		if !free {
			// Never reached in practice (20^8 codes); never overwrite
			// another device's user code.
			return errors.New("no free user code after 8 draws")
		}
		if err := tx.Put(storage.KindCodes, userCodeKey(rec.UserCode), storage.Record{Value: []byte(deviceKey(deviceCode)), Expires: time.Unix(rec.Expires, 0)}); err != nil {
			return err
		}
		return putJSON(tx, storage.KindCodes, deviceKey(deviceCode), &rec, keep)
	})
	if err != nil {
		return nil, storageError(err)
	}
	verify := e.issuer + DevicePath
	return &DeviceAuthorizationResponse{
		DeviceCode:              deviceCode,
		UserCode:                displayUserCode(rec.UserCode),
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?" + url.Values{"user_code": {displayUserCode(rec.UserCode)}}.Encode(),
		ExpiresIn:               int64(cfg.CodeTTL / time.Second),
		Interval:                rec.Interval,
	}, nil
}

var errBadDeviceCode = errCode(CodeInvalidGrant, "the device code is invalid, was issued to another client, or was already used")

// deviceCodeGrant is the token request of RFC 8628 §3.4. Every poll is
// one transaction on the device record: it checks the polling interval
// (slow_down grows it for good), and an approved code is spent in the
// transaction that starts the grant, so it yields tokens once.
func (e *Engine) deviceCodeGrant(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	code := form.Get("device_code")
	if code == "" {
		return nil, errRequest("device_code is required")
	}
	key := deviceKey(code)
	var (
		oerr *Error
		dr   deviceRecord
		at   *tokens.AccessClaims
		rt   string
	)
	err := e.store.Batch(ctx, func(tx storage.Tx) error {
		dr, at, rt, oerr = deviceRecord{}, nil, "", nil
		now := time.Now()
		rec, err := getJSON(tx, storage.KindCodes, key, &dr)
		if errors.Is(err, storage.ErrNotFound) {
			oerr = errBadDeviceCode
			return nil
		}
		if err != nil {
			return err
		}
		// Another client's code is refused and left as it is: that
		// client cannot learn about it, nor use up its interval.
		if dr.ClientID != c.ID || dr.Status == deviceUsed {
			oerr = errBadDeviceCode
			return nil
		}
		if now.Unix() >= dr.Expires && dr.Status != deviceApproved {
			oerr = errCode(CodeExpiredToken, "the device code has expired: start again with a new device authorization request")
			return nil
		}
		switch dr.Status {
		case deviceApproved:
			if now.Unix() >= dr.Expires {
				oerr = errCode(CodeExpiredToken, "the device code has expired: start again with a new device authorization request")
				return nil
			}
			if revoked, err := approvalRevoked(tx, &dr); err != nil || revoked {
				oerr = errBadDeviceCode
				if err != nil {
					return err
				}
				return putJSON(tx, storage.KindCodes, key, &deviceRecord{ClientID: dr.ClientID, Status: deviceUsed}, rec.Expires)
			}
			// As for a code: the poll may name the resource of the
			// request again, or pick one when the request named none.
			res := form.Get("resource")
			if dr.Resource != "" && res != "" && canonResource(res) != canonResource(dr.Resource) {
				oerr = errCode(CodeInvalidTarget, "resource differs from the device authorization request")
				return nil
			}
			aud, aerr := e.audienceFor(c, cmp.Or(res, dr.Resource))
			if aerr != nil {
				oerr = aerr
				return nil
			}
			handle := tokens.RandomID(16)
			if err := putJSON(tx, storage.KindCodes, key, &deviceRecord{ClientID: dr.ClientID, Status: deviceUsed}, rec.Expires); err != nil {
				return err
			}
			at, rt, err = e.startGrant(tx, c, handle, dr.Subject, dr.Scope, aud, dr.AuthTime, now, refreshBinding(ctx, c), refreshCertBinding(ctx, c))
			return err
		case deviceDenied:
			oerr = errCode(CodeAccessDenied, "the user denied the authorization request")
			return nil
		}
		// Pending: too soon after the last poll is slow_down, and the
		// interval grows by 5 s for this and every later poll. A fifth of
		// the interval is forgiven: a client that polls on a ticker of
		// exactly the interval (golang.org/x/oauth2 does) arrives a little
		// early whenever the network delays one poll more than the next.
		interval := time.Duration(dr.Interval) * time.Second
		if dr.LastPoll != 0 && now.Sub(time.UnixMilli(dr.LastPoll)) < interval-interval/5 {
			dr.Interval += int64(deviceSlowDownStep / time.Second)
			oerr = errCode(CodeSlowDown, "polling too fast: wait at least the interval between requests, now "+strconv.FormatInt(dr.Interval, 10)+" s")
		} else {
			oerr = errCode(CodeAuthorizationPending, "the user has not yet approved the request")
		}
		dr.LastPoll = now.UnixMilli()
		return putJSON(tx, storage.KindCodes, key, &dr, rec.Expires)
	})
	if err != nil {
		return nil, storageError(err)
	}
	if oerr != nil {
		return nil, oerr
	}
	return e.userTokens(ctx, c, at, rt, "", dr.AuthTime)
}
