package grants

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// POST /oauth/authorize reads at most MaxBodyBytes, like the token
// endpoint: a larger body is 413, declared or chunked.
func TestAuthorizePostBodyCapped(t *testing.T) {
	e := newEngine(t)
	_, ch := newPKCE()
	q := authzQuery("c-web", ch).Encode()
	for _, chunked := range []bool{false, true} {
		body := q + "&pad=" + strings.Repeat("a", MaxBodyBytes)
		r, _ := http.NewRequest(http.MethodPost, "https://as.test"+AuthorizePath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if chunked {
			r.ContentLength = -1
		}
		b := newBrowser(t, e)
		rec := b.do(r)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: %d-byte authorization request body: %d, want 413", chunked, len(body), rec.Code)
		}
	}
	// A normal POST still works.
	r, _ := http.NewRequest(http.MethodPost, "https://as.test"+AuthorizePath, strings.NewReader(q))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := newBrowser(t, e).do(r); !isLoginPage(rec) {
		t.Fatalf("a small POST authorization request: %d, want the login page", rec.Code)
	}
}

// The sign-in, consent and sign-out forms are capped like POST
// /oauth/authorize: a larger body is 413, declared or chunked, not 400.
func TestFormPostBodyCapped(t *testing.T) {
	e := newEngine(t)
	for _, path := range []string{AuthorizePath + "/login", AuthorizePath + "/consent", LogoutPath} {
		for _, chunked := range []bool{false, true} {
			body := "csrf=x&pad=" + strings.Repeat("a", 9<<20)
			r, _ := http.NewRequest(http.MethodPost, "https://as.test"+path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if chunked {
				r.ContentLength = -1
			}
			if rec := newBrowser(t, e).do(r); rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s chunked=%v: %d-byte body: %d, want 413", path, chunked, len(body), rec.Code)
			}
		}
	}
}

// A password change keeps what it does not give (the claims), and ends
// everything the old password opened: the user's refresh tokens, access
// tokens and sign-in sessions (RFC 9700 §4.14.2). A change of claims only
// revokes nothing.
func TestPasswordChangeKeepsClaimsRevokesGrants(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	claims := map[string]string{"email": "carol@example.test"}
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("carol-pw"), Claims: claims}, true); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e)
	code, verifier := b.getCodeAs("c-web", "carol", "carol-pw")
	tr := redeem(e, "c-web", code, verifier)
	wantOK(t, tr)
	rt, at := tr.str("refresh_token"), tr.str("access_token")

	// Claims only: nothing is revoked, and the hash stays.
	if err := e.UpdateUser(ctx, &User{Name: "carol", Claims: map[string]string{"email": "c2@example.test"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Authenticate(ctx, "carol", "carol-pw"); err != nil {
		t.Fatalf("a claims-only change lost the password: %v", err)
	}
	tr = refresh(e, "c-web", rt)
	wantOK(t, tr)
	rt, at = tr.str("refresh_token"), tr.str("access_token")

	// Password only: the claims stay, the grants and sessions end.
	if err := e.UpdateUser(ctx, &User{Name: "carol", PasswordHash: testHash("carol-new")}); err != nil {
		t.Fatal(err)
	}
	u, err := e.users.Lookup(ctx, "carol")
	if err != nil || u.Claims["email"] != "c2@example.test" {
		t.Fatalf("a password change dropped the claims: %+v, %v", u, err)
	}
	wantErr(t, refresh(e, "c-web", rt), http.StatusBadRequest, CodeInvalidGrant)
	if verifies(e, at) {
		t.Fatalf("an access token issued before the password change still verifies")
	}
	_, ch := newPKCE()
	if page := b.get(AuthorizePath + "?" + authzQuery("c-web", ch).Encode()); !isLoginPage(page) {
		t.Fatalf("the sign-in session outlived the password change: %d", page.Code)
	}
	// The new password works.
	code, verifier = newBrowser(t, e).getCodeAs("c-web", "carol", "carol-new")
	wantOK(t, redeem(e, "c-web", code, verifier))
}

// getCodeAs runs the authorization flow as user and returns the code.
func (b *browser) getCodeAs(clientID, user, pw string) (code, verifier string) {
	b.t.Helper()
	verifier, ch := newPKCE()
	loc := b.authorize(authzQuery(clientID, ch), user, pw)
	code = loc.Query().Get("code")
	if code == "" {
		b.t.Fatalf("no code: %s", loc)
	}
	return code, verifier
}

// RFC 8252 §8.6: anyone on the machine can claim a public client's
// loopback redirect, so a public client never gets a code without the
// user acting in that request: a remembered consent (or the client being
// trusted) does not skip the consent page, and prompt=none is refused.
func TestPublicClientNeverSilent(t *testing.T) {
	e := newEngine(t)
	b := newBrowser(t, e)
	// alice signs in and allows c-pub once (the interaction).
	code, verifier := b.getCode("c-pub")
	wantOK(t, redeem(e, "c-pub", code, verifier))

	for _, client := range []string{"c-pub", "c-multi"} { // untrusted, trusted
		_, ch := newPKCE()
		// Signed in, consent remembered, prompt=none: an error, no code.
		rec := b.get(AuthorizePath + "?" + authzQuery(client, ch, "prompt", "none").Encode())
		loc := mustLocation(t, rec)
		if loc.Query().Get("code") != "" || (loc.Query().Get("error") != "consent_required" && loc.Query().Get("error") != "interaction_required") {
			t.Fatalf("%s: prompt=none with a session and remembered consent redirected to %s", client, loc)
		}
		// Without prompt=none the user must act on the consent page.
		rec = b.get(AuthorizePath + "?" + authzQuery(client, ch).Encode())
		if !isConsentPage(rec) {
			t.Fatalf("%s: a public client got past consent without interaction: %d %s", client, rec.Code, rec.Header().Get("Location"))
		}
		loc = mustLocation(t, b.consent(rec, "allow"))
		if loc.Query().Get("code") == "" {
			t.Fatalf("%s: allowing on the consent page gave no code: %s", client, loc)
		}
	}
	// A confidential client keeps the remembered consent and prompt=none.
	code, _ = b.getCode("c-web")
	_, ch := newPKCE()
	loc := mustLocation(t, b.get(AuthorizePath+"?"+authzQuery("c-web", ch, "prompt", "none").Encode()))
	if code == "" || loc.Query().Get("code") == "" {
		t.Fatalf("a confidential client lost silent re-authorization: %s", loc)
	}
}

// A sibling subdomain can set a cookie of the same name for the parent
// domain (or a more specific path), which the browser then sends beside
// ours, first. A request carrying one of our cookie names twice is
// refused, on every page that reads them.
func TestDuplicateCookieRefused(t *testing.T) {
	e := newEngine(t)
	b := newBrowser(t, e)
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-web", ch).Encode())
	if !isLoginPage(page) {
		t.Fatalf("no login page: %d", page.Code)
	}
	state, csrf := formFields(t, page.Body.String())
	tossed := func(r *http.Request, name string) *http.Request {
		// The attacker's cookie comes first, ours after it.
		if len(r.CookiesNamed(name)) == 0 {
			r.AddCookie(&http.Cookie{Name: name, Value: strings.Repeat("B", 43)})
		}
		r.Header.Set("Cookie", name+"="+strings.Repeat("A", 43)+"; "+r.Header.Get("Cookie"))
		return r
	}
	post := func(name string) *httptest.ResponseRecorder {
		form := url.Values{"state": {state}, "csrf": {csrf}, "username": {"alice"}, "password": {"alice-pw"}}
		r := httptest.NewRequest(http.MethodPost, AuthorizePath+"/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = loopbackAddr
		for _, c := range b.cookies {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		rec := httptest.NewRecorder()
		e.serveLogin(rec, tossed(r, name))
		return rec
	}
	for _, name := range []string{csrfCookie, sessionCookie} {
		if rec := post(name); rec.Code != http.StatusBadRequest || setCookie(t, rec, sessionCookie) != nil {
			t.Fatalf("login post with %s twice: %d", name, rec.Code)
		}
	}
	for _, target := range []string{AuthorizePath + "?" + authzQuery("c-web", ch).Encode(), LogoutPath} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = loopbackAddr
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: strings.Repeat("B", 43)})
		rec := httptest.NewRecorder()
		b.handler(r.URL.Path)(rec, tossed(r, sessionCookie))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("GET %s with the session cookie twice: %d", target, rec.Code)
		}
	}
	// One of each still works.
	if rec := b.login(page, "alice", "alice-pw"); rec.Code != http.StatusFound && !isConsentPage(rec) {
		t.Fatalf("a normal login: %d", rec.Code)
	}
}

// An unknown user must cost what a known one costs: the dummy hash has
// the cost of the configured users' hashes (the highest, when they
// differ), is made when the engine is built, not on the first unknown
// name, and a stored user hashed at another cost is rehashed to it on a
// successful sign-in, so that every name answers in the same time.
func TestDummyHashMatchesUserCost(t *testing.T) {
	cheap := dummyHashFor
	dummyHashFor = realDummyHashFor
	defer func() { dummyHashFor = cheap }()
	const cost = bcrypt.MinCost + 1
	h, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), cost)
	e := newEngine(t, withConfig(func(c *Config) {
		c.Users = []*User{{Name: "alice", PasswordHash: string(h)}}
	}))
	if got, err := bcrypt.Cost(e.users.dummy()); err != nil || got != cost {
		t.Fatalf("dummy hash at start: cost %d, %v; want %d, made before any unknown user", got, err, cost)
	}
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Authenticate(ctx, "carol", "carol-pw"); err != nil {
		t.Fatal(err)
	}
	u, err := e.users.Lookup(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := bcrypt.Cost([]byte(u.PasswordHash)); got != cost {
		t.Fatalf("stored user's hash after sign-in: cost %d, want %d", got, cost)
	}
	if _, err := e.users.Authenticate(ctx, "carol", "carol-pw"); err != nil {
		t.Fatalf("the rehashed password: %v", err)
	}
}

// A user whose hash has a lower cost than the engine's (a run-time user
// added with a cheaper hash, until a successful sign-in rehashes it) must
// not answer a wrong password faster than an unknown name: the dummy hash
// at the engine's cost is checked too.
func TestLowCostUserCostsTheDummy(t *testing.T) {
	cheap := dummyHashFor
	dummyHashFor = realDummyHashFor
	defer func() { dummyHashFor = cheap }()
	const cost = bcrypt.MinCost + 1
	h, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), cost)
	e := newEngine(t, withConfig(func(c *Config) {
		c.Users = []*User{{Name: "alice", PasswordHash: string(h)}}
	}))
	ctx := context.Background()
	if err := e.users.Put(ctx, &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true); err != nil {
		t.Fatal(err)
	}
	var compared []string
	orig := compareHash
	compareHash = func(hash, pw []byte) error {
		compared = append(compared, string(hash))
		return orig(hash, pw)
	}
	defer func() { compareHash = orig }()
	for _, tc := range []struct {
		name, user, pw string
		dummy          bool
	}{
		{"low-cost user, wrong password", "carol", "wrong", true},
		{"unknown user", "mallory", "wrong", true},
		{"user at the engine's cost, wrong password", "alice", "wrong", false},
	} {
		compared = nil
		if _, err := e.users.Authenticate(ctx, tc.user, tc.pw); !errors.Is(err, ErrUserNotFound) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := slices.Contains(compared, string(e.users.dummy())); got != tc.dummy {
			t.Errorf("%s: dummy hash checked = %v, want %v (compared %d hashes)", tc.name, got, tc.dummy, len(compared))
		}
	}
}

// A stored user hashed at a higher cost than the config users raises the
// cost every check runs at (the dummy's included), at once when stored
// and at the next start, so that the user's wrong passwords cost what an
// unknown name's do.
func TestStoredCostlierUserRaisesTheCost(t *testing.T) {
	st := openStore(t)
	start := func() *Engine {
		e, err := NewEngine(testConfig())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background(), st, nil); err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := start()
	base, _ := e.users.costs()
	h, _ := bcrypt.GenerateFromPassword([]byte("carol-pw"), base+1)
	if err := e.users.Put(context.Background(), &User{Name: "carol", PasswordHash: string(h)}, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.users.costs(); got != base+1 {
		t.Fatalf("cost after storing a costlier user: %d, want %d", got, base+1)
	}
	if got, _ := start().users.costs(); got != base+1 {
		t.Fatalf("cost at the next start: %d, want %d", got, base+1)
	}
}
