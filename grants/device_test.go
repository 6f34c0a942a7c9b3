package grants

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

const devConfSecret = "dev-conf-secret"

// devClients are the device grant's fixture clients: c-tv (public,
// with refresh tokens), c-tv2 (public) and c-tv-conf (confidential).
func devClients() []*Client {
	return []*Client{
		{ClientSpec: ClientSpec{ID: "c-tv", Name: "Living Room TV", AuthMethod: AuthNone, GrantTypes: []string{GrantDeviceCode, GrantRefreshToken},
			Scopes: []string{"openid", "read"}, Audience: []string{"https://app.test"}}},
		{ClientSpec: ClientSpec{ID: "c-tv2", AuthMethod: AuthNone, GrantTypes: []string{GrantDeviceCode}, Scopes: []string{"read"}}},
		{ClientSpec: ClientSpec{ID: "c-tv-conf", AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantDeviceCode}, Scopes: []string{"read"}},
			SecretHash: HashSecret(devConfSecret)},
	}
}

func devEngine(t testing.TB, opts ...engineOpt) *Engine {
	return newEngine(t, append([]engineOpt{withClients(devClients()...)}, opts...)...)
}

// devRequest posts a device authorization request.
func devRequest(e *Engine, form url.Values, authz string) tokenResult {
	return opPost(e, e.serveDeviceAuthorization, DeviceAuthorizationPath, "", form, authz)
}

// devStart gets a device code and user code for a public client.
func devStart(t testing.TB, e *Engine, client, scope string) (deviceCode, userCode string) {
	t.Helper()
	tr := devRequest(e, url.Values{"client_id": {client}, "scope": {scope}}, "")
	if tr.status != http.StatusOK {
		t.Fatalf("device authorization: %d %s", tr.status, tr.raw)
	}
	return tr.str("device_code"), tr.str("user_code")
}

// devPoll polls the token endpoint as client (public, or c-tv-conf with
// its secret).
func devPoll(e *Engine, client, deviceCode string) tokenResult {
	form := url.Values{"grant_type": {GrantDeviceCode}, "device_code": {deviceCode}}
	if client == "c-tv-conf" {
		return postTokenRaw(e, form, siBasicAuth(client, devConfSecret))
	}
	form.Set("client_id", client)
	return postTokenRaw(e, form, "")
}

// devEdit changes a device record in storage (the clock of a test).
func devEdit(t testing.TB, e *Engine, deviceCode string, mod func(*deviceRecord)) {
	t.Helper()
	err := e.store.Update(t.Context(), func(tx storage.Tx) error {
		var dr deviceRecord
		rec, err := getJSON(tx, storage.KindCodes, deviceKey(deviceCode), &dr)
		if err != nil {
			return err
		}
		mod(&dr)
		return putJSON(tx, storage.KindCodes, deviceKey(deviceCode), &dr, rec.Expires)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// deviceDecide enters userCode on the verification page, signs in as
// alice when asked, and posts decision on the consent page; it returns
// the last page.
func (b *browser) deviceDecide(userCode, decision string) *httptest.ResponseRecorder {
	b.t.Helper()
	rec := b.deviceEnter(userCode)
	if isLoginPage(rec) {
		rec = b.login(rec, "alice", "alice-pw")
	}
	if !isConsentPage(rec) {
		b.t.Fatalf("want the consent page, got %d:\n%s", rec.Code, rec.Body.String())
	}
	state, csrf := formFields(b.t, rec.Body.String())
	return b.post(b.e.basePath+DevicePath+"/consent", url.Values{"state": {state}, "csrf": {csrf}, "decision": {decision}})
}

// deviceEnter opens the verification page from verification_uri_complete
// and confirms the filled-in code (as typed when typed is given).
func (b *browser) deviceEnter(userCode string, typed ...string) *httptest.ResponseRecorder {
	b.t.Helper()
	page := b.get(b.e.basePath + DevicePath + "?user_code=" + url.QueryEscape(userCode))
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `id="user_code"`) {
		b.t.Fatalf("verification page: %d\n%s", page.Code, page.Body.String())
	}
	state, csrf := formFields(b.t, page.Body.String())
	code := userCode
	if len(typed) > 0 {
		code = typed[0]
	}
	return b.post(b.e.basePath+DevicePath, url.Values{"state": {state}, "csrf": {csrf}, "user_code": {code}})
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// DEV-01: the device authorization endpoint answers the four required
// members, interval and verification_uri_complete, uncacheable; and
// refuses what RFC 8628 §3.1 and RFC 6749 §5.2 refuse, storing nothing.
func TestDeviceAuthorizationEndpoint(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	tr := devRequest(e, url.Values{"client_id": {"c-tv"}, "scope": {"read"}}, "")
	if tr.status != http.StatusOK || tr.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("got %d, Cache-Control %q: %s", tr.status, tr.hdr.Get("Cache-Control"), tr.raw)
	}
	uc := tr.str("user_code")
	if len(tr.str("device_code")) < 43 || !userCodeRE.MatchString(uc) ||
		tr.str("verification_uri") != testIssuer+DevicePath ||
		tr.str("verification_uri_complete") != testIssuer+DevicePath+"?user_code="+uc ||
		tr.body["expires_in"] != 600.0 || tr.body["interval"] != 5.0 {
		t.Errorf("response: %s", tr.raw)
	}
	// The confidential client authenticates as at the token endpoint.
	if tr := devRequest(e, url.Values{"scope": {"read"}}, siBasicAuth("c-tv-conf", devConfSecret)); tr.status != http.StatusOK {
		t.Errorf("confidential client: %d %s", tr.status, tr.raw)
	}
	count := func() int {
		n := 0
		_ = e.store.View(t.Context(), func(tx storage.Tx) error {
			return tx.ForEach(storage.KindCodes, func(string, storage.Record) error { n++; return nil })
		})
		return n
	}
	before := count()
	for _, tt := range []struct {
		name   string
		form   url.Values
		authz  string
		status int
		code   string
	}{
		{"unknown client", url.Values{"client_id": {"nobody"}}, "", 401, CodeInvalidClient},
		{"no client", url.Values{"scope": {"read"}}, "", 401, CodeInvalidClient},
		{"confidential client without its secret", url.Values{"client_id": {"c-tv-conf"}}, "", 401, CodeInvalidClient},
		{"wrong secret", url.Values{}, siBasicAuth("c-tv-conf", "wrong"), 401, CodeInvalidClient},
		{"client without the grant", url.Values{}, siBasicAuth("c-basic", siBasicSecret), 400, CodeUnauthorizedClient},
		{"public client without the grant", url.Values{"client_id": {"c-pub"}}, "", 400, CodeUnauthorizedClient},
		{"scope not allowed", url.Values{"client_id": {"c-tv"}, "scope": {"write"}}, "", 400, CodeInvalidScope},
		{"resource not allowed", url.Values{"client_id": {"c-tv"}, "resource": {"https://other.test"}}, "", 400, CodeInvalidTarget},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, devRequest(e, tt.form, tt.authz), tt.status, tt.code)
		})
	}
	// Not a form POST.
	r := httptest.NewRequest(http.MethodGet, DeviceAuthorizationPath+"?client_id=c-tv", nil)
	r.RemoteAddr = loopbackAddr
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
	if n := count(); n != before {
		t.Errorf("refused requests stored %d records", n-before)
	}
}

// DEV-02..05: polling, as a table of steps on one device code each.
func TestDevicePolling(t *testing.T) {
	t.Parallel()
	back := func(d time.Duration) func(*deviceRecord) {
		return func(dr *deviceRecord) { dr.LastPoll = time.UnixMilli(dr.LastPoll).Add(-d).UnixMilli() }
	}
	type step struct {
		before func(t *testing.T, e *Engine, b *browser, dc, uc string)
		client string // c-tv unless set
		code   string // the error; "" for tokens
	}
	decide := func(d string) func(*testing.T, *Engine, *browser, string, string) {
		return func(t *testing.T, e *Engine, b *browser, _, uc string) {
			if rec := b.deviceDecide(uc, d); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `id="message"`) {
				t.Fatalf("decision page: %d\n%s", rec.Code, rec.Body.String())
			}
		}
	}
	edit := func(mod func(*deviceRecord)) func(*testing.T, *Engine, *browser, string, string) {
		return func(t *testing.T, e *Engine, _ *browser, dc, _ string) { devEdit(t, e, dc, mod) }
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"DEV-02 pending before approval", []step{{code: CodeAuthorizationPending}}},
		{"DEV-03 slow_down grows the interval for good", []step{
			{code: CodeAuthorizationPending},
			// A poll a little early (network jitter) is forgiven.
			{before: edit(back(4500 * time.Millisecond)), code: CodeAuthorizationPending},
			{code: CodeSlowDown},
			// The interval is 10 s now: at the old one (5 s) it is still
			// too fast, and grows to 15 s, then 20 s.
			{before: edit(back(6 * time.Second)), code: CodeSlowDown},
			{before: edit(back(11 * time.Second)), code: CodeSlowDown},
			{before: edit(back(21 * time.Second)), code: CodeAuthorizationPending},
			{before: edit(back(15 * time.Second)), code: CodeSlowDown},
		}},
		{"DEV-04 denied", []step{{code: CodeAuthorizationPending}, {before: decide("deny"), code: CodeAccessDenied},
			{before: edit(back(time.Minute)), code: CodeAccessDenied}}},
		{"DEV-04 expired", []step{{before: edit(func(dr *deviceRecord) { dr.Expires = time.Now().Unix() - 1 }), code: CodeExpiredToken}}},
		{"DEV-05 another client's code", []step{
			{client: "c-tv2", code: CodeInvalidGrant},
			{client: "c-tv-conf", code: CodeInvalidGrant},
			// ... did not spend it, nor touch its interval.
			{code: CodeAuthorizationPending},
			{before: decide("allow"), client: "c-tv2", code: CodeInvalidGrant},
			{},
		}},
		{"DEV-05 works once", []step{{before: decide("allow")}, {code: CodeInvalidGrant}}},
		{"approved tokens even when polled fast", []step{{code: CodeAuthorizationPending}, {before: decide("allow")}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := devEngine(t)
			b := newBrowser(t, e)
			dc, uc := devStart(t, e, "c-tv", "openid read")
			for i, s := range tt.steps {
				if s.before != nil {
					s.before(t, e, b, dc, uc)
				}
				client := s.client
				if client == "" {
					client = "c-tv"
				}
				tr := devPoll(e, client, dc)
				if s.code == "" {
					wantOK(t, tr)
					if tr.str("refresh_token") == "" || tr.str("id_token") == "" || tr.str("scope") != "openid read" {
						t.Errorf("step %d: tokens: %s", i, tr.raw)
					}
					if _, c := verifyIDToken(t, e, tr.str("id_token")); c["aud"] != "c-tv" {
						t.Errorf("ID token aud %v", c["aud"])
					}
					continue
				}
				if tr.status != http.StatusBadRequest || tr.str("error") != s.code {
					t.Fatalf("step %d: got %d %s, want %s", i, tr.status, tr.raw, s.code)
				}
			}
		})
	}
	t.Run("approved then expired", func(t *testing.T) {
		e := devEngine(t)
		dc, uc := devStart(t, e, "c-tv", "read")
		newBrowser(t, e).deviceDecide(uc, "allow")
		devEdit(t, e, dc, func(dr *deviceRecord) { dr.Expires = time.Now().Unix() - 1 })
		wantErr(t, devPoll(e, "c-tv", dc), 400, CodeExpiredToken)
	})
	t.Run("resource", func(t *testing.T) {
		e := devEngine(t, withClients(&Client{ClientSpec: ClientSpec{ID: "c-tv-apis", AuthMethod: AuthNone, GrantTypes: []string{GrantDeviceCode},
			Scopes: []string{"read"}, Audience: []string{"https://a.test", "https://b.test"}}}))
		tr := devRequest(e, url.Values{"client_id": {"c-tv-apis"}, "resource": {"https://a.test"}}, "")
		newBrowser(t, e).deviceDecide(tr.str("user_code"), "allow")
		poll := url.Values{"grant_type": {GrantDeviceCode}, "device_code": {tr.str("device_code")}, "client_id": {"c-tv-apis"}}
		bad := cloneValues(poll)
		bad.Set("resource", "https://b.test")
		wantErr(t, postTokenRaw(e, bad, ""), 400, CodeInvalidTarget)
		// The refusal did not spend the code.
		tr = postTokenRaw(e, poll, "")
		wantOK(t, tr)
		if _, c := segments(t, tr.str("access_token")); c["aud"] != "https://a.test" {
			t.Errorf("aud %v, want the requested resource", c["aud"])
		}
	})
	// Revoking the user or the client after the approval, or removing
	// the user, leaves the approval nothing to issue. carol is a run-time
	// user (config users cannot be removed).
	for name, revoke := range map[string]func(*testing.T, *Engine){
		"revoked user":   func(t *testing.T, e *Engine) { _, err := e.RevokeUser(t.Context(), "carol"); noErr(t, err) },
		"revoked client": func(t *testing.T, e *Engine) { _, err := e.RevokeClient(t.Context(), "c-tv"); noErr(t, err) },
		"removed user":   func(t *testing.T, e *Engine) { noErr(t, e.RemoveUser(t.Context(), "carol")) },
	} {
		t.Run(name, func(t *testing.T) {
			e := devEngine(t)
			noErr(t, e.users.Put(t.Context(), &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true))
			dc, uc := devStart(t, e, "c-tv", "read")
			b := newBrowser(t, e)
			rec := b.login(b.deviceEnter(uc), "carol", "carol-pw")
			st, csrf := formFields(t, rec.Body.String())
			if rec := b.post(DevicePath+"/consent", url.Values{"state": {st}, "csrf": {csrf}, "decision": {"allow"}}); rec.Code != http.StatusOK {
				t.Fatalf("allow: %d", rec.Code)
			}
			revoke(t, e)
			wantErr(t, devPoll(e, "c-tv", dc), 400, CodeInvalidGrant)
			wantErr(t, devPoll(e, "c-tv", dc), 400, CodeInvalidGrant)
		})
	}
	t.Run("refusals", func(t *testing.T) {
		e := devEngine(t)
		wantErr(t, postTokenRaw(e, url.Values{"grant_type": {GrantDeviceCode}, "client_id": {"c-tv"}}, ""), 400, CodeInvalidRequest)
		wantErr(t, devPoll(e, "c-tv", "no-such-code"), 400, CodeInvalidGrant)
		dc, _ := devStart(t, e, "c-tv", "read")
		wantErr(t, postTokenRaw(e, url.Values{"grant_type": {GrantDeviceCode}, "device_code": {dc}, "client_id": {"c-pub"}}, ""), 400, CodeUnauthorizedClient)
	})
}

// The issued tokens: the refresh token refreshes (per the client's
// grant types), a DPoP proof or a client certificate on the poll binds
// the access token, and the refresh token of the public client with it.
func TestDeviceTokens(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	approved := func() string {
		dc, uc := devStart(t, e, "c-tv", "openid read")
		newBrowser(t, e).deviceDecide(uc, "allow")
		return dc
	}
	form := func(dc string) url.Values { return url.Values{"grant_type": {GrantDeviceCode}, "device_code": {dc}} }

	tr := postTokenDPoP(e, "c-tv", form(approved()))
	wantOK(t, tr)
	if tr := refresh(e, "c-tv", tr.str("refresh_token")); tr.status != http.StatusOK {
		t.Errorf("refresh: %d %s", tr.status, tr.raw)
	}

	k := newProofKey(t)
	tr = postTokenDPoP(e, "c-tv", form(approved()), k.proof(t, nil))
	wantOK(t, tr)
	if _, c := segments(t, tr.str("access_token")); tr.str("token_type") != "DPoP" || c["cnf"].(map[string]any)["jkt"] != k.jkt {
		t.Errorf("DPoP poll: token_type %q, cnf %v", tr.str("token_type"), c["cnf"])
	}
	// The public client's refresh token is bound to the DPoP key.
	wantErr(t, refresh(e, "c-tv", tr.str("refresh_token")), 400, CodeInvalidGrant)

	cert := certtest.Issue(t, nil, certtest.Names{CN: "tv"})
	tr = postTokenCert(e, "c-tv", form(approved()), cert)
	wantOK(t, tr)
	if _, c := segments(t, tr.str("access_token")); c["cnf"] == nil || c["cnf"].(map[string]any)["x5t#S256"] == nil {
		t.Errorf("certificate poll: cnf %v", c["cnf"])
	}

	// c-tv2 has no refresh_token grant: no refresh token, no ID token
	// without openid.
	dc, uc := devStart(t, e, "c-tv2", "read")
	newBrowser(t, e).deviceDecide(uc, "allow")
	tr = devPoll(e, "c-tv2", dc)
	wantOK(t, tr)
	if tr.str("refresh_token") != "" || tr.str("id_token") != "" {
		t.Errorf("c-tv2: %s", tr.raw)
	}
}

// The verification page: the code from verification_uri_complete is
// filled in but never acted on until the user confirms; sign-in comes
// in between when the browser has none; the consent page names the
// client, its scopes and the code; every form is CSRF-protected; and a
// code is decided once.
func TestDeviceVerificationPage(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	dc, uc := devStart(t, e, "c-tv", "openid read")
	b := newBrowser(t, e)
	page := b.get(DevicePath + "?user_code=" + url.QueryEscape(uc))
	body := page.Body.String()
	if !strings.Contains(body, `value="`+uc+`"`) || isConsentPage(page) || page.Header().Get("Content-Security-Policy") == "" {
		t.Fatalf("prefilled page:\n%s", body)
	}
	wantErr(t, devPoll(e, "c-tv", dc), 400, CodeAuthorizationPending)
	// Something that is no code is not echoed.
	if p := b.get(DevicePath + "?user_code=%3Cscript%3E"); strings.Contains(p.Body.String(), "script") {
		t.Errorf("echoed:\n%s", p.Body.String())
	}
	// No CSRF field, or another browser's: 403.
	state, _ := formFields(t, body)
	if rec := b.post(DevicePath, url.Values{"state": {state}, "user_code": {uc}}); rec.Code != http.StatusForbidden {
		t.Errorf("without csrf: %d", rec.Code)
	}
	// Typed in lower case with spaces: the same code. Not signed in yet:
	// the login page, then consent.
	typed := strings.ToLower(strings.ReplaceAll(uc, "-", " "))
	rec := b.deviceEnter(uc, typed)
	if !isLoginPage(rec) || !strings.Contains(rec.Body.String(), "Living Room TV") {
		t.Fatalf("want the login page naming the client:\n%s", rec.Body.String())
	}
	rec = b.login(rec, "alice", "wrong")
	if !isLoginPage(rec) {
		t.Fatalf("wrong password: %d", rec.Code)
	}
	rec = b.login(rec, "alice", "alice-pw")
	cbody := rec.Body.String()
	if !isConsentPage(rec) || !strings.Contains(cbody, "Living Room TV") || !strings.Contains(cbody, "<code>read</code>") ||
		!strings.Contains(cbody, uc) || !strings.Contains(cbody, `action="`+DevicePath+`/consent"`) {
		t.Fatalf("consent page:\n%s", cbody)
	}
	// Another browser cannot post this consent form.
	st, csrf := formFields(t, cbody)
	other := newBrowser(t, e)
	if rec := other.post(DevicePath+"/consent", url.Values{"state": {st}, "csrf": {csrf}, "decision": {"allow"}}); rec.Code != http.StatusForbidden {
		t.Errorf("another browser's consent: %d", rec.Code)
	}
	wantErr(t, devPoll(e, "c-tv", dc), 400, CodeSlowDown)
	if rec := b.post(DevicePath+"/consent", url.Values{"state": {st}, "csrf": {csrf}, "decision": {"allow"}}); rec.Code != http.StatusOK {
		t.Fatalf("allow: %d\n%s", rec.Code, rec.Body.String())
	}
	// Decided once: the same form again, or the code entered again.
	if rec := b.post(DevicePath+"/consent", url.Values{"state": {st}, "csrf": {csrf}, "decision": {"deny"}}); rec.Code != http.StatusBadRequest {
		t.Errorf("second decision: %d", rec.Code)
	}
	if rec := b.deviceEnter(uc); isConsentPage(rec) || !strings.Contains(rec.Body.String(), e.web.text.DeviceCodeWrong) {
		t.Errorf("a decided code entered again:\n%s", rec.Body.String())
	}
	wantOK(t, devPoll(e, "c-tv", dc))
	// Signed in already: the code goes straight to consent, which is
	// shown even for a client the user allowed before.
	_, uc2 := devStart(t, e, "c-tv", "read")
	if rec := b.deviceEnter(uc2); !isConsentPage(rec) {
		t.Errorf("signed in: want consent, got\n%s", rec.Body.String())
	}
}

// DEV-06: user codes resist guessing: 8 characters of 20 consonants,
// read case-insensitively without dashes or spaces, and an address that
// keeps guessing gets 429.
func TestDeviceUserCodeThrottle(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	_, uc := devStart(t, e, "c-tv", "read")
	b := newBrowser(t, e)
	b.clientIP, b.tls = "192.0.2.7", true
	var got429 int
	for i := range 30 {
		rec := b.deviceEnter("BBBB-BBBB")
		switch rec.Code {
		case http.StatusOK:
			if got429 > 0 {
				t.Fatalf("guess %d answered 200 after a 429", i)
			}
		case http.StatusTooManyRequests:
			if rec.Header().Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			got429++
		default:
			t.Fatalf("guess %d: %d", i, rec.Code)
		}
	}
	if got429 < 20 {
		t.Fatalf("%d of 30 wrong codes got 429", got429)
	}
	// Locked out, the right code does not help the guesser either...
	if rec := b.deviceEnter(uc); rec.Code != http.StatusTooManyRequests {
		t.Errorf("the right code while locked: %d", rec.Code)
	}
	// ... while another address is not affected.
	other := newBrowser(t, e)
	other.clientIP, other.tls = "192.0.2.8", true
	if rec := other.deviceEnter(uc); !isLoginPage(rec) {
		t.Errorf("another address: %d\n%s", rec.Code, rec.Body.String())
	}
}

// DEV-06 over IPv6: the guesses of one /64 count together, so a client
// cannot step through its own addresses to start afresh (attack on
// issue 16); another /64 is not affected.
func TestDeviceUserCodeThrottleIPv6(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	_, uc := devStart(t, e, "c-tv", "read")
	var got429 int
	for i := range 30 {
		b := newBrowser(t, e)
		b.clientIP, b.tls = fmt.Sprintf("2001:db8:1:2::%x", i+1), true
		if rec := b.deviceEnter("BBBB-BBBB"); rec.Code == http.StatusTooManyRequests {
			got429++
		}
	}
	if got429 < 20 {
		t.Fatalf("%d of 30 wrong codes from one /64 got 429", got429)
	}
	other := newBrowser(t, e)
	other.clientIP, other.tls = "2001:db8:1:3::1", true
	if rec := other.deviceEnter(uc); !isLoginPage(rec) {
		t.Errorf("another /64: %d", rec.Code)
	}
}

// The device authorization endpoint stores a record per request: a public
// client's requests from one address are limited as PAR's are.
func TestDeviceAuthorizationLimit(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	var got429 int
	for range publicPushLimit + 5 {
		tr := devRequest(e, url.Values{"client_id": {"c-tv"}, "scope": {"read"}}, "")
		switch tr.status {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			got429++
		default:
			t.Fatalf("device authorization: %d %s", tr.status, tr.raw)
		}
	}
	if got429 == 0 {
		t.Fatalf("no 429 after %d device authorizations from one address", publicPushLimit+5)
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7": "192.0.2.7", "::ffff:192.0.2.7": "192.0.2.7", "2001:db8:1:2::5": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64", "fe80::1%eth0": "fe80::/64", "not-an-ip": "not-an-ip",
	} {
		if got := addrKey(in); got != want {
			t.Errorf("addrKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUserCodes(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		c := newUserCode()
		if !userCodeRE.MatchString(displayUserCode(c)) {
			t.Fatalf("user code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 999 {
		t.Errorf("%d distinct of 1000", len(seen))
	}
	for in, want := range map[string]string{
		"BCDF-GHJK": "BCDFGHJK", "bcdf ghjk": "BCDFGHJK", " b-c-d-f-g-h-j-k ": "BCDFGHJK", "BCDFGHJK": "BCDFGHJK",
		"BCDF-GHJ": "", "BCDF-GHJKL": "", "ABCD-EFGH": "", "BCDF-GHJ1": "", "BCDF\u00a0GHJK": "", "": "",
	} {
		if got, ok := normalizeUserCode(in); got != want || ok != (want != "") {
			t.Errorf("normalizeUserCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestDeviceConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg DeviceConfig
		ok  bool
	}{
		{DeviceConfig{}, true},
		{DeviceConfig{CodeTTL: time.Minute, Interval: time.Second}, true},
		{DeviceConfig{CodeTTL: 30 * time.Second}, false},
		{DeviceConfig{CodeTTL: 2 * time.Hour}, false},
		{DeviceConfig{Interval: 1500 * time.Millisecond}, false},
		{DeviceConfig{Interval: 2 * time.Minute}, false},
	} {
		_, err := startEngine(t, withConfig(func(c *Config) { c.Device = tt.cfg }))
		if (err == nil) != tt.ok {
			t.Errorf("%+v: %v, want ok=%v", tt.cfg, err, tt.ok)
		}
	}
	e := devEngine(t, withConfig(func(c *Config) { c.Device = DeviceConfig{CodeTTL: 15 * time.Minute, Interval: 2 * time.Second} }))
	tr := devRequest(e, url.Values{"client_id": {"c-tv"}}, "")
	if tr.body["expires_in"] != 900.0 || tr.body["interval"] != 2.0 {
		t.Errorf("configured: %s", tr.raw)
	}
}

// The metadata lists the endpoint and the grant when a client may use
// it, and not otherwise.
func TestDeviceMetadata(t *testing.T) {
	t.Parallel()
	doc := func(e *Engine) map[string]any {
		r := httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server", nil)
		var m map[string]any
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, r)
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := doc(devEngine(t))
	if m["device_authorization_endpoint"] != testIssuer+DeviceAuthorizationPath ||
		!strings.Contains(mustJSON(t, m["grant_types_supported"]), GrantDeviceCode) {
		t.Errorf("with device clients: %v %v", m["device_authorization_endpoint"], m["grant_types_supported"])
	}
	if m := doc(newEngine(t)); m["device_authorization_endpoint"] != nil {
		t.Errorf("without device clients: %v", m["device_authorization_endpoint"])
	}
}

// The device pages take every word from the table of pages.Text, as
// TestPagesStringsFromOneTable checks for the others.
func TestDevicePagesStringsFromOneTable(t *testing.T) {
	t.Parallel()
	e := devEngine(t, withThrottle())
	markText(e, "openid", "read")
	_, uc := devStart(t, e, "c-tv", "openid read")
	_, uc2 := devStart(t, e, "c-tv", "read")
	b := newBrowser(t, e)
	entry := b.get(DevicePath)
	wrong := b.deviceEnter("BBBB-BBBB")
	login := b.deviceEnter(uc)
	consent := b.login(login, "alice", "alice-pw")
	state, csrf := formFields(t, consent.Body.String())
	allowed := b.post(DevicePath+"/consent", url.Values{"state": {state}, "csrf": {csrf}, "decision": {"allow"}})
	gone := b.post(DevicePath+"/consent", url.Values{"state": {state}, "csrf": {csrf}, "decision": {"allow"}})
	denied := b.deviceDecide(uc2, "deny")
	put := httptest.NewRequest(http.MethodPut, DevicePath, nil)
	put.RemoteAddr = loopbackAddr
	method := httptest.NewRecorder()
	e.serveDevice(method, put)
	locked := wrong
	for range 5 {
		locked = b.deviceEnter("BBBB-BBBB")
	}
	if locked.Code != http.StatusTooManyRequests {
		t.Fatalf("locked: %d", locked.Code)
	}
	var shown []string
	for name, rec := range map[string]*httptest.ResponseRecorder{"entry": entry, "wrong": wrong, "consent": consent, "allowed": allowed,
		"gone": gone, "denied": denied, "method": method, "locked": locked} {
		body := rec.Body.String()
		checkMarkedPage(t, name, body, "Living Room TV", "c-tv", "alice")
		shown = append(shown, body)
	}
	for _, want := range []string{"⟦DeviceTitle⟧", "⟦DeviceLead⟧", "⟦UserCodeLabel⟧", "⟦ContinueButton⟧", "⟦DeviceCheckCode⟧",
		"⟦DeviceApproved⟧", "⟦DeviceDenied⟧", "⟦DeviceCodeWrong⟧", "⟦DeviceThrottled⟧", "⟦DeviceCodeGone⟧", "⟦DeviceMethods⟧"} {
		if !strings.Contains(strings.Join(shown, ""), want) {
			t.Errorf("no page shows %s", want)
		}
	}
}

// A client registered at run time (admin API, CLI) may use the grant:
// its handler does not depend on the configured clients.
func TestDeviceRuntimeClient(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	if _, err := e.AddClient(t.Context(), &Client{ClientSpec: ClientSpec{ID: "rt-tv", AuthMethod: AuthNone,
		GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}, Scopes: []string{"read"}}}); err != nil {
		t.Fatal(err)
	}
	dc, uc := devStart(t, e, "rt-tv", "read")
	newBrowser(t, e).deviceDecide(uc, "allow")
	if tr := devPoll(e, "rt-tv", dc); tr.status != http.StatusOK || tr.str("refresh_token") == "" {
		t.Fatalf("run-time client: %d %s", tr.status, tr.raw)
	}
}

// pollRace polls dc from n goroutines at once, on the engines in turn,
// and returns how many got tokens; every other answer must be
// invalid_grant.
func pollRace(t *testing.T, engines []*Engine, dc string, n int) int {
	t.Helper()
	results := make(chan tokenResult, n)
	var start sync.WaitGroup
	start.Add(1)
	for i := range n {
		go func() {
			start.Wait()
			results <- devPoll(engines[i%len(engines)], "c-tv", dc)
		}()
	}
	start.Done()
	won := 0
	for range n {
		tr := <-results
		switch {
		case tr.status == http.StatusOK:
			won++
		case tr.str("error") != CodeInvalidGrant:
			t.Errorf("a losing poll got %d %s", tr.status, tr.raw)
		}
	}
	return won
}

// DEV-05 under concurrency: of many polls racing for an approved code,
// exactly one gets tokens (the code is spent in the transaction that
// starts the grant).
func TestDevicePollRace(t *testing.T) {
	t.Parallel()
	e := devEngine(t)
	for range 3 {
		dc, uc := devStart(t, e, "c-tv", "read")
		newBrowser(t, e).deviceDecide(uc, "allow")
		if won := pollRace(t, []*Engine{e}, dc, 8); won != 1 {
			t.Fatalf("%d polls got tokens, want 1", won)
		}
	}
}

// testDeviceAcrossNodes (PostgreSQL, TestPostgresCluster): a device
// authorized at one node is approved at another, and of polls racing at
// both, one gets tokens.
func testDeviceAcrossNodes(t *testing.T, stores []*postgres.Store) {
	engines := make([]*Engine, len(stores))
	for i, st := range stores {
		engines[i] = newEngine(t, withStore(st), withClients(devClients()...), withConfig(func(c *Config) {
			c.KeyEncryptionKey = []byte(clusterKEK)
			c.SharedStore = true
		}))
	}
	a, b := engines[0], engines[1]
	dc, uc := devStart(t, a, "c-tv", "openid read")
	wantErr(t, devPoll(b, "c-tv", dc), 400, CodeAuthorizationPending)
	wantErr(t, devPoll(a, "c-tv", dc), 400, CodeSlowDown)
	newBrowser(t, b).deviceDecide(uc, "allow")
	if won := pollRace(t, engines, dc, 6); won != 1 {
		t.Fatalf("%d polls got tokens across the nodes, want 1", won)
	}
	dc, uc = devStart(t, b, "c-tv", "read")
	newBrowser(t, a).deviceDecide(uc, "deny")
	wantErr(t, devPoll(b, "c-tv", dc), 400, CodeAccessDenied)
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
