package grants

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// The device grant's audit lines (docs/audit.md).
const (
	auditDeviceLocked   = "device user codes locked out"
	auditDeviceApproved = "device approved"
)

// The verification page of the device grant (RFC 8628 §3.3): the user
// enters (or confirms) the code the device shows, signs in with the
// login page of the code flow when the browser has no session, and
// allows or denies on the consent page. The consent page is always
// shown, for every client, with the code to compare: a user who follows
// an attacker's verification_uri_complete must still confirm that the
// code is the one on their own device (RFC 8628 §5.4).

// deviceEntryState is sealed into the code entry form; it carries
// nothing but ties the post to the CSRF cookie and a recent page.
type deviceEntryState struct{}

// deviceConsentState is sealed into the device's consent form.
type deviceConsentState struct {
	UserCode string `json:"c"`
	ClientID string `json:"cl"`
	User     string `json:"u"`
}

// serveDevice is the verification page: GET shows the code entry form
// (filled in from verification_uri_complete's user_code, which the user
// must still confirm), POST checks the code.
func (e *Engine) serveDevice(rw http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		e.serveDeviceCode(rw, r)
		return
	}
	if err := e.requireTLS(r); err != nil {
		e.web.errorPage(rw, http.StatusBadRequest, e.web.text.NeedHTTPS)
		return
	}
	if e.web.refuseDuplicateCookie(rw, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, POST")
		e.web.errorPage(rw, http.StatusMethodNotAllowed, e.web.text.DeviceMethods)
		return
	}
	// Only what can be a user code is filled in: the page echoes nothing
	// else a link carries.
	code, _ := normalizeUserCode(r.URL.Query().Get("user_code"))
	e.deviceEntryPage(rw, r, http.StatusOK, displayUserCode(code), "")
}

// deviceEntryPage shows the code entry form.
func (e *Engine) deviceEntryPage(rw http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w := e.web
	csrf := w.csrfToken(rw, r)
	w.render(rw, status, "device.html", pageData{Title: w.text.DeviceTitle, Error: msg, UserCode: code,
		State: w.seal(deviceEntryState{}, csrf), CSRF: csrf, Action: e.basePath + DevicePath})
}

// deviceDonePage ends the flow: a page without a form.
func (e *Engine) deviceDonePage(rw http.ResponseWriter, status int, msg, errMsg string) {
	e.web.render(rw, status, "device.html", pageData{Title: e.web.text.DeviceTitle, Message: msg, Error: errMsg})
}

// deviceThrottleKey counts wrong user codes per client address.
func deviceThrottleKey(r *http.Request) string { return "device-code\x00" + addrKey(ClientIP(r)) }

// serveDeviceCode checks an entered user code. Wrong codes count per
// client address; past the throttle's max_failures the address gets 429
// for a while (RFC 8628 §5.1), however the guesses are spread.
func (e *Engine) serveDeviceCode(rw http.ResponseWriter, r *http.Request) {
	var st deviceEntryState
	if !e.checkPost(rw, r, &st) {
		return
	}
	w, now, key := e.web, time.Now(), deviceThrottleKey(r)
	tooMany := func(until time.Time) {
		rw.Header().Set("Retry-After", strconv.Itoa(max(1, int(until.Sub(now).Round(time.Second)/time.Second))))
		e.deviceEntryPage(rw, r, http.StatusTooManyRequests, "", w.text.DeviceThrottled)
	}
	if until := w.throttle.lockedUntil(now, key); !until.IsZero() {
		tooMany(until)
		return
	}
	code, ok := normalizeUserCode(r.PostForm.Get("user_code"))
	var dr *deviceRecord
	if ok {
		var err error
		if dr, err = e.pendingDevice(r, code); err != nil {
			e.unavailable(rw, r, "device", w.text.SignInUnavailable, err)
			return
		}
	}
	if dr == nil {
		if until := w.throttle.fail(now, key); !until.IsZero() {
			e.auditLine(r.Context(), zapcore.WarnLevel, auditDeviceLocked, zap.String("client_ip", ClientIP(r)), zap.Time("locked_until", until))
			tooMany(until)
			return
		}
		e.deviceEntryPage(rw, r, http.StatusOK, "", w.text.DeviceCodeWrong)
		return
	}
	sess, _, err := w.session(r.Context(), r)
	if err != nil {
		e.unavailable(rw, r, "device", w.text.SignInUnavailable, err)
		return
	}
	e.continueDevice(rw, r, code, sess)
}

// pendingDevice finds the device authorization a user code belongs to,
// while the user may still decide; nil when there is none.
func (e *Engine) pendingDevice(r *http.Request, userCode string) (*deviceRecord, error) {
	var dr *deviceRecord
	err := e.store.View(r.Context(), func(tx storage.Tx) error {
		var err error
		dr, _, err = pendingDeviceTx(tx, userCode)
		return err
	})
	return dr, err
}

// pendingDeviceTx is pendingDevice in a transaction; it also returns the
// device record's key.
func pendingDeviceTx(tx storage.Tx, userCode string) (*deviceRecord, string, error) {
	ptr, err := tx.Get(storage.KindCodes, userCodeKey(userCode))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	var dr deviceRecord
	key := string(ptr.Value)
	if _, err := getJSON(tx, storage.KindCodes, key, &dr); errors.Is(err, storage.ErrNotFound) {
		return nil, "", nil
	} else if err != nil {
		return nil, "", err
	}
	if dr.Status != devicePending || dr.UserCode != userCode || time.Now().Unix() >= dr.Expires {
		return nil, "", nil
	}
	return &dr, key, nil
}

// continueDevice moves a checked user code on: to the login page when
// the browser has no session (sess nil; serveLogin comes back here), else
// to the consent page.
func (e *Engine) continueDevice(rw http.ResponseWriter, r *http.Request, userCode string, sess *sessionRecord) {
	w := e.web
	dr, err := e.pendingDevice(r, userCode)
	if err != nil {
		e.unavailable(rw, r, "device", w.text.SignInUnavailable, err)
		return
	}
	if dr == nil {
		e.deviceDonePage(rw, http.StatusBadRequest, "", w.text.DeviceCodeGone)
		return
	}
	c, err := e.lookupClient(r.Context(), dr.ClientID)
	if err != nil {
		e.unavailable(rw, r, "device", w.text.SignInUnavailable, err)
		return
	}
	if c == nil {
		w.errorPage(rw, http.StatusBadRequest, w.text.ClientGone)
		return
	}
	if sess == nil {
		e.loginPage(rw, r, c, loginState{Request: authzRequest{ClientID: c.ID, MaxAge: -1}, Device: userCode}, "", "")
		return
	}
	csrf := w.csrfToken(rw, r)
	d := pageData{Title: w.text.ConsentTitle, Scopes: dr.Scope, ScopeItems: w.describeScopes(dr.Scope), User: sess.User,
		Message: strings.ReplaceAll(w.text.DeviceCheckCode, "{code}", displayUserCode(userCode)),
		State:   w.seal(deviceConsentState{UserCode: userCode, ClientID: c.ID, User: sess.Sub}, csrf), CSRF: csrf,
		Action: e.basePath + DevicePath + "/consent"}
	d.setClient(c)
	w.render(rw, http.StatusOK, "consent.html", d)
}

// serveDeviceConsent records the user's decision on the device record,
// in one transaction that also retires the user code: a code is decided
// once.
func (e *Engine) serveDeviceConsent(rw http.ResponseWriter, r *http.Request) {
	w := e.web
	var st deviceConsentState
	if !e.checkPost(rw, r, &st) {
		return
	}
	sess, _, err := w.session(r.Context(), r)
	if err != nil {
		e.unavailable(rw, r, "device", w.text.SignInUnavailable, err)
		return
	}
	if sess == nil || sess.Sub != st.User {
		w.errorPage(rw, http.StatusBadRequest, w.text.SessionEnded)
		return
	}
	allow := r.PostForm.Get("decision") == "allow"
	var found bool
	err = e.store.Update(r.Context(), func(tx storage.Tx) error {
		dr, key, err := pendingDeviceTx(tx, st.UserCode)
		found = dr != nil && dr.ClientID == st.ClientID
		if err != nil || !found {
			return err
		}
		rec, err := tx.Get(storage.KindCodes, key)
		if err != nil {
			return err
		}
		dr.Status = deviceDenied
		if allow {
			dr.Status, dr.Subject, dr.AuthTime, dr.Approved = deviceApproved, sess.Sub, sess.AuthTime, time.Now().Unix()
		}
		if err := tx.Delete(storage.KindCodes, userCodeKey(st.UserCode)); err != nil {
			return err
		}
		return putJSON(tx, storage.KindCodes, key, dr, rec.Expires)
	})
	switch {
	case err != nil:
		e.unavailable(rw, r, "device", w.text.SignInUnavailable, err)
	case !found:
		e.deviceDonePage(rw, http.StatusBadRequest, "", w.text.DeviceCodeGone)
	case allow:
		e.auditLine(r.Context(), zapcore.InfoLevel, auditDeviceApproved, zap.String("client_id", st.ClientID), zap.String("user", sess.User))
		e.deviceDonePage(rw, http.StatusOK, w.text.DeviceApproved, "")
	default:
		e.deviceDonePage(rw, http.StatusOK, w.text.DeviceDenied, "")
	}
}
