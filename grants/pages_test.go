package grants

import (
	"html"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	pages "github.com/oauthgate/caddy-oauthgate/grants/web"
)

// pagesEngine has a c-web client with a display name, a logo and links,
// and one operator scope description.
func pagesEngine(t *testing.T) *Engine {
	return newEngine(t, withConfig(func(c *Config) {
		for _, cl := range c.Clients {
			if cl.ID == "c-web" {
				cl.Name = "Billing <Portal>"
				cl.LogoURI = "https://client.test/logo.png"
				cl.ClientURI = "https://client.test/"
				cl.PolicyURI = "https://client.test/privacy"
			}
		}
		c.Web.ScopeDescriptions = map[string]string{"read": "Read your invoices"}
	}))
}

// The consent page names the client by its display name (the id small
// below it), links its site and policy, shows its logo (which the CSP
// then allows), and describes each scope, with the raw scope only when
// there is no description.
func TestConsentPageShowsClientAndScopes(t *testing.T) {
	e := pagesEngine(t)
	b := newBrowser(t, e)
	rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "scope", "openid email read write").Encode())
	rec = b.login(rec, "alice", "alice-pw")
	if !isConsentPage(rec) {
		t.Fatalf("want the consent page:\n%s", rec.Body.String())
	}
	body := rec.Body.String()
	for _, want := range []string{
		`<p class="client-name" id="client-name"><bdi>Billing &lt;Portal&gt;</bdi></p>`,
		`<code>c-web</code>`,
		`<a href="https://client.test/" rel="noopener noreferrer" id="client-uri">Website</a>`,
		`<a href="https://client.test/privacy" rel="noopener noreferrer" id="policy-uri">Privacy policy</a>`,
		`<img class="client-logo" src="https://client.test/logo.png"`,
		"<strong><bdi>Billing &lt;Portal&gt;</bdi></strong> asks to:",
		">Know who you are</li>", ">See your email address</li>", ">Read your invoices</li>",
		"<li><code>write</code></li>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<bdi>c-web</bdi>") {
		t.Errorf("the client is named by its id")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' https://client.test/logo.png;") {
		t.Errorf("CSP does not allow the client's logo: %s", csp)
	}
	// A client without a name is named by its id, and no logo is allowed.
	b = newBrowser(t, e)
	rec = b.login(b.get(AuthorizePath+"?"+authzQuery("c-basic", newChallenge()).Encode()), "alice", "alice-pw")
	if isConsentPage(rec) {
		if !strings.Contains(rec.Body.String(), `id="client-name"><bdi>c-basic</bdi></p>`) {
			t.Errorf("client without a name:\n%s", rec.Body.String())
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self';") {
			t.Errorf("CSP = %s", csp)
		}
	}
}

// A login_hint (or a session) names the user: the name is filled in, the
// focus is on the password, and "Not alice? Sign in as someone else"
// empties the form. After a failed attempt the focus is on the password.
func TestLoginPageKnownUserAndFocus(t *testing.T) {
	e := pagesEngine(t)
	b := newBrowser(t, e)
	rec := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "login_hint", "alice").Encode())
	body := rec.Body.String()
	if !strings.Contains(body, "Not <strong><bdi>alice</bdi></strong>?") || !strings.Contains(body, `id="someone-else"`) {
		t.Fatalf("no \"Not alice?\":\n%s", body)
	}
	if !autofocused(body, "password") || autofocused(body, "username") {
		t.Fatalf("with a known user the focus belongs on the password:\n%s", body)
	}
	if !strings.Contains(body, "<strong><bdi>Billing &lt;Portal&gt;</bdi></strong> asks you to sign in.") {
		t.Fatalf("login page does not name the client:\n%s", body)
	}
	state, csrf := formFields(t, body)
	rec = b.post(AuthorizePath+"/login", url.Values{"state": {state}, "csrf": {csrf}, "switch": {"1"}})
	body = rec.Body.String()
	if !isLoginPage(rec) || strings.Contains(body, "Not <strong>") || !strings.Contains(body, `value="" required autofocus`) || strings.Contains(body, `id="error"`) {
		t.Fatalf("\"Sign in as someone else\" should show an empty form:\n%s", body)
	}
	rec = b.login(rec, "bob", "wrong")
	body = rec.Body.String()
	if !strings.Contains(body, "The user name or password is wrong.") || !autofocused(body, "password") || autofocused(body, "username") ||
		!strings.Contains(body, `aria-invalid="true" aria-describedby="error"`) || strings.Contains(body, "Not <strong>") {
		t.Fatalf("after a failed attempt the focus belongs on the password:\n%s", body)
	}
	// An existing session names its user when prompt=login asks again.
	b = signedIn(t, e)
	rec = b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "prompt", "login").Encode())
	if !strings.Contains(rec.Body.String(), "Not <strong><bdi>alice</bdi></strong>?") {
		t.Fatalf("the session's user is not named:\n%s", rec.Body.String())
	}
	if rec := b.login(rec, "alice", "alice-pw"); !isConsentPage(rec) {
		t.Fatalf("signing in as the known user: %d\n%s", rec.Code, rec.Body.String())
	}
}

func autofocused(body, id string) bool {
	return regexp.MustCompile(`<input id="` + id + `"[^>]* autofocus[ >]`).MatchString(body)
}

// The sign-out confirmation has a Cancel that keeps the session and does
// not send the browser to the application.
func TestLogoutCancel(t *testing.T) {
	e := pagesEngine(t)
	b := signedIn(t, e)
	page := b.get(logoutQuery("client_id", "c-web", "post_logout_redirect_uri", "https://client.test/bye", "state", "s"))
	if !strings.Contains(page.Body.String(), `id="cancel"`) {
		t.Fatalf("no Cancel:\n%s", page.Body.String())
	}
	state, csrf := formFields(t, page.Body.String())
	rec := b.post(LogoutPath+"/confirm", url.Values{"state": {state}, "csrf": {csrf}, "decision": {"cancel"}})
	if rec.Code != http.StatusOK || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), "You are still signed in.") {
		t.Fatalf("cancel: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body.String())
	}
	if setCookie(t, rec, sessionCookie) != nil || !stillSignedIn(t, b) {
		t.Fatalf("cancel signed out")
	}
}

// Every page has lang, header and main landmarks and labelled inputs, and
// every word it shows comes from the Text table: with every string of
// the table replaced by a marker, nothing else is left on the page but
// the data (names, scopes) and punctuation.
// markText makes every string of e's pages a marker ⟦Name⟧ (and the
// descriptions of the scopes given ⟦scope⟧), in language x-test.
func markText(e *Engine, scopes ...string) {
	marked := pages.English
	v := reflect.ValueOf(&marked).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String && v.Type().Field(i).Name != "Lang" {
			f.SetString("⟦" + v.Type().Field(i).Name + "⟧")
		}
	}
	marked.Lang = "x-test"
	e.web.text = &marked
	e.web.scopes = map[string]string{}
	for _, sc := range scopes {
		e.web.scopes[sc] = "⟦" + sc + "⟧"
	}
}

// checkMarkedPage checks a page rendered with markText: the frame, a
// label for every input, and no text but markers and the data shown.
func checkMarkedPage(t *testing.T, name, body string, data ...string) {
	t.Helper()
	for _, want := range []string{`<html lang="x-test">`, "<header>", "<main>"} {
		if !strings.Contains(body, want) {
			t.Errorf("%s page lacks %s", name, want)
		}
	}
	for _, id := range regexp.MustCompile(`<input id="([^"]+)"`).FindAllStringSubmatch(body, -1) {
		if !strings.Contains(body, `<label for="`+id[1]+`">`) {
			t.Errorf("%s page: input %s has no label", name, id[1])
		}
	}
	text := regexp.MustCompile(`(?s)<title>.*?</title>|<[^>]*>`).ReplaceAllString(body, " ")
	text = html.UnescapeString(text)
	text = regexp.MustCompile(`⟦[A-Za-z]+⟧`).ReplaceAllString(text, " ")
	for _, d := range data {
		text = strings.ReplaceAll(text, d, " ")
	}
	if rest := strings.Trim(text, " \n\t·:"); rest != "" {
		t.Errorf("%s page shows text not from the table: %q", name, rest)
	}
}

func TestPagesStringsFromOneTable(t *testing.T) {
	e := pagesEngine(t)
	markText(e, "openid", "email")

	b := newBrowser(t, e)
	var shown []string
	login := b.get(AuthorizePath + "?" + authzQuery("c-web", newChallenge(), "scope", "openid email", "login_hint", "alice").Encode())
	failed := b.login(login, "alice", "wrong")
	consent := b.login(failed, "alice", "alice-pw")
	logout := b.get(logoutQuery())
	state, csrf := formFields(t, logout.Body.String())
	cancelled := b.post(LogoutPath+"/confirm", url.Values{"state": {state}, "csrf": {csrf}, "decision": {"cancel"}})
	done := b.confirmLogout(logout)
	errPage := b.get(AuthorizePath + "?client_id=nosuch")
	for name, rec := range map[string]string{"login": login.Body.String(), "failed": failed.Body.String(), "consent": consent.Body.String(),
		"logout": logout.Body.String(), "cancelled": cancelled.Body.String(), "signed out": done.Body.String(), "error": errPage.Body.String()} {
		checkMarkedPage(t, name, rec, "Billing <Portal>", "c-web", "alice")
		shown = append(shown, rec)
	}
	for _, want := range []string{"⟦NotUser⟧", "⟦WrongCredentials⟧", "⟦openid⟧", "⟦CancelButton⟧", "⟦StillSignedIn⟧", "⟦SignedOut⟧", "⟦ClientUnknown⟧"} {
		if !strings.Contains(strings.Join(shown, ""), want) {
			t.Errorf("no page shows %s", want)
		}
	}
}

// Display fields are checked at load: a logo_uri must be https and hold
// nothing that could break out of the CSP; a name has no control
// characters; scope descriptions need a valid scope and some text.
func TestClientDisplayValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Client)
		ok   bool
	}{
		{"all set", func(c *Client) {
			c.Name, c.LogoURI, c.ClientURI, c.PolicyURI = "Billing", "https://x.test/l.png", "https://x.test/", "http://127.0.0.1:8080/p"
		}, true},
		{"http logo", func(c *Client) { c.LogoURI = "http://x.test/l.png" }, false},
		{"logo with a semicolon", func(c *Client) { c.LogoURI = "https://x.test/l.png;script-src" }, false},
		{"logo with a space", func(c *Client) { c.LogoURI = "https://x.test/a b" }, false},
		{"relative policy", func(c *Client) { c.PolicyURI = "/privacy" }, false},
		{"javascript site", func(c *Client) { c.ClientURI = "javascript:alert(1)" }, false},
		{"name with a newline", func(c *Client) { c.Name = "a\nb" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := webClients()[0]
			tt.mod(c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	for _, sd := range []map[string]string{{"a b": "x"}, {"read": " "}} {
		cfg := testConfig()
		cfg.Web.ScopeDescriptions = sd
		if _, err := NewEngine(cfg); err == nil || !strings.Contains(err.Error(), "scope_description") {
			t.Errorf("scope descriptions %q: %v", sd, err)
		}
	}
}

// A client that registered itself chose its own name and logo: its
// consent page says it was not verified, names the host the user goes
// back to, and loads no logo (a tracking pixel from any host). A
// metadata-document client is treated the same (cimd_test.go).
func TestConsentPageRegisteredClientUnverified(t *testing.T) {
	e := newEngine(t, withRegistration(nil))
	id := mustRegister(t, e, `{"redirect_uris":["https://xn--pple-43d.com/cb"],"token_endpoint_auth_method":"none","client_name":"Apple",
		"logo_uri":"https://tracker.test/pixel.png"}`).str("client_id")
	b := newBrowser(t, e)
	v := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"https://xn--pple-43d.com/cb"}, "scope": {"openid"},
		"code_challenge": {newChallenge()}, "code_challenge_method": {"S256"}}
	// The sign-in page, where the password is typed, says so already
	// (attack round 2 on issue 16).
	loginPage := b.get(AuthorizePath + "?" + v.Encode())
	if body := loginPage.Body.String(); !strings.Contains(body, `id="unverified"`) {
		t.Errorf("the sign-in page of a registered client has no unverified note:\n%s", body)
	}
	rec := b.login(loginPage, "alice", "alice-pw")
	if !isConsentPage(rec) {
		t.Fatalf("no consent page:\n%s", rec.Body)
	}
	body := rec.Body.String()
	for _, want := range []string{`id="unverified"`, pages.English.UnverifiedClient, `id="return-host"`, "<bdi>xn--pple-43d.com</bdi>"} {
		if !strings.Contains(body, html.EscapeString(want)) && !strings.Contains(body, want) {
			t.Errorf("consent page of a registered client lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "tracker.test") || strings.Contains(rec.Header().Get("Content-Security-Policy"), "tracker.test") {
		t.Errorf("a registered client's logo is loaded:\n%s\n%s", rec.Header().Get("Content-Security-Policy"), body)
	}
	// A host that is not ASCII (a homograph: Cyrillic а, fullwidth
	// letters) is refused: register its punycode form.
	for _, host := range []string{"\u0430pple.com", "\uff41pple.com"} {
		if res := register(e, `{"redirect_uris":["https://`+host+`/cb"],"token_endpoint_auth_method":"none"}`); res.status != 400 ||
			res.str("error") != CodeInvalidRedirectURI || !strings.Contains(res.str("error_description"), "xn--") {
			t.Errorf("non-ASCII redirect host %q: %d %s", host, res.status, res.raw)
		}
	}
	// An operator's client keeps its logo and has no such line.
	e = pagesEngine(t)
	b = newBrowser(t, e)
	rec = b.login(b.get(AuthorizePath+"?"+authzQuery("c-web", newChallenge()).Encode()), "alice", "alice-pw")
	if body := rec.Body.String(); !strings.Contains(body, "client.test/logo.png") || strings.Contains(body, `id="unverified"`) {
		t.Errorf("operator client's consent page:\n%s", body)
	}
}
