package grants

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// tokenCase is one token-endpoint request and its expected answer.
type tokenCase struct {
	name   string
	method string // default POST
	target string // default https://as.test/oauth/token
	body   string
	auth   []string // Authorization header values
	ctype  string   // default form
	mod    func(*http.Request)
	status int    // expected status
	code   string // expected error code; "" = success
	// challenge is the expected WWW-Authenticate; "" means absent.
	challenge string
	// allow is the expected Allow header; "" means absent.
	allow string
	check func(t *testing.T, body map[string]any)
}

const basicChallenge = `Basic realm="` + testIssuer + `"`

func (tc tokenCase) request() *http.Request {
	method := tc.method
	if method == "" {
		method = http.MethodPost
	}
	target := tc.target
	if target == "" {
		target = testIssuer + TokenPath
	}
	r := httptest.NewRequest(method, target, strings.NewReader(tc.body))
	if tc.ctype == "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if tc.ctype != "-" {
		r.Header.Set("Content-Type", tc.ctype)
	}
	for _, a := range tc.auth {
		r.Header.Add("Authorization", a)
	}
	if tc.mod != nil {
		tc.mod(r)
	}
	return r
}

func runTokenCases(t *testing.T, e *Engine, cases []tokenCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(e, tc.request())
			var body map[string]any
			if tc.code == "" {
				body = checkToken(t, w)
			} else {
				body = checkError(t, w, tc.status, tc.code)
			}
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
			if got := w.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}

var (
	authBasic = []string{basicAuth("c-basic", basicSecret)}
	ccForm    = "grant_type=client_credentials"
	postForm  = "grant_type=client_credentials&client_id=c-post&client_secret=" + url.QueryEscape(postSecret)
)

// wantScope returns a check that the response and token carry scope s.
func wantScope(s string) func(*testing.T, map[string]any) {
	return func(t *testing.T, body map[string]any) {
		t.Helper()
		got, _ := body["scope"].(string)
		if got != s {
			t.Errorf("response scope = %q, want %q", got, s)
		}
		_, claims := segments(t, body["access_token"].(string))
		cs, _ := claims["scope"].(string)
		if cs != s {
			t.Errorf("token scope = %#v, want %q", claims["scope"], s)
		}
	}
}

// wantAud returns a check that the token's aud is exactly want (a string
// for one value, an array otherwise).
func wantAud(want ...string) func(*testing.T, map[string]any) {
	return func(t *testing.T, body map[string]any) {
		t.Helper()
		_, claims := segments(t, body["access_token"].(string))
		switch aud := claims["aud"].(type) {
		case string:
			if len(want) != 1 || aud != want[0] {
				t.Errorf("aud = %q, want %q", aud, want)
			}
		case []any:
			if len(want) < 2 || len(aud) != len(want) {
				t.Fatalf("aud = %v, want %q", aud, want)
			}
			for i := range want {
				if aud[i] != want[i] {
					t.Errorf("aud = %v, want %q", aud, want)
				}
			}
		default:
			t.Errorf("aud = %#v, want %q", claims["aud"], want)
		}
	}
}

func TestTokenRequestRules(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	runTokenCases(t, e, []tokenCase{
		// RFC 6749 §3.2
		{name: "TOK-01 GET", method: http.MethodGet, target: testIssuer + TokenPath, auth: authBasic,
			status: 405, code: CodeInvalidRequest, allow: http.MethodPost},
		{name: "TOK-01 GET with query", method: http.MethodGet, target: testIssuer + TokenPath + "?grant_type=client_credentials",
			auth: authBasic, status: 405, code: CodeInvalidRequest, allow: http.MethodPost},
		{name: "TOK-01 PUT", method: http.MethodPut, body: ccForm, auth: authBasic, status: 405, code: CodeInvalidRequest, allow: http.MethodPost},
		// RFC 6749 §3.2: a form-encoded body
		{name: "TOK-02 JSON", ctype: "application/json", body: `{"grant_type":"client_credentials"}`, auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		{name: "TOK-02 multipart", ctype: "multipart/form-data; boundary=b",
			body: "--b\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--b--\r\n",
			auth: authBasic, status: 400, code: CodeInvalidRequest},
		{name: "TOK-02 no content type", ctype: "-", body: ccForm, auth: authBasic, status: 400, code: CodeInvalidRequest},
		{name: "TOK-02 charset UTF-8", ctype: "application/x-www-form-urlencoded; charset=UTF-8", body: ccForm, auth: authBasic,
			status: 200},
		{name: "TOK-02 other charset", ctype: "application/x-www-form-urlencoded; charset=ISO-8859-1", body: ccForm,
			auth: authBasic, status: 400, code: CodeInvalidRequest},
		{name: "duplicated Content-Type", body: ccForm, auth: authBasic, status: 400, code: CodeInvalidRequest,
			mod: func(r *http.Request) { r.Header.Add("Content-Type", "application/x-www-form-urlencoded") }},
		{name: "gzip body", body: ccForm, auth: authBasic, status: 415, code: CodeInvalidRequest,
			mod: func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") }},
		// RFC 6749 §2.3.1, §3.2
		{name: "TOK-03 secret in query", target: testIssuer + TokenPath + "?client_secret=" + url.QueryEscape(postSecret),
			body: "grant_type=client_credentials&client_id=c-post", status: 400, code: CodeInvalidRequest},
		{name: "TOK-03 harmless query", target: testIssuer + TokenPath + "?foo=bar", body: ccForm, auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		// RFC 6749 §3.1, §3.2
		{name: "TOK-04 grant_type twice", body: "grant_type=client_credentials&grant_type=password", auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		{name: "TOK-04 scope twice", body: "grant_type=client_credentials&scope=read&scope=write", auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		{name: "TOK-04 client_secret twice", body: postForm + "&client_secret=" + url.QueryEscape(postSecret),
			status: 400, code: CodeInvalidRequest},
		{name: "TOK-04 unknown twice", body: ccForm + "&foo=1&foo=2", auth: authBasic, status: 200},
		// RFC 6749 §3.1, §3.2
		{name: "TOK-05 empty scope is absent", body: ccForm + "&scope=", auth: authBasic, status: 200,
			check: wantScope("read write")},
		{name: "TOK-05 empty grant_type", body: "grant_type=", auth: authBasic, status: 400, code: CodeInvalidRequest},
		{name: "TOK-05 empty resource", body: ccForm + "&resource=", auth: authBasic, status: 200, check: wantAud(testRS)},
		{name: "TOK-05 empty client_id with Basic", body: ccForm + "&client_id=", auth: authBasic, status: 200},
		// RFC 6749 §3.1, §3.2
		{name: "TOK-06 unknown params", body: ccForm + "&foo=bar&x-debug=1&" + url.QueryEscape("ünï") + "=1",
			auth: authBasic, status: 200},
		// RFC 6749 §5.2
		{name: "TOK-07 missing grant_type", body: "scope=read", auth: authBasic, status: 400, code: CodeInvalidRequest},
		{name: "TOK-07 unknown grant", body: "grant_type=urn:example:nope", auth: authBasic, status: 400,
			code: CodeUnsupportedGrantType},
		{name: "TOK-07 case variant", body: "grant_type=Client_Credentials", auth: authBasic, status: 400,
			code: CodeUnsupportedGrantType},
		{name: "TOK-07 trailing space", body: "grant_type=client_credentials+", auth: authBasic, status: 400,
			code: CodeUnsupportedGrantType},
		{name: "TOK-07 not implemented", body: "grant_type=password&username=a&password=b", auth: authBasic,
			status: 400, code: CodeUnsupportedGrantType},
		{name: "TOK-08 code grant not registered", body: "grant_type=authorization_code&code=x", auth: authBasic,
			status: 400, code: CodeUnauthorizedClient},
		{name: "TOK-07 password not implemented", body: "grant_type=password&username=a&password=b", auth: authBasic,
			status: 400, code: CodeUnsupportedGrantType},
		// Invalid encodings.
		{name: "bad percent-encoding", body: "grant_type=client_credentials&scope=%zz", auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		{name: "invalid UTF-8", body: "grant_type=client_credentials&scope=%ff", auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		// oversized bodies: 413
		{name: "TOK-18 large body", body: ccForm + "&pad=" + strings.Repeat("x", MaxBodyBytes), auth: authBasic,
			status: 413, code: CodeInvalidRequest},
	})
}

func TestTokenClientAuthentication(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	runTokenCases(t, e, []tokenCase{
		// RFC 6749 §2.3.1
		{name: "CA-01 Basic form-encoded", body: ccForm, auth: authBasic, status: 200},
		{name: "CA-01 Basic raw secret", body: ccForm, auth: []string{rawBasic("c-basic", basicSecret)},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "CA-01 scheme is case-insensitive", body: ccForm,
			auth: []string{"basic " + strings.TrimPrefix(authBasic[0], "Basic ")}, status: 200},
		{name: "CA-01 raw secret of simple client", body: ccForm, auth: []string{rawBasic("c-bare", "bare")}, status: 200},
		// OIDC Core §9: only the registered authentication method
		{name: "CA-02 basic client uses post",
			body:   "grant_type=client_credentials&client_id=c-basic&client_secret=" + url.QueryEscape(basicSecret),
			status: 401, code: CodeInvalidClient},
		{name: "CA-02 post client uses basic", body: ccForm, auth: []string{basicAuth("c-post", postSecret)},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "client_secret_post", body: postForm, status: 200},
		// RFC 6749 §5.2
		{name: "TOK-13 Basic wrong secret", body: ccForm, auth: []string{basicAuth("c-basic", "wrong")},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Basic unknown client", body: ccForm, auth: []string{basicAuth("nosuch", "x")},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Basic not base64", body: ccForm, auth: []string{"Basic !!!"},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Basic no colon", body: ccForm,
			auth:   []string{"Basic " + b64("c-basic")},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Basic empty id", body: ccForm, auth: []string{"Basic " + b64(":x")},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Basic bad percent", body: ccForm, auth: []string{"Basic " + b64("c-basic:%zz")},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Bearer instead of Basic", body: ccForm, auth: []string{"Bearer abc"},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 empty Authorization", body: ccForm, auth: []string{""},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		{name: "TOK-13 Basic plus client_assertion", auth: authBasic,
			body:   ccForm + "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
		// No WWW-Authenticate when Basic was not tried.
		{name: "post wrong secret", body: "grant_type=client_credentials&client_id=c-post&client_secret=wrong",
			status: 401, code: CodeInvalidClient},
		{name: "no authentication", body: ccForm, status: 401, code: CodeInvalidClient},
		{name: "client_id alone", body: ccForm + "&client_id=c-post", status: 401, code: CodeInvalidClient},
		{name: "client_secret without client_id", body: ccForm + "&client_secret=" + url.QueryEscape(postSecret),
			status: 401, code: CodeInvalidClient},
		{name: "client_assertion not supported", body: ccForm +
			"&client_id=c-post&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
			status: 401, code: CodeInvalidClient},
		{name: "A-35 trailing space in client_id", body: "grant_type=client_credentials&client_id=c-post+&client_secret=" +
			url.QueryEscape(postSecret), status: 401, code: CodeInvalidClient},
		// RFC 6749 §2.3
		{name: "TOK-15 Basic and body secret", body: ccForm + "&client_secret=" + url.QueryEscape(basicSecret),
			auth: authBasic, status: 400, code: CodeInvalidRequest},
		{name: "TOK-15 secret and assertion", body: postForm +
			"&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
			status: 401, code: CodeInvalidClient},
		{name: "A-20 two Authorization headers", body: ccForm, auth: []string{authBasic[0], authBasic[0]},
			status: 400, code: CodeInvalidRequest},
		// RFC 7521 §4.2, RFC 6749 §3.2.1
		{name: "TOK-16 body client_id differs", body: ccForm + "&client_id=c-post", auth: authBasic,
			status: 400, code: CodeInvalidRequest},
		{name: "TOK-16 body client_id matches", body: ccForm + "&client_id=c-basic", auth: authBasic, status: 200},
	})
}

// b64 is standard base64, as Basic credentials use.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// RFC 6749 §5.2: an unknown client and a wrong secret are indistinguishable.
func TestTokenAuthFailuresIdentical(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	pairs := []struct {
		name string
		a, b tokenCase
	}{
		{"post", tokenCase{body: "grant_type=client_credentials&client_id=c-post&client_secret=wrong"},
			tokenCase{body: "grant_type=client_credentials&client_id=nosuch&client_secret=x"}},
		{"basic", tokenCase{body: ccForm, auth: []string{basicAuth("c-basic", "wrong")}},
			tokenCase{body: ccForm, auth: []string{basicAuth("nosuch", "x")}}},
		{"wrong method vs unknown", tokenCase{body: "grant_type=client_credentials&client_id=c-basic&client_secret=" + url.QueryEscape(basicSecret)},
			tokenCase{body: "grant_type=client_credentials&client_id=nosuch&client_secret=x"}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			wa, wb := serve(e, p.a.request()), serve(e, p.b.request())
			checkError(t, wa, 401, CodeInvalidClient)
			checkError(t, wb, 401, CodeInvalidClient)
			if wa.Body.String() != wb.Body.String() {
				t.Errorf("bodies differ:\n%s\n%s", wa.Body.String(), wb.Body.String())
			}
			if wa.Header().Get("WWW-Authenticate") != wb.Header().Get("WWW-Authenticate") {
				t.Errorf("WWW-Authenticate differs")
			}
		})
	}
}

// RFC 6749 §5.2: a client that is not registered for client_credentials.
// Client.Validate only accepts grant types the engine implements, and
// client_credentials is the only one, so such a client cannot come in
// through Config; it is added to the engine's map directly, as a future
// grant type would let the configuration do.
func TestTokenUnauthorizedClient(t *testing.T) {
	t.Parallel()
	web := &Client{
		ClientSpec: ClientSpec{
			ID:         "c-web",
			AuthMethod: AuthSecretBasic,
			GrantTypes: []string{"authorization_code"},
			Scopes:     []string{"read"},
		},
		SecretHash: HashSecret("web"),
	}
	if err := web.Validate(); err == nil {
		t.Error("Validate accepted an unsupported grant type")
	}
	if web.Allows(GrantClientCredentials) {
		t.Error("Allows(client_credentials) = true")
	}
	e := newEngine(t, ccFixture())
	e.clients[web.ID] = web
	runTokenCases(t, e, []tokenCase{
		{name: "TOK-08", body: ccForm, auth: []string{basicAuth("c-web", "web")}, status: 400, code: CodeUnauthorizedClient},
		// Authentication comes first: a wrong secret is invalid_client.
		{name: "TOK-08 wrong secret", body: ccForm, auth: []string{basicAuth("c-web", "nope")},
			status: 401, code: CodeInvalidClient, challenge: basicChallenge},
	})
}

func TestTokenScopeAndAudience(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	runTokenCases(t, e, []tokenCase{
		// RFC 6749 §3.3, §5.1
		{name: "default scope", body: ccForm, auth: authBasic, status: 200, check: wantScope("read write")},
		{name: "subset", body: ccForm + "&scope=read", auth: authBasic, status: 200, check: wantScope("read")},
		{name: "order kept", body: ccForm + "&scope=write+read", auth: authBasic, status: 200, check: wantScope("write read")},
		{name: "repeats dropped", body: ccForm + "&scope=read+read", auth: authBasic, status: 200, check: wantScope("read")},
		{name: "unallowed", body: ccForm + "&scope=read+admin", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "only unallowed", body: ccForm + "&scope=admin", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "case matters", body: ccForm + "&scope=READ", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "double space", body: ccForm + "&scope=read++write", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "leading space", body: ccForm + "&scope=+read", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "trailing space", body: ccForm + "&scope=read+", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "tab", body: ccForm + "&scope=read%09write", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "quote", body: ccForm + "&scope=re%22ad", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "backslash", body: ccForm + "&scope=re%5Cad", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "non-ASCII", body: ccForm + "&scope=r%C3%A9ad", auth: authBasic, status: 400, code: CodeInvalidScope},
		{name: "no scopes registered", body: ccForm, auth: []string{basicAuth("c-bare", "bare")}, status: 200,
			check: func(t *testing.T, body map[string]any) {
				if _, ok := body["scope"]; ok {
					t.Errorf("scope present: %v", body["scope"])
				}
				_, claims := segments(t, body["access_token"].(string))
				if _, ok := claims["scope"]; ok {
					t.Errorf("scope claim present: %v", claims["scope"])
				}
			}},
		{name: "no scopes registered, asks one", body: ccForm + "&scope=read", auth: []string{basicAuth("c-bare", "bare")},
			status: 400, code: CodeInvalidScope},
		// RFC 8707 resource → aud.
		{name: "default audience", body: ccForm, auth: authBasic, status: 200, check: wantAud(testRS)},
		{name: "resource", body: ccForm + "&resource=" + url.QueryEscape(testRS), auth: authBasic, status: 200,
			check: wantAud(testRS)},
		{name: "resource not allowed", body: ccForm + "&resource=" + url.QueryEscape("https://evil.test"),
			auth: authBasic, status: 400, code: CodeInvalidTarget},
		{name: "resource with the root path (RFC 3986 §6.2.3)", body: ccForm + "&resource=" + url.QueryEscape(testRS+"/"),
			auth: authBasic, status: 200, check: wantAud(testRS)},
		{name: "resource with a trailing slash after a path", body: ccForm + "&resource=" + url.QueryEscape(testRS+"/x/"),
			auth: authBasic, status: 400, code: CodeInvalidTarget},
		{name: "all audiences by default", body: postForm, status: 200, check: wantAud(testRS, "https://other.test")},
		{name: "resource picks one", body: postForm + "&resource=" + url.QueryEscape("https://other.test"), status: 200,
			check: wantAud("https://other.test")},
		{name: "no audience registered", body: ccForm, auth: []string{basicAuth("c-bare", "bare")}, status: 200,
			check: wantAud(testIssuer)},
		{name: "no audience registered, asks one", body: ccForm + "&resource=" + url.QueryEscape(testRS),
			auth: []string{basicAuth("c-bare", "bare")}, status: 400, code: CodeInvalidTarget},
	})
}

// RFC 6749 §3.2 (TLS): plain HTTP is answered only from loopback or behind a TLS proxy.
func TestTokenTransport(t *testing.T) {
	t.Parallel()
	plain := "http://as.test" + TokenPath
	tests := []struct {
		name    string
		target  string
		remote  string
		proxied bool
		tls     bool
		ok      bool
	}{
		{"https", testIssuer + TokenPath, "192.0.2.1:1234", false, true, true},
		{"plain from remote", plain, "192.0.2.1:1234", false, false, false},
		{"plain from private net", plain, "10.1.2.3:1234", false, false, false},
		{"plain from loopback v4", plain, "127.0.0.1:1234", false, false, true},
		{"plain from loopback v6", plain, "[::1]:1234", false, false, true},
		{"plain from mapped loopback", plain, "[::ffff:127.0.0.1]:1234", false, false, true},
		{"plain from remote behind TLS proxy", plain, "192.0.2.1:1234", true, false, true},
		{"spoofed X-Forwarded-Proto", plain, "192.0.2.1:1234", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, ccFixture(), withConfig(func(c *Config) { c.BehindTLSProxy = tt.proxied }))
			r := httptest.NewRequest(http.MethodPost, tt.target, strings.NewReader(ccForm))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Authorization", authBasic[0])
			r.Header.Set("X-Forwarded-Proto", "https")
			r.RemoteAddr = tt.remote
			if tt.tls && r.TLS == nil {
				r.TLS = &tls.ConnectionState{}
			}
			if !tt.tls {
				r.TLS = nil
			}
			w := serve(e, r)
			if tt.ok {
				checkToken(t, w)
				return
			}
			checkError(t, w, 400, CodeInvalidRequest)
			if w.Code == 307 || w.Code == 308 || w.Header().Get("Location") != "" {
				t.Errorf("redirected: %d %s", w.Code, w.Header().Get("Location"))
			}
		})
	}
}

func TestTokenResponseShape(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	w := serve(e, tokenCase{body: ccForm, auth: authBasic}.request())
	body := checkToken(t, w)

	// RFC 6749 §5.1: expires_in is a JSON number equal to the TTL; token_type is
	// Bearer; nothing is null.
	n, ok := body["expires_in"].(json.Number)
	if !ok {
		t.Fatalf("expires_in = %#v, want a JSON number", body["expires_in"])
	}
	if v, err := n.Int64(); err != nil || v != int64(testTTL/time.Second) {
		t.Errorf("expires_in = %s, want %d", n, int64(testTTL/time.Second))
	}
	if body["token_type"] != "Bearer" {
		t.Errorf("token_type = %v", body["token_type"])
	}
	for k, v := range body {
		if v == nil {
			t.Errorf("%s is null", k)
		}
	}
	// RFC 6749 §4.4.3: no refresh token.
	if _, ok := body["refresh_token"]; ok {
		t.Error("client_credentials answer has a refresh_token")
	}
	for k := range body {
		if !slices.Contains([]string{"access_token", "token_type", "expires_in", "scope"}, k) {
			t.Errorf("unexpected member %q", k)
		}
	}
	if got := w.Header().Get("Content-Length"); got != strconv.Itoa(w.Body.Len()) {
		t.Errorf("Content-Length = %s for %d bytes", got, w.Body.Len())
	}
}

// TestAccessTokenJWT decodes an issued token and checks its header against
// the JWKS and its claims against RFC 9068 (§2.1, §2.2, §2.2.3).
func TestAccessTokenJWT(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	before := time.Now().Unix()
	w := serve(e, tokenCase{body: ccForm + "&scope=read+write", auth: authBasic}.request())
	after := time.Now().Unix()
	tok := checkToken(t, w)["access_token"].(string)

	hdr, claims := segments(t, tok)
	if hdr["typ"] != "at+jwt" {
		t.Errorf("typ = %v, want at+jwt", hdr["typ"])
	}
	if hdr["alg"] != "ES256" {
		t.Errorf("alg = %v, want ES256", hdr["alg"])
	}
	kid, _ := hdr["kid"].(string)
	if kid == "" {
		t.Fatal("no kid")
	}
	for k := range hdr {
		if k != "typ" && k != "alg" && k != "kid" {
			t.Errorf("unexpected header %q", k)
		}
	}

	// The kid names a key in the published JWKS, and that key verifies
	// the token with jwx's own verifier.
	jw := httptest.NewRecorder()
	e.serveJWKS(jw, httptest.NewRequest(http.MethodGet, testIssuer+JWKSPath, nil))
	set, err := jwk.Parse(jw.Body.Bytes())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	key, ok := set.LookupKeyID(kid)
	if !ok {
		t.Fatalf("kid %q is not in the JWKS %s", kid, jw.Body.String())
	}
	if _, err := jws.Verify([]byte(tok), jws.WithKeySet(set, jws.WithRequireKid(true))); err != nil {
		t.Errorf("jwx does not verify the token with the JWKS: %v", err)
	}
	if alg, ok := key.Algorithm(); !ok || alg.String() != "ES256" {
		t.Errorf("JWKS alg = %v", alg)
	}

	// RFC 9068 §2.2 claims.
	str := func(name string) string {
		s, ok := claims[name].(string)
		if !ok {
			t.Errorf("%s = %#v, want a string", name, claims[name])
		}
		return s
	}
	num := func(name string) int64 {
		n, ok := claims[name].(json.Number)
		if !ok {
			t.Fatalf("%s = %#v, want a number", name, claims[name])
		}
		v, err := n.Int64()
		if err != nil {
			t.Fatalf("%s = %s, want an integer", name, n)
		}
		return v
	}
	if got := str("iss"); got != testIssuer {
		t.Errorf("iss = %q", got)
	}
	if got := str("sub"); got != "c-basic" {
		t.Errorf("sub = %q, want the client_id", got)
	}
	if got := str("client_id"); got != "c-basic" {
		t.Errorf("client_id = %q", got)
	}
	if got := str("aud"); got != testRS {
		t.Errorf("aud = %q", got)
	}
	if got := str("scope"); got != "read write" {
		t.Errorf("scope = %q, want a space-separated string", got)
	}
	if str("jti") == "" {
		t.Error("empty jti")
	}
	iat, exp := num("iat"), num("exp")
	if iat < before || iat > after {
		t.Errorf("iat = %d, want within [%d, %d]", iat, before, after)
	}
	if exp-iat != int64(testTTL/time.Second) {
		t.Errorf("exp - iat = %d, want %d", exp-iat, int64(testTTL/time.Second))
	}
	if _, ok := claims["nbf"]; ok {
		t.Error("nbf is present though never set")
	}

	// The engine's own verifier accepts it.
	c, err := e.verifier.Verify(tok, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.ClientID != "c-basic" || !c.Audience.Contains(testRS) || !slices.Equal(c.Scopes(), []string{"read", "write"}) {
		t.Errorf("claims = %+v", c)
	}
}

// RFC 9068 §2.2: jti is unique.
func TestAccessTokenJTIUnique(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture())
	seen := map[string]bool{}
	for range 200 {
		w := serve(e, tokenCase{body: ccForm, auth: authBasic}.request())
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
		var body TokenResponse
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		_, claims := segments(t, body.AccessToken)
		jti := claims["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %q issued twice", jti)
		}
		seen[jti] = true
	}
}

// A storage-free failure: signing with a broken key is a 500 that says
// nothing about the cause.
func TestTokenSigningFailure(t *testing.T) {
	e := newEngine(t, ccFixture())
	// A key ring of keys that cannot sign, in place of the engine's: each
	// key is of another type than its algorithm needs.
	broken, err := tokens.NewKeys(tokens.KeyOptions{Algs: e.ringAlgs(), Generate: func(alg string) (crypto.Signer, error) {
		if alg == "ES256" {
			return generateKey("RS256") // the test pool: RSA keys are slow to make
		}
		return generateKey("ES256")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := broken.Load(t.Context(), openStore(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	e.keys = broken
	w := serve(e, tokenCase{body: ccForm, auth: authBasic}.request())
	body := checkError(t, w, http.StatusInternalServerError, CodeServerError)
	if d, _ := body["error_description"].(string); strings.Contains(d, "sign") || bytes.Contains(w.Body.Bytes(), []byte("boom")) {
		t.Errorf("internal detail leaked: %s", w.Body.String())
	}
}

func TestNewEngineErrors(t *testing.T) {
	t.Parallel()
	good := func() Config {
		return Config{Issuer: testIssuer, AccessTokenTTL: time.Minute, Clients: ccClients()}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad issuer", func(c *Config) { c.Issuer = "http://as.test" }, "https"},
		{"zero ttl", func(c *Config) { c.AccessTokenTTL = 0 }, "access_token_ttl"},
		{"negative ttl", func(c *Config) { c.AccessTokenTTL = -time.Second }, "access_token_ttl"},
		{"duplicate client", func(c *Config) { c.Clients = append(c.Clients, ccClients()[0]) }, "defined twice"},
		{"invalid client", func(c *Config) { c.Clients = append(c.Clients, &Client{ClientSpec: ClientSpec{ID: "x"}}) }, "auth_method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.mod(&cfg)
			_, err := NewEngine(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	e, err := NewEngine(good())
	if err != nil {
		t.Fatal(err)
	}
	if e.logger == nil {
		t.Error("a nil Logger is not replaced")
	}
	hs := good()
	hs.SigningAlg = "HS256"
	if _, err := NewEngine(hs); err == nil || !strings.Contains(err.Error(), "signing_alg") {
		t.Errorf("NewEngine accepted signing_alg HS256: %v", err)
	}
}
