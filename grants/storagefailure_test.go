package grants

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Failure modes of failStore.
const (
	failNone   = iota
	failWrites // Update and Batch fail, View works
	failAll
)

// failStore is a real store that fails as a full disk does, on demand.
type failStore struct {
	storage.Store
	mode atomic.Int32
}

// errDiskFull is what bolt returns when a commit cannot write the file.
var errDiskFull = fmt.Errorf("%w: write /var/lib/caddy/oauth/oauth.db: %w", storage.ErrUnavailable, syscall.ENOSPC)

func (s *failStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	if s.mode.Load() == failAll {
		return errDiskFull
	}
	return s.Store.View(ctx, fn)
}

func (s *failStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if s.mode.Load() != failNone {
		return errDiskFull
	}
	return s.Store.Update(ctx, fn)
}

func (s *failStore) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	if s.mode.Load() != failNone {
		return errDiskFull
	}
	return s.Store.Batch(ctx, fn)
}

// sfRequest is a request from b's browser (its cookies, loopback) tagged
// with a request id as Caddy tags it.
func sfRequest(b *browser, method, target string, form url.Values, authz, id string) *http.Request {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.RemoteAddr = loopbackAddr
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	for _, c := range b.cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r.WithContext(WithFront(r.Context(), &Front{RequestID: RequestIDString(id)}))
}

// lineText is everything a log line says: message and every field.
func lineText(l observer.LoggedEntry) string {
	return fmt.Sprint(l.Message, " ", l.ContextMap())
}

// sfCase is a request that needs storage. prep runs while storage works
// and returns the request to send once it fails, its handler, and the
// secrets it carries, none of which may reach the log.
type sfCase struct {
	name string
	mode int32
	prep func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string)
	// status is the answer; 503 ones carry Retry-After.
	status int
	// json: the answer is the RFC 6749 error body.
	json bool
}

func sfCases() []sfCase {
	loginPage := func(t *testing.T, e *Engine, b *browser, clientID string) string {
		t.Helper()
		_, challenge := newPKCE()
		rec := b.get(e.basePath + AuthorizePath + "?" + authzQuery(clientID, challenge).Encode())
		if !isLoginPage(rec) {
			t.Fatalf("no login page: %d %s", rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	codeAndTokens := func(t *testing.T, e *Engine, b *browser) (code, verifier, at, rt string) {
		t.Helper()
		c1, v1 := b.getCode("c-web", "scope", "openid read")
		tr := redeem(e, "c-web", c1, v1)
		wantOK(t, tr)
		code, verifier = b.getCode("c-web", "scope", "openid read")
		return code, verifier, tr.str("access_token"), tr.str("refresh_token")
	}
	return []sfCase{
		{name: "token client lookup", mode: failAll, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				f := url.Values{"grant_type": {"client_credentials"}}
				return sfRequest(b, http.MethodPost, TokenPath, f, siBasicAuth("run-time-client", "rt-secret-xyz"), "req-1"),
					e.serveToken, []string{"rt-secret-xyz"}
			}},
		{name: "token code", mode: failWrites, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				code, verifier, at, rt := codeAndTokens(t, e, b)
				f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
					"redirect_uri": {testRedirect["c-web"]}}
				return sfRequest(b, http.MethodPost, TokenPath, f, siBasicAuth("c-web", webSecret), "req-2"),
					e.serveToken, []string{code, verifier, at, rt, url.QueryEscape(webSecret), webSecret}
			}},
		{name: "token refresh", mode: failWrites, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				_, _, at, rt := codeAndTokens(t, e, b)
				f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
				return sfRequest(b, http.MethodPost, TokenPath, f, siBasicAuth("c-web", webSecret), "req-3"),
					e.serveToken, []string{at, rt, webSecret}
			}},
		{name: "revoke", mode: failAll, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				_, _, at, rt := codeAndTokens(t, e, b)
				f := url.Values{"token": {rt}}
				return sfRequest(b, http.MethodPost, RevokePath, f, siBasicAuth("c-web", webSecret), "req-4"),
					e.serveRevoke, []string{at, rt, webSecret}
			}},
		{name: "par push", mode: failWrites, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				f := parForm("c-web", newChallenge())
				return sfRequest(b, http.MethodPost, PARPath, f, siBasicAuth("c-web", webSecret), "req-p1"),
					e.servePAR, []string{webSecret, f.Get("code_challenge")}
			}},
		{name: "authorize request_uri", mode: failWrites, status: 503,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				uri := wantPushed(t, parPost(e, "c-web", parForm("c-web", newChallenge()), ""), 60)
				return sfRequest(b, http.MethodGet, parAuthorize("c-web", uri), nil, "", "req-p2"),
					e.serveAuthorize, []string{strings.TrimPrefix(uri, RequestURIPrefix)}
			}},
		{name: "introspect", mode: failAll, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				_, _, at, rt := codeAndTokens(t, e, b)
				f := url.Values{"token": {rt}}
				return sfRequest(b, http.MethodPost, IntrospectPath, f, siBasicAuth("c-web", webSecret), "req-5"),
					e.serveIntrospect, []string{at, rt, webSecret}
			}},
		{name: "userinfo", mode: failAll, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				sfStoredUser(t, e)
				verifier, challenge := newPKCE()
				loc := b.authorize(authzQuery("c-web", challenge, "scope", "openid"), "carol", "carol-pw")
				tr := redeem(e, "c-web", loc.Query().Get("code"), verifier)
				wantOK(t, tr)
				at := tr.str("access_token")
				return sfRequest(b, http.MethodGet, UserinfoPath, nil, "Bearer "+at, "req-6"),
					e.serveUserinfo, []string{at, tr.str("refresh_token"), "carol-pw"}
			}},
		{name: "token exchange subject", mode: failAll, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				carol := sfStoredUser(t, e)
				at := txAccessToken(t, e, carol.Subject(), "read", nil)
				f := url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"c-tx"}, "client_secret": {postSecret},
					"subject_token": {at}, "subject_token_type": {TokenTypeAccessToken}}
				return sfRequest(b, http.MethodPost, TokenPath, f, "", "req-tx"), e.serveToken, []string{at, postSecret}
			}},
		{name: "jwt bearer subject", mode: failAll, status: 503, json: true,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				sfStoredUser(t, e)
				a := jbAssertion(t, func(m map[string]any) { m["sub"] = "carol" })
				f := url.Values{"grant_type": {GrantJWTBearer}, "client_id": {"c-tx"}, "client_secret": {postSecret}, "assertion": {a}}
				return sfRequest(b, http.MethodPost, TokenPath, f, "", "req-jb"), e.serveToken, []string{a, postSecret}
			}},
		{name: "authorize client lookup", mode: failAll, status: 503,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				_, challenge := newPKCE()
				q := authzQuery("c-web", challenge, "client_id", "run-time-client")
				return sfRequest(b, http.MethodGet, e.basePath+AuthorizePath+"?"+q.Encode(), nil, "", "req-7"),
					e.serveAuthorize, nil
			}},
		{name: "authorize challenge", mode: failAll, status: http.StatusFound,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				_, challenge := newPKCE()
				q := authzQuery("c-web", challenge)
				return sfRequest(b, http.MethodGet, e.basePath+AuthorizePath+"?"+q.Encode(), nil, "", "req-8a"),
					e.serveAuthorize, nil
			}},
		{name: "authorize session", mode: failAll, status: 503,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				b.getCode("c-nopkce", "code_challenge", "", "code_challenge_method", "")
				q := authzQuery("c-nopkce", "", "code_challenge", "", "code_challenge_method", "")
				return sfRequest(b, http.MethodGet, e.basePath+AuthorizePath+"?"+q.Encode(), nil, "", "req-8"),
					e.serveAuthorize, sfCookies(b)
			}},
		{name: "authorize code", mode: failWrites, status: http.StatusFound,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				b.getCode("c-trusted")
				_, challenge := newPKCE()
				q := authzQuery("c-trusted", challenge)
				return sfRequest(b, http.MethodGet, e.basePath+AuthorizePath+"?"+q.Encode(), nil, "", "req-9"),
					e.serveAuthorize, sfCookies(b)
			}},
		{name: "login", mode: failWrites, status: 503,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				state, csrf := formFields(t, loginPage(t, e, b, "c-web"))
				f := url.Values{"state": {state}, "csrf": {csrf}, "username": {"alice"}, "password": {"alice-pw"}}
				return sfRequest(b, http.MethodPost, e.basePath+AuthorizePath+"/login", f, "", "req-10"),
					e.serveLogin, []string{"alice-pw", csrf}
			}},
		{name: "consent", mode: failAll, status: 503,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				page := loginPage(t, e, b, "c-web")
				state, csrf := formFields(t, page)
				rec := b.post(e.basePath+AuthorizePath+"/login",
					url.Values{"state": {state}, "csrf": {csrf}, "username": {"alice"}, "password": {"alice-pw"}})
				if !isConsentPage(rec) {
					t.Fatalf("no consent page: %d %s", rec.Code, rec.Body.String())
				}
				state, csrf = formFields(t, rec.Body.String())
				f := url.Values{"state": {state}, "csrf": {csrf}, "decision": {"allow"}}
				return sfRequest(b, http.MethodPost, e.basePath+AuthorizePath+"/consent", f, "", "req-11"),
					e.serveConsent, append(sfCookies(b), "alice-pw", csrf)
			}},
		{name: "logout", mode: failAll, status: 503,
			prep: func(t *testing.T, e *Engine, b *browser) (*http.Request, http.HandlerFunc, []string) {
				b.getCode("c-web")
				return sfRequest(b, http.MethodGet, e.basePath+LogoutPath, nil, "", "req-12"),
					e.serveLogout, sfCookies(b)
			}},
	}
}

// sfStoredUser adds carol, a user of the storage (config users need no
// storage to look up).
func sfStoredUser(t *testing.T, e *Engine) *User {
	t.Helper()
	if err := e.users.Put(context.Background(), &User{Name: "carol", PasswordHash: testHash("carol-pw")}, true); err != nil {
		t.Fatal(err)
	}
	u, err := e.users.Lookup(context.Background(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// sfCookies are the browser's cookie values, all of them secrets.
func sfCookies(b *browser) []string {
	var out []string
	for _, c := range b.cookies {
		out = append(out, c.Value)
	}
	return out
}

// A storage failure at request time is the server's: one ERROR line with
// the cause and the request id, 503 temporarily_unavailable with
// Retry-After to the client, and nothing secret in the log.
func TestStorageFailureLoggedWithCause(t *testing.T) {
	t.Parallel()
	for _, tc := range sfCases() {
		t.Run(tc.name, func(t *testing.T) {
			fs := &failStore{Store: openStore(t)}
			logger, logs := observedLogger()
			e := newEngine(t, withStore(fs), withLogger(logger), withLocalSubjects())
			b := newBrowser(t, e)
			r, h, secrets := tc.prep(t, e, b)
			id := RequestID(r.Context())
			logs.TakeAll()
			fs.mode.Store(tc.mode)
			rec := httptest.NewRecorder()
			h(rec, r)
			fs.mode.Store(failNone)

			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			switch {
			case tc.status == http.StatusServiceUnavailable:
				if got := rec.Header().Get("Retry-After"); got != fmt.Sprint(RetryAfterUnavailable) {
					t.Errorf("Retry-After = %q, want %d", got, RetryAfterUnavailable)
				}
			case tc.status == http.StatusFound:
				if loc := rec.Header().Get("Location"); !strings.Contains(loc, "error="+CodeTemporarilyUnavailable) {
					t.Errorf("redirect %q does not carry temporarily_unavailable", loc)
				}
			}
			if tc.json && !strings.Contains(rec.Body.String(), `"error":"temporarily_unavailable"`) {
				t.Errorf("body %s, want temporarily_unavailable", rec.Body.String())
			}
			all := logs.AllUntimed()
			var errs []observer.LoggedEntry
			for _, l := range all {
				if l.Level >= zapcore.ErrorLevel {
					errs = append(errs, l)
				}
				for _, s := range secrets {
					if s != "" && strings.Contains(lineText(l), s) {
						t.Errorf("log line %q carries a secret %q", lineText(l), s)
					}
				}
			}
			if len(errs) != 1 {
				t.Fatalf("%d ERROR lines, want 1: %v", len(errs), all)
			}
			m := errs[0].ContextMap()
			if cause, _ := m["error"].(string); !strings.Contains(cause, "no space left on device") {
				t.Errorf("ERROR line %q does not name the cause", lineText(errs[0]))
			}
			if m["request_id"] != id {
				t.Errorf("ERROR line %q: request_id %v, want %q", lineText(errs[0]), m["request_id"], id)
			}
		})
	}
}

// A full disk under load fails every request: the log gets about one
// line a second, with the count of those it held back.
func TestStorageFailureBurstBounded(t *testing.T) {
	t.Parallel()
	fs := &failStore{Store: openStore(t)}
	logger, logs := observedLogger()
	e := newEngine(t, withStore(fs), withLogger(logger), withLocalSubjects())
	fs.mode.Store(failAll)
	start := time.Now()
	for i := range 100 {
		r := sfRequest(newBrowser(t, e), http.MethodPost, TokenPath, url.Values{"grant_type": {"client_credentials"}},
			siBasicAuth("run-time-client", "rt-secret"), fmt.Sprint("burst-", i))
		rec := httptest.NewRecorder()
		e.serveToken(rec, r)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body.String())
		}
	}
	bound := 1 + int(time.Since(start)/time.Second)
	n := logs.FilterLevelExact(zapcore.ErrorLevel).Len()
	if n < 1 || n > bound {
		t.Fatalf("100 failures wrote %d ERROR lines, want 1..%d", n, bound)
	}
}

// A refusal that is the client's doing is not the operator's problem: it
// stays at DEBUG.
func TestClientRefusalStaysDebug(t *testing.T) {
	t.Parallel()
	logger, logs := observedLogger()
	e := newEngine(t, withLogger(logger), withLocalSubjects())
	b := newBrowser(t, e)
	f := url.Values{"grant_type": {"authorization_code"}, "code": {"no-such-code"}, "redirect_uri": {testRedirect["c-web"]}}
	rec := httptest.NewRecorder()
	e.serveToken(rec, sfRequest(b, http.MethodPost, TokenPath, f, siBasicAuth("c-web", webSecret), "req-x"))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	if n := logs.FilterLevelExact(zapcore.DebugLevel).FilterMessage("token request refused").Len(); n != 1 {
		t.Fatalf("%d debug lines for the refusal, want 1: %v", n, logs.AllUntimed())
	}
	for _, l := range logs.AllUntimed() {
		if l.Level > zapcore.DebugLevel {
			t.Fatalf("a client refusal logged above DEBUG: %v", lineText(l))
		}
	}
}

// A request whose client went away before storage was reached is no
// server failure: it is logged at debug level, not at ERROR.
func TestCanceledRequestNotLoggedAsFailure(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	e := newEngine(t, ccFixture(), withConfig(func(c *Config) { c.Logger = zap.New(core) }))
	e.logFailure(context.Background(), "token", CodeTemporarilyUnavailable, fmt.Errorf("storage: %w", context.Canceled))
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("%d ERROR lines for a canceled request", n)
	}
	e.logFailure(context.Background(), "token", CodeTemporarilyUnavailable, errors.New("no space left on device"))
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Fatalf("%d ERROR lines for a storage failure, want 1", n)
	}
}
