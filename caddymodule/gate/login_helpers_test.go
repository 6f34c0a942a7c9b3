package gate

import (
	"context"
	"crypto/tls"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// loginIssuer is the oauth app as a browser-mode gate sees it
// (LoginIssuer): a started engine, its sign-in clients and in-process
// transport, and a session sealer.
type loginIssuer struct {
	testIssuer
	sealer *tokens.Sealer
}

func (i loginIssuer) LoginClient(redirectURI, postLogoutURI, name, audience string, scopes []string) (string, http.RoundTripper, error) {
	id, err := i.eng.AddLoginClient(redirectURI, postLogoutURI, name, audience, scopes)
	return id, i.eng.InProcessTransport(), err
}

func (i loginIssuer) SessionSealer() (*tokens.Sealer, error) { return i.sealer, nil }

const userPassword = "correct horse battery staple"

// startedLoginIssuer is an engine with users alice (group admins) and
// bob, and a confidential client ext for an external-mode gate.
func startedLoginIssuer(t testing.TB, ttl time.Duration) loginIssuer {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte(userPassword), bcrypt.MinCost)
	eng, err := grants.NewEngine(grants.Config{Issuer: "https://as.test", AccessTokenTTL: ttl, RefreshTokenTTL: 24 * time.Hour,
		Users: []*grants.User{
			{Name: "alice", PasswordHash: string(hash), Claims: map[string]string{"email": "alice@example.com", "groups": "admins, ops"}},
			{Name: "bob", PasswordHash: string(hash), Claims: map[string]string{"email": "bob@example.com"}},
		},
		Clients: []*grants.Client{{ClientSpec: grants.ClientSpec{ID: "ext", AuthMethod: grants.AuthSecretBasic,
			GrantTypes: []string{grants.GrantAuthorizationCode, grants.GrantRefreshToken}, Scopes: []string{"openid", "profile", "email"},
			RedirectURIs: []string{"https://ext.test/oauth2/callback"}, PostLogoutRedirectURIs: []string{"https://ext.test/"}, Trusted: true},
			SecretHash: grants.HashSecret(extSecret)}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rev, err := tokens.LoadRevocations(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background(), st, rev); err != nil {
		t.Fatal(err)
	}
	return loginIssuer{testIssuer: testIssuer{eng: eng}, sealer: eng.SessionSealer()}
}

const extSecret = "ext-secret-0123456789abcdef0123456789"

// loginGate provisions an oauth_protect block against iss.
func loginGate(t testing.TB, iss Issuer, src string) *Protect {
	t.Helper()
	toks, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	p := new(Protect)
	if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(toks)); err != nil {
		t.Fatal(err)
	}
	if err := p.provisionWith(iss); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// testBrowser is a user agent with a cookie jar per host: as.test is
// the engine, every other host the gate (over TLS, from loopback).
type testBrowser struct {
	t    testing.TB
	eng  *grants.Engine
	gate *Protect
	jars map[string]map[string]*http.Cookie
	// seen is the last request the upstream got, and repl its replacer.
	seen *http.Request
	repl *caddy.Replacer
	// header is added to every request to the gate.
	header http.Header
}

func newTestBrowser(t testing.TB, eng *grants.Engine, p *Protect) *testBrowser {
	return &testBrowser{t: t, eng: eng, gate: p, jars: map[string]map[string]*http.Cookie{}}
}

// do sends r with its host's cookies and keeps those the answer sets.
func (b *testBrowser) do(r *http.Request) *httptest.ResponseRecorder {
	b.t.Helper()
	r.RemoteAddr = "127.0.0.1:5555"
	if r.URL.Scheme == "https" {
		r.TLS = &tls.ConnectionState{}
	}
	host := r.URL.Host
	for _, c := range b.jars[host] {
		if strings.HasPrefix(r.URL.Path, c.Path) {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	w := httptest.NewRecorder()
	if host == "as.test" {
		b.eng.ServeHTTP(w, r)
	} else {
		for k, v := range b.header {
			r.Header[k] = v
		}
		r, b.repl = caddyRequest(r)
		b.seen = nil
		next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			b.seen = r
			_, _ = io.WriteString(w, "upstream page")
			return nil
		})
		if err := b.gate.ServeHTTP(w, r, next); err != nil {
			b.t.Fatalf("gate: %v", err)
		}
	}
	b.keep(host, w.Result().Cookies())
	return w
}

func (b *testBrowser) keep(host string, cookies []*http.Cookie) {
	if b.jars[host] == nil {
		b.jars[host] = map[string]*http.Cookie{}
	}
	for _, c := range cookies {
		// A browser keeps a cookie per name and path.
		key := c.Name
		if c.Path != "" && c.Path != "/" {
			key += "|" + c.Path
		}
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.jars[host], key)
		} else {
			b.jars[host][key] = c
		}
	}
}

func (b *testBrowser) get(target string) *httptest.ResponseRecorder {
	b.t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	return b.do(r)
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="(state|csrf)" value="([^"]*)">`)

// visit opens target and follows redirects, signing in as user on the
// provider's sign-in page, until a page that is no redirect.
func (b *testBrowser) visit(target, user string) *httptest.ResponseRecorder {
	b.t.Helper()
	rec := b.get(target)
	for range 10 {
		switch {
		case rec.Code == http.StatusFound || rec.Code == http.StatusSeeOther:
			loc, err := url.Parse(target)
			if err != nil {
				b.t.Fatal(err)
			}
			next, err := loc.Parse(rec.Header().Get("Location"))
			if err != nil {
				b.t.Fatal(err)
			}
			target = next.String()
			rec = b.get(target)
		case rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `id="signin"`):
			form := url.Values{"username": {user}, "password": {userPassword}}
			for _, m := range hiddenField.FindAllStringSubmatch(rec.Body.String(), -1) {
				form.Set(m[1], html.UnescapeString(m[2]))
			}
			r := httptest.NewRequest(http.MethodPost, "https://as.test"+grants.AuthorizePath+"/login", strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec = b.do(r)
		default:
			return rec
		}
	}
	b.t.Fatalf("no page after 10 redirects")
	return nil
}

// session is the browser's session cookie at the gate's host.
func (b *testBrowser) session(host string) string {
	for name, c := range b.jars[host] {
		if strings.HasSuffix(name, "oauthgate_app") {
			return c.Value
		}
	}
	return ""
}

func (b *testBrowser) setSession(host, name, value string) {
	b.keep(host, []*http.Cookie{{Name: name, Value: value}})
}

// memStorage is Caddy's storage as the session key needs it, in memory.
type memStorage struct {
	m      map[string][]byte
	locks  int
	stores int
}

func (s *memStorage) Lock(context.Context, string) error   { s.locks++; return nil }
func (s *memStorage) Unlock(context.Context, string) error { return nil }
func (s *memStorage) Store(_ context.Context, k string, v []byte) error {
	s.stores++
	s.m[k] = v
	return nil
}

func (s *memStorage) Load(_ context.Context, k string) ([]byte, error) {
	v, ok := s.m[k]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return v, nil
}

// tlsState marks a test request as one that came over TLS.
var tlsState = &tls.ConnectionState{}

func tokenize(src string) (*caddyfile.Dispenser, error) {
	toks, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
	if err != nil {
		return nil, err
	}
	return caddyfile.NewDispenser(toks), nil
}
