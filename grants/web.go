package grants

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	pages "github.com/oauthgate/caddy-oauthgate/grants/web"
)

// WebConfig configures the sign-in pages.
type WebConfig struct {
	// SessionTTL is how long a browser stays signed in.
	SessionTTL time.Duration
	// TemplatesDir holds replacement templates (login.html, consent.html,
	// error.html, logout.html, loggedout.html, device.html); missing ones fall back to
	// the built-in pages.
	TemplatesDir string
	// LogoFile replaces the built-in logo (served as /oauth/assets/logo).
	LogoFile string
	// Throttle limits failed sign-ins per user and per client address.
	Throttle ThrottleConfig
	// ScopeDescriptions are what the consent page shows for each scope,
	// by scope; they override and extend the built-in descriptions of
	// the OpenID Connect scopes (pages.English.Scopes). A scope without
	// a description is shown as itself.
	ScopeDescriptions map[string]string
}

// pageNames are the templates every sign-in flow uses.
var pageNames = []string{"login.html", "consent.html", "error.html", "logout.html", "loggedout.html", "device.html"}

// web holds what the HTML pages need.
type web struct {
	// assets is the path the pages' style sheet and logo are served at.
	assets string
	// behindTLSProxy marks cookies Secure on plain HTTP too.
	behindTLSProxy bool
	// store and users are set by start.
	store      storage.Store
	users      *Users
	cfg        WebConfig
	pages      map[string]*template.Template
	logo       []byte
	logoType   string
	macKey     []byte
	throttle   *throttle
	cookiePath string
	// text is every string the pages show; scopes merges its scope
	// descriptions with the operator's.
	text   *pages.Text
	scopes map[string]string
}

func newWeb(cfg WebConfig, basePath string, behindTLSProxy bool) (*web, error) {
	if cfg.SessionTTL <= 0 {
		return nil, errors.New("session_ttl must be positive")
	}
	w := &web{assets: basePath + AssetsPath, behindTLSProxy: behindTLSProxy, cfg: cfg, pages: map[string]*template.Template{}, throttle: newThrottle(cfg.Throttle),
		text: &pages.English, scopes: maps.Clone(pages.English.Scopes)}
	for s, d := range cfg.ScopeDescriptions {
		if !validScopeToken(s) {
			return nil, fmt.Errorf("scope_description: scope %q has characters RFC 6749 §3.3 does not allow", s)
		}
		if strings.TrimSpace(d) == "" {
			return nil, fmt.Errorf("scope_description %s: the description is empty", s)
		}
		if utf8.RuneCountInString(d) > 200 || !displayText(d) {
			return nil, fmt.Errorf("scope_description %s: the description must be valid UTF-8 of at most 200 characters, without control or format characters (such as U+0085, U+202E, U+200B) or line separators", s)
		}
		w.scopes[s] = d
	}
	base, err := template.New("layout.html").Funcs(template.FuncMap{"fill": fill}).ParseFS(pages.FS, "layout.html")
	if err != nil {
		return nil, err
	}
	for _, name := range pageNames {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		var src []byte
		if cfg.TemplatesDir != "" {
			src, err = os.ReadFile(filepath.Join(cfg.TemplatesDir, name))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("templates_dir: %w", err)
			}
		}
		if src == nil {
			if src, err = pages.FS.ReadFile(name); err != nil {
				return nil, err
			}
		}
		if _, err := t.New(name).Parse(string(src)); err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		w.pages[name] = t
	}
	w.logo, w.logoType = mustRead(pages.FS.ReadFile("logo.svg")), "image/svg+xml"
	if cfg.LogoFile != "" {
		if w.logo, err = os.ReadFile(cfg.LogoFile); err != nil {
			return nil, fmt.Errorf("logo: %w", err)
		}
		w.logoType = http.DetectContentType(w.logo)
		if strings.HasSuffix(cfg.LogoFile, ".svg") {
			w.logoType = "image/svg+xml"
		}
	}
	w.cookiePath = basePath + "/oauth/"
	return w, nil
}

func mustRead(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// start loads (or creates) the key that authenticates the sign-in forms'
// hidden state, kept in storage so that a reload or restart does not
// break a form a user has open.
func (w *web) start(ctx context.Context, st storage.Store, users *Users) error {
	w.store, w.users = st, users
	return st.Update(ctx, func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindSecrets, "form-mac")
		if err == nil {
			w.macKey = rec.Value
			return nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		key, _ := base64.RawURLEncoding.DecodeString(tokens.RandomID(32))
		w.macKey = key
		return tx.Put(storage.KindSecrets, "form-mac", storage.Record{Value: key})
	})
}

// securityHeaders go on every HTML page. extraImg is a CSP source of an
// image the page may load besides our own (logoSource of a client's
// logo_uri, which ClientSpec.Validate has checked holds no CSP
// delimiters).
func securityHeaders(h http.Header, extraImg string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	img := "'self'"
	if extraImg != "" {
		img += " " + extraImg
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src "+img+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	noStore(h)
}

// pageData is what every template gets (documented for templates_dir
// in docs/pages.md).
type pageData struct {
	// T is every string of the pages.
	T     *pages.Text
	Title string
	// Assets is the path of style.css and the logo, ending in a slash.
	Assets  string
	Error   string
	Message string
	// Client is the client's display name (its id when it has none).
	Client     string
	ClientID   string
	ClientLogo string
	ClientURI  string
	PolicyURI  string
	// Scopes are the requested scopes as sent; ScopeItems pairs each with
	// its description ("" when it has none).
	Scopes     []string
	ScopeItems []scopeItem
	User       string
	// LoginHint fills in the user name field; KnownUser is the user a
	// login_hint or the browser's session names ("Not alice?").
	LoginHint string
	KnownUser string
	// UserCode fills in the code field of the device grant's
	// verification page (device.html), formatted XXXX-XXXX.
	UserCode string
	State    string // the signed authorization request
	CSRF     string
	Action   string
	// Return is the link back to the client on the page shown instead of
	// redirecting an error to a registered client: its redirect URI,
	// checked at registration (validateRedirectURI refuses javascript:,
	// data: and the like), so a native app's own scheme may be linked.
	Return template.URL
	// Unverified marks a client that registered itself (its name is its
	// own choice); ReturnHost is the host of the redirect URI the
	// consent page sends the user to, ASCII (registration refuses other
	// hosts), shown for such clients.
	Unverified bool
	ReturnHost string
	// imgSrc is the CSP source that allows ClientLogo (logoSource).
	imgSrc string
}

// scopeItem is a scope on the consent page.
type scopeItem struct{ Scope, Description string }

// setClient puts the client's name, links and id into d.
func (d *pageData) setClient(c *Client) {
	d.ClientID, d.Client = c.ID, c.ID
	if c.Name != "" {
		d.Client = c.Name
	}
	d.ClientURI, d.PolicyURI = c.ClientURI, c.PolicyURI
	d.Unverified = c.Registered
	// A logo the CSP cannot allow exactly is not shown, nor the logo of a
	// client that registered itself: an image from any host it names
	// would tell that host who looks at the page, and lend it a brand.
	if c.Registered {
		return
	}
	if src, ok := logoSource(c.LogoURI); ok {
		d.ClientLogo, d.imgSrc = c.LogoURI, src
	}
}

// describeScopes pairs each scope with its description.
func (w *web) describeScopes(scopes []string) []scopeItem {
	out := make([]scopeItem, len(scopes))
	for i, s := range scopes {
		out[i] = scopeItem{s, w.scopes[s]}
	}
	return out
}

func (w *web) render(rw http.ResponseWriter, status int, name string, d pageData) {
	securityHeaders(rw.Header(), d.imgSrc)
	d.Assets, d.T = w.assets, w.text
	rw.WriteHeader(status)
	_ = w.pages[name].ExecuteTemplate(rw, name, d)
}

// fill is the template function that puts a value (in <strong>) into a
// string of Text at its {key} place holder, escaping both. The value is
// in <bdi> so that a right-to-left name cannot reorder the sentence
// around it.
func fill(text, key, value string) template.HTML {
	return template.HTML(strings.ReplaceAll(template.HTMLEscapeString(text), "{"+key+"}",
		"<strong><bdi>"+template.HTMLEscapeString(value)+"</bdi></strong>"))
}

// errorPage shows an error without redirecting anywhere: used when the
// client or redirect_uri cannot be trusted (RFC 6749 §4.1.2.1).
func (w *web) errorPage(rw http.ResponseWriter, status int, msg string) {
	w.render(rw, status, "error.html", pageData{Title: w.text.ErrorTitle, Error: msg})
}

// unavailable answers a page request that storage failed: 503 with
// Retry-After and msg, and the cause to the log (logFailure).
func (e *Engine) unavailable(rw http.ResponseWriter, r *http.Request, endpoint, msg string, err error) {
	e.logFailure(r.Context(), endpoint, CodeTemporarilyUnavailable, err)
	rw.Header().Set("Retry-After", strconv.Itoa(RetryAfterUnavailable))
	e.web.errorPage(rw, http.StatusServiceUnavailable, msg)
}

// serveAsset serves the stylesheet and the logo.
func (e *Engine) serveAsset(rw http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, e.basePath+AssetsPath)
	var body []byte
	var ctype string
	switch name {
	case "style.css":
		body, ctype = mustRead(pages.FS.ReadFile("style.css")), "text/css; charset=utf-8"
	case "logo":
		body, ctype = e.web.logo, e.web.logoType
	default:
		http.NotFound(rw, r)
		return
	}
	rw.Header().Set("Content-Type", ctype)
	rw.Header().Set("Cache-Control", "public, max-age=3600")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = rw.Write(body)
}

// Cookies. The session cookie is Secure except on plain-HTTP loopback (the
// quick start), HttpOnly, SameSite=Lax and scoped to the OAuth endpoints.
const (
	sessionCookie = "oauthgate_session"
	csrfCookie    = "oauthgate_csrf"
)

func (w *web) secure(r *http.Request) bool {
	return r.TLS != nil || w.behindTLSProxy || !IsLoopback(r)
}

// duplicateCookie reports whether the request carries one of our cookie
// names more than once. A sibling subdomain can set a cookie of the same
// name for the parent domain or a longer path, which the browser sends
// beside ours and first; r.Cookie would pick it. (The __Host- prefix,
// which forbids such cookies, needs Path=/, and would send the session to
// every app on the host.)
func duplicateCookie(r *http.Request) bool {
	return len(r.CookiesNamed(sessionCookie)) > 1 || len(r.CookiesNamed(csrfCookie)) > 1
}

// refuseDuplicateCookie answers 400 when duplicateCookie.
func (w *web) refuseDuplicateCookie(rw http.ResponseWriter, r *http.Request) bool {
	if !duplicateCookie(r) {
		return false
	}
	w.errorPage(rw, http.StatusBadRequest, w.text.DuplicateCookie)
	return true
}

func (w *web) setCookie(rw http.ResponseWriter, r *http.Request, name, value string, maxAge int, sameSite http.SameSite) {
	http.SetCookie(rw, &http.Cookie{Name: name, Value: value, Path: w.cookiePath, MaxAge: maxAge,
		Secure: w.secure(r), HttpOnly: true, SameSite: sameSite})
}

// csrfToken returns the browser's CSRF token, setting the cookie if the
// browser has none. Forms carry it in a hidden field; a post is accepted
// only when field and cookie agree (double submit), and the signed state
// of every form is bound to it too.
func (w *web) csrfToken(rw http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	tok := tokens.RandomID(32)
	w.setCookie(rw, r, csrfCookie, tok, 0, http.SameSiteStrictMode)
	return tok
}

func (w *web) checkCSRF(r *http.Request, field string) bool {
	c, err := r.Cookie(csrfCookie)
	return err == nil && field != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(field)) == 1
}

// formStateTTL bounds how long a login or consent form stays usable.
const formStateTTL = 15 * time.Minute

// seal signs v (with a time stamp) bound to the CSRF token.
func (w *web) seal(v any, csrf string) string {
	b, _ := json.Marshal(struct {
		V  any   `json:"v"`
		At int64 `json:"at"`
	}{v, time.Now().Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + w.mac(payload, csrf)
}

func (w *web) mac(payload, csrf string) string {
	m := hmac.New(sha256.New, w.macKey)
	m.Write([]byte(payload))
	m.Write([]byte{0})
	m.Write([]byte(csrf))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// unseal checks and decodes what seal made.
func (w *web) unseal(s, csrf string, v any) bool {
	payload, sig, ok := strings.Cut(s, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(w.mac(payload, csrf))) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return false
	}
	env := struct {
		V  json.RawMessage `json:"v"`
		At int64           `json:"at"`
	}{}
	if json.Unmarshal(b, &env) != nil || time.Since(time.Unix(env.At, 0)) > formStateTTL {
		return false
	}
	return json.Unmarshal(env.V, v) == nil
}
