package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// testIssuer is the oauth app as the gate sees it (Issuer): an engine's
// verifier, or the error of a storage that cannot open.
type testIssuer struct {
	eng       *grants.Engine
	err       error
	behindTLS bool
}

func (i testIssuer) Verifier() (*tokens.Verifier, error) {
	if i.err != nil {
		return nil, i.err
	}
	return i.eng.Verifier(), nil
}

func (i testIssuer) GateSettings() (string, bool) { return "https://as.test", i.behindTLS }

// testApp is an app whose storage is never opened, for provisioning.
var testApp = testIssuer{err: errors.New("storage not opened in this test")}

// startedIssuer is an engine on storage in a temporary directory, with a
// client_credentials client svc for https://api.test.
func startedIssuer(t *testing.T) testIssuer {
	t.Helper()
	eng, err := grants.NewEngine(grants.Config{Issuer: "https://as.test", AccessTokenTTL: time.Hour,
		Clients: []*grants.Client{{ClientSpec: grants.ClientSpec{ID: "svc", AuthMethod: grants.AuthSecretBasic, GrantTypes: []string{grants.GrantClientCredentials},
			Scopes: []string{"read", "write"}, Audience: []string{"https://api.test"}}, SecretHash: grants.HashSecret(svcSecret)}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := eng.Start(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	return testIssuer{eng: eng}
}

const svcSecret = "svc-secret-0123456789abcdef0123456789"

// provisionProtect parses an oauth_protect block and provisions it
// against the test app, as Caddy does: Provision first, then Validate.
func provisionProtect(src string) (*Protect, error) {
	app := testApp
	tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
	if err != nil {
		return nil, err
	}
	p := new(Protect)
	if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		return nil, err
	}
	if err := p.provisionWith(app); err != nil {
		return nil, err
	}
	return p, p.Validate()
}

func provisioned(t *testing.T, src string) *Protect {
	t.Helper()
	p, err := provisionProtect(src)
	if err != nil {
		t.Fatalf("provisioning %q: %v", src, err)
	}
	return p
}

// TestProtectProvision: every oauth_protect value is checked with an
// error that says what to fix, never a panic, before anything is built.
func TestProtectProvision(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want string // "" means it must load
	}{
		{"oauth_protect", "audience is required"},
		{"oauth_protect {\n scopes a\n}", "audience is required"},
		{`oauth_protect {
 audience "http://[::1"
}`, `audience "http://[::1" is not a URI`},
		{"oauth_protect {\n audience billing\n}", "is not absolute"},
		{"oauth_protect {\n audience https://a.test#x\n}", "fragment"},
		{"oauth_protect {\n audience https://a.test\n realm \"a\\\"b\"\n}", "realm"},
		{"oauth_protect {\n audience https://a.test\n forward_header Host sub\n}", "cannot set Host"},
		{"oauth_protect {\n audience https://a.test\n strip_header Authorization\n}", "cannot remove Authorization"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins *\n credentials\n }\n}", "cannot go with credentials"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test/\n }\n}", "without a path"},
		{"oauth_protect {\n audience https://a.test\n cors {\n methods GET\n }\n}", "at least one origin"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test\n max_age soon\n }\n}", "invalid duration"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test\n }\n forward_preflight\n}", "exclude each other"},
		{"oauth_protect {\n audience https://a.test\n cors\n cors\n}", "given twice"},
		{"oauth_protect {\n audience https://a.test\n cors {\n origin https://spa.test\n }\n}", ""},
		{"oauth_protect {\n audience urn:example:billing\n}", ""},
		{"oauth_protect {\n audience any\n}", ""},
		{"oauth_protect {\n audience https://a.test/api\n block_preflight\n}", ""},
	} {
		p, err := provisionProtect(tt.src)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.src, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want one containing %q", tt.src, err, tt.want)
		case tt.want == "" && strings.Contains(tt.src, "urn:") && (p.prmPath != "" || strings.Contains(p.challenge, "resource_metadata")):
			t.Errorf("a URN audience has no protected resource metadata URL, got %q %q", p.prmPath, p.challenge)
		case tt.want == "" && strings.Contains(tt.src, "any") && p.challenge != `Bearer realm="oauth"`:
			t.Errorf("audience any: challenge %q", p.challenge)
		}
	}
}

// gateCall runs one request through a provisioned gate; the result says
// whether the next handler saw it, and what it saw.
func gateCall(t *testing.T, p *Protect, r *http.Request) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	var seen *http.Request
	next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		w.WriteHeader(http.StatusOK)
		return nil
	})
	w := httptest.NewRecorder()
	if err := p.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w, seen
}

type handlerFunc func(http.ResponseWriter, *http.Request) error

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

func preflight(url string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, url, nil)
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Origin", "https://spa.test")
	r.Header.Set("Access-Control-Request-Method", "DELETE")
	r.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	return r
}

// TestGatePreflight: OPTIONS needs a token unless the gate answers CORS
// itself (cors) or the operator asked for preflights to be forwarded.
func TestGatePreflight(t *testing.T) {
	t.Run("default: a preflight needs a token", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
		w, seen := gateCall(t, p, preflight("/admin/delete?all=1"))
		if seen != nil || w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, forwarded %v; want 401 and not forwarded", w.Code, seen != nil)
		}
	})
	t.Run("block_preflight still loads and changes nothing", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n block_preflight\n}")
		if w, seen := gateCall(t, p, preflight("/")); seen != nil || w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, forwarded %v", w.Code, seen != nil)
		}
	})
	t.Run("cors: the gate answers and never forwards", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n cors {\n origins https://spa.test\n methods GET DELETE\n headers Content-Type\n max_age 10m\n credentials\n }\n}")
		w, seen := gateCall(t, p, preflight("/admin/delete?all=1"))
		if seen != nil || w.Code != http.StatusNoContent {
			t.Fatalf("status %d, forwarded %v; want 204 and not forwarded", w.Code, seen != nil)
		}
		h := w.Header()
		for name, want := range map[string]string{
			"Access-Control-Allow-Origin":      "https://spa.test",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, DELETE",
			"Access-Control-Allow-Headers":     "Authorization, DPoP, Content-Type",
			"Access-Control-Max-Age":           "600",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		// Two Origin headers, the allowed one first: no CORS request.
		two := preflight("/admin/delete?all=1")
		two.Header.Add("Origin", "https://evil.test")
		if w, seen := gateCall(t, p, two); seen != nil || w.Code == http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("two Origin headers: status %d, forwarded %v, allow-origin %q; want no preflight answer", w.Code, seen != nil, w.Header().Get("Access-Control-Allow-Origin"))
		}
		for name, mod := range map[string]func(*http.Request){
			"other origin":      func(r *http.Request) { r.Header.Set("Origin", "https://evil.test") },
			"origin with path":  func(r *http.Request) { r.Header.Set("Origin", "https://spa.test.evil.test") },
			"method not listed": func(r *http.Request) { r.Header.Set("Access-Control-Request-Method", "PUT") },
			"header not listed": func(r *http.Request) { r.Header.Set("Access-Control-Request-Headers", "x-admin") },
		} {
			r := preflight("/")
			mod(r)
			w, seen := gateCall(t, p, r)
			if seen != nil || w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: status %d, forwarded %v, allow-origin %q; want 403 without CORS headers", name, w.Code, seen != nil, w.Header().Get("Access-Control-Allow-Origin"))
			}
		}
		// A cross-origin request without a token is refused, readable by
		// the allowed origin.
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Origin", "https://spa.test")
		w, seen = gateCall(t, p, r)
		if seen != nil || w.Code != http.StatusUnauthorized || w.Header().Get("Access-Control-Allow-Origin") != "https://spa.test" ||
			w.Header().Get("Access-Control-Expose-Headers") != "WWW-Authenticate, DPoP-Nonce" {
			t.Errorf("GET without token: status %d forwarded %v headers %v", w.Code, seen != nil, w.Header())
		}
	})
	t.Run("forward_preflight: only body-less preflights, without credentials", func(t *testing.T) {
		p := provisioned(t, "oauth_protect {\n audience https://a.test\n forward_preflight\n}")
		r := preflight("/x")
		r.Header.Set("Cookie", "session=admin")
		r.Header.Set("Authorization", "Basic YWRtaW46YWRtaW4=")
		r.Header.Set("X-Remote-User", "admin")
		w, seen := gateCall(t, p, r)
		if seen == nil || w.Code != http.StatusOK {
			t.Fatalf("status %d, forwarded %v; want it forwarded", w.Code, seen != nil)
		}
		for _, h := range []string{"Cookie", "Authorization", "X-Remote-User"} {
			if v := seen.Header.Get(h); v != "" {
				t.Errorf("forwarded preflight carries %s: %q", h, v)
			}
		}
		// Nor what frameworks act on as another method or a token.
		r = preflight("/x?_method=DELETE&access_token=abc")
		r.Header.Set("X-HTTP-Method-Override", "DELETE")
		r.Header.Set("X-Original-URL", "/admin")
		r.Header.Set("Sec-Fetch-Mode", "cors")
		if _, seen := gateCall(t, p, r); seen == nil || seen.URL.RawQuery != "" || seen.Header.Get("X-Http-Method-Override") != "" ||
			seen.Header.Get("X-Original-Url") != "" || seen.Header.Get("Sec-Fetch-Mode") != "cors" || seen.Header.Get("Origin") == "" {
			t.Errorf("forwarded preflight: %v; want only the preflight's own headers, no query", seen)
		}
		withBody := httptest.NewRequest(http.MethodOptions, "/x", strings.NewReader("delete=all"))
		withBody.Header = preflight("/x").Header
		noOrigin := preflight("/x")
		noOrigin.Header.Del("Origin")
		noMethod := preflight("/x")
		noMethod.Header.Del("Access-Control-Request-Method")
		for name, r := range map[string]*http.Request{"with a body": withBody, "without Origin": noOrigin, "without a method": noMethod} {
			if w, seen := gateCall(t, p, r); seen != nil || w.Code != http.StatusUnauthorized {
				t.Errorf("%s: status %d, forwarded %v; want 401", name, w.Code, seen != nil)
			}
		}
	})
}

// TestGateBodyToken: a form body with access_token is refused with 400
// invalid_request, with or without a header token (RFC 6750 §2), and
// nothing is forwarded.
func TestGateBodyToken(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
	for name, tt := range map[string]struct {
		authz, ctype, body string
		status             int
	}{
		"header and body":           {"Bearer abc", "application/x-www-form-urlencoded", "a=1&access_token=abc", 400},
		"body only":                 {"", "application/x-www-form-urlencoded; charset=utf-8", "access_token=abc", 400},
		"upper-case media type":     {"Bearer abc", "Application/X-WWW-Form-Urlencoded", "access_token=abc", 400},
		"encoded name":              {"Bearer abc", "application/x-www-form-urlencoded", "access%5ftoken=abc", 400},
		"too big to check":          {"Bearer abc", "application/x-www-form-urlencoded", "a=" + strings.Repeat("x", maxFormBody), 413},
		"no token anywhere":         {"", "application/x-www-form-urlencoded", "a=1", 401},
		"json body is not a form":   {"", "application/json", `{"access_token":"abc"}`, 401},
		"query and body, no header": {"", "text/plain", "access_token=abc", 401},
		// What lenient parsers (PHP, Rack, Werkzeug) still read as a form.
		"parameter without a value": {"Bearer abc", "application/x-www-form-urlencoded; charset", "access_token=abc", 400},
		"unbalanced quote":          {"Bearer abc", `application/x-www-form-urlencoded;charset="utf-8`, "access_token=abc", 400},
		"media type list":           {"Bearer abc", "application/x-www-form-urlencoded, text/plain", "access_token=abc", 400},
		"PHP array name":            {"Bearer abc", "application/x-www-form-urlencoded", "access_token[]=abc", 400},
		"PHP leading space":         {"Bearer abc", "application/x-www-form-urlencoded", "+access_token=abc", 400},
		"space after media type":    {"Bearer abc", "application/x-www-form-urlencoded foo", "access_token=abc", 400},
		"another charset":           {"Bearer abc", "application/x-www-form-urlencoded; charset=utf-16", "a=1", 400},
		"PHP NUL-terminated name":   {"Bearer abc", "application/x-www-form-urlencoded", "access_token%00=abc", 400},
		"ASP.NET case":              {"Bearer abc", "application/x-www-form-urlencoded", "ACCESS_TOKEN=abc", 400},
		"multipart field":           {"Bearer abc", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"ACCESS_TOKEN\"\r\n\r\nabc\r\n--b--\r\n", 400},
		"multipart without a token": {"", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nabc\r\n--b--\r\n", 401},
		"broken multipart":          {"Bearer abc", "multipart/form-data; boundary=b", "junk", 400},
		// Go cannot parse a disposition with a repeated name; PHP reads
		// the last one.
		"multipart repeated name": {"Bearer abc", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"x\"; name=\"access_token\"\r\n\r\nabc\r\n--b--\r\n", 400},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
		r.RemoteAddr = "127.0.0.1:5555" // so that the TLS rule answers nothing here
		r.Header.Set("Content-Type", tt.ctype)
		if tt.authz != "" {
			r.Header.Set("Authorization", tt.authz)
		}
		w, seen := gateCall(t, p, r)
		if seen != nil || w.Code != tt.status {
			t.Errorf("%s: status %d forwarded %v, want %d (%s)", name, w.Code, seen != nil, tt.status, w.Body)
		}
		if tt.status == 400 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_request"`) {
			t.Errorf("%s: challenge %q", name, w.Header().Get("WWW-Authenticate"))
		}
	}
}

// TestGateRepeatedFraming: a second Content-Type or Content-Encoding
// header, which the gate and the upstream might read differently, and
// declared request trailers, which arrive after the gate looked, are
// refused before anything is forwarded.
func TestGateRepeatedFraming(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
	for name, h := range map[string]http.Header{
		"two content types":     {"Content-Type": {"text/plain", "application/x-www-form-urlencoded"}},
		"two content encodings": {"Content-Type": {"application/x-www-form-urlencoded"}, "Content-Encoding": {"identity", "gzip"}},
		"declared trailers":     {"Content-Type": {"text/plain"}, "Trailer": {"X-Forwarded-User"}},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("a=1"))
		r.RemoteAddr = "127.0.0.1:5555"
		maps.Copy(r.Header, h)
		r.Header.Set("Authorization", "Bearer abc")
		if w, seen := gateCall(t, p, r); seen != nil || w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d forwarded %v, want 400", name, w.Code, seen != nil)
		}
	}
}

// TestGatePlainHTTP: a bearer token over plain HTTP is refused unless it
// came from this machine (per Caddy's client IP too) or TLS ends in front.
func TestGatePlainHTTP(t *testing.T) {
	p := provisioned(t, "oauth_protect {\n audience https://a.test\n}")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "203.0.113.7:4000"
	r.Header.Set("Authorization", "Bearer abc")
	w, seen := gateCall(t, p, r)
	if seen != nil || w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "HTTPS") {
		t.Fatalf("remote plain HTTP: status %d body %q forwarded %v; want 400", w.Code, w.Body, seen != nil)
	}
	p.behindTLS = true
	if w, _ := gateCall(t, p, r); w.Code == http.StatusBadRequest {
		t.Fatalf("behind_tls_proxy: status %d, want the token checked", w.Code)
	}
}

// startedGate is a gate in front of a started oauth app (storage in a
// temporary directory) and an access token from that app's token
// endpoint, with the scope the gate requires.
func startedGate(t *testing.T, gate string) (*Protect, string) {
	t.Helper()
	app := startedIssuer(t)
	eng := app.eng
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token",
		strings.NewReader("grant_type=client_credentials&scope=read+write"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", "svc-secret-0123456789abcdef0123456789")
	w := httptest.NewRecorder()
	eng.ServeHTTP(w, r)
	var tr grants.TokenResponse
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
		t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	tokens, err := caddyfile.Tokenize([]byte(gate), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	p := new(Protect)
	if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		t.Fatal(err)
	}
	if err := p.provisionWith(app); err != nil {
		t.Fatal(err)
	}
	return p, tr.AccessToken
}

// caddyRequest is r as Caddy hands it to a handler: with a replacer
// (Caddy's providers included) and its vars.
func caddyRequest(r *http.Request) (*http.Request, *caddy.Replacer) {
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	r = r.WithContext(ctx)
	caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), nil)
	return r, repl
}

// TestGatePlaceholders: on success the gate publishes the documented
// placeholders; its user replaces one an earlier handler set, a later
// handler's replaces the gate's, and a second gate in the same chain
// publishes its own token's claims.
func TestGatePlaceholders(t *testing.T) {
	p, tok := startedGate(t, "oauth_protect {\n audience https://api.test\n scopes read\n forward_header X-Forwarded-User sub\n}")
	r := httptest.NewRequest(http.MethodGet, "https://api.test/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r, repl := caddyRequest(r)
	repl.Set("http.auth.user.id", "basic-auth-user") // an earlier basic_auth
	var seen *http.Request
	err := p.ServeHTTP(httptest.NewRecorder(), r, handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		return nil
	}))
	if err != nil || seen == nil {
		t.Fatalf("the gate did not pass the request: %v", err)
	}
	for key, want := range map[string]string{
		"oauth.sub": "svc", "oauth.client_id": "svc", "oauth.scope": "read write",
		"oauth.claim.client_id": "svc", "oauth.claim.iss": "https://as.test", "oauth.claim.aud": "https://api.test",
		"http.auth.user.id": "svc",
	} {
		if got, ok := repl.GetString(key); !ok || got != want {
			t.Errorf("{%s} = %q (%v), want %q", key, got, ok, want)
		}
	}
	if got := repl.ReplaceAll("{oauth.claim.nope}|{oauth}identity}", "-"); got != "-|-identity}" {
		t.Errorf("unknown placeholders became %q", got)
	}
	if got := seen.Header.Get("X-Forwarded-User"); got != "svc" {
		t.Errorf("X-Forwarded-User = %q, want svc", got)
	}
	repl.Set("http.auth.user.id", "later") // a later vars http.auth.user.id
	if got, _ := repl.GetString("http.auth.user.id"); got != "later" {
		t.Errorf("a later handler's user: {http.auth.user.id} = %q, want later", got)
	}

	// A second gate in the chain (the first passed the token on) that
	// sees another token of another client publishes that one.
	other := mintFor(t, p.issuer.(testIssuer).eng)
	p.PassAuthorization = true
	r.Header.Set("Authorization", "Bearer "+other)
	if err := p.ServeHTTP(httptest.NewRecorder(), r, handlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
		t.Fatal(err)
	}
	if got, _ := repl.GetString("oauth.scope"); got != "read" {
		t.Errorf("second gate: {oauth.scope} = %q, want its token's scope read", got)
	}
	if got, _ := repl.GetString("http.auth.user.id"); got != "svc" {
		t.Errorf("second gate: {http.auth.user.id} = %q, want svc", got)
	}
}

// mintFor gets a token with scope read only from eng.
func mintFor(t *testing.T, eng *grants.Engine) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://as.test/oauth/token",
		strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", "svc-secret-0123456789abcdef0123456789")
	w := httptest.NewRecorder()
	eng.ServeHTTP(w, r)
	var tr grants.TokenResponse
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
		t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	return tr.AccessToken
}

// TestGateHitAllocs: letting a request with a known token through costs
// a few allocations (the forwarded header's value, the placeholder
// provider), not one per header, placeholder or scope: the gate should
// cost what the proxy costs (bench/micro BenchmarkGate).
func TestGateHitAllocs(t *testing.T) {
	p, tok := startedGate(t, "oauth_protect {\n audience https://api.test\n scopes read write\n forward_header X-Forwarded-User sub\n}")
	r := httptest.NewRequest(http.MethodGet, "https://api.test/items?page=2&sort=name", nil)
	for name, v := range map[string]string{"User-Agent": "curl/8", "Accept": "*/*", "Accept-Encoding": "gzip",
		"X-Request-Id": "abc", "X-Forwarded-For": "192.0.2.1", "Authorization": "Bearer " + tok} {
		r.Header.Set(name, v)
	}
	auth := r.Header["Authorization"]
	next := handlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := httptest.NewRecorder()
	r, _ = caddyRequest(r)
	// A fresh replacer for each request, with Caddy's HTTP provider in it
	// as in a server (what it costs is counted in base, not in the gate).
	fresh := func() *http.Request {
		repl := caddy.NewReplacer()
		repl.Map(func(string) (any, bool) { return nil, false })
		r2 := r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		r2.Header["Authorization"] = auth
		return r2
	}
	base := testing.AllocsPerRun(100, func() { _ = next.ServeHTTP(w, fresh()) })
	got := testing.AllocsPerRun(100, func() {
		if err := p.ServeHTTP(w, fresh(), next); err != nil || w.Code != http.StatusOK {
			t.Fatalf("status %d, %v", w.Code, err)
		}
	}) - base
	// X-Forwarded-User's value, the placeholder provider and its claims.
	if got > 3 {
		t.Errorf("a gate hit allocates %.0f times, want at most 3", got)
	}
}

// The gate logs the same failure the same way.
func TestProtectStorageUnavailable(t *testing.T) {
	cause := errors.New("open /srv/file/oauth.db: not a directory")
	app := testIssuer{err: cause}
	core, logs := observer.New(zapcore.DebugLevel)
	tokens, err := caddyfile.Tokenize([]byte("oauth_protect {\n audience https://api.test\n}"), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	p := &Protect{logger: zap.New(core)}
	if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		t.Fatal(err)
	}
	if err := p.provisionWith(app); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 100 {
		r := withUUID(httptest.NewRequest(http.MethodGet, "http://127.0.0.1/api", nil), fmt.Sprint("gate-", i))
		r.RemoteAddr = "127.0.0.1:5000"
		r.Header.Set("Authorization", "Bearer some-access-token")
		w, seen := gateCall(t, p, r)
		if w.Code != http.StatusServiceUnavailable || seen != nil {
			t.Fatalf("request %d: %d (passed on: %v)", i, w.Code, seen != nil)
		}
		if w.Header().Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	}
	lines := logs.FilterMessage("oauth storage unavailable").AllUntimed()
	if max := 1 + int(time.Since(start)/time.Second); len(lines) == 0 || len(lines) > max {
		t.Fatalf("%d ERROR lines for 100 failures, want 1 to %d", len(lines), max)
	}
	if m := lines[0].ContextMap(); m["request_id"] != "gate-0" || !strings.Contains(fmt.Sprint(m["error"]), "not a directory") {
		t.Errorf("ERROR line %v does not carry the request id and the cause", m)
	}
	for _, l := range logs.AllUntimed() {
		if strings.Contains(fmt.Sprint(l.Message, l.ContextMap()), "some-access-token") {
			t.Fatalf("the log carries the token: %v", l)
		}
	}
}

// withUUID tags r as Caddy does, with a request uuid in the replacer.
func withUUID(r *http.Request, id string) *http.Request {
	repl := caddy.NewReplacer()
	repl.Set("http.request.uuid", id)
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}
