package grants

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/mem"
	"github.com/oauthgate/caddy-oauthgate/storage/storagetest"
)

// Run a target with, for example:
//
//	go test ./grants -run '^$' -fuzz FuzzVerify -fuzztime 30s
//
// Plain `go test` runs the seed corpus of each target as a unit test.

func FuzzParseFormBody(f *testing.F) {
	for _, s := range []string{
		"", "=", "&", "&&", "==", "a", "a=", "=a",
		"grant_type=client_credentials",
		"grant_type=client_credentials&scope=read+write",
		"grant_type=client_credentials&grant_type=password",
		"grant_type=&scope=",
		"scope=&scope=",
		"foo=1&foo=2",
		"grant_type=%zz",
		"grant_type=%",
		"scope=%ff",
		"scope=%C0%AF",
		"grant%5Ftype=x",
		"a;b=c",
		"grant_type=client_credentials;scope=read",
		"client_id=%00",
		"resource=https%3A%2F%2Fapp.test&resource=",
		strings.Repeat("scope=a&", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		form, oerr := parseFormBody(body, knownParams)
		if oerr != nil {
			if form != nil {
				t.Fatalf("form and error both returned")
			}
			if oerr.Code != CodeInvalidRequest || oerr.Status != 400 {
				t.Fatalf("error = %+v", oerr)
			}
			if !descRE.MatchString(oerr.Description) {
				t.Fatalf("description %q outside the TOK-12 set", oerr.Description)
			}
			return
		}
		values, err := url.ParseQuery(body)
		if err != nil {
			t.Fatalf("accepted a body url.ParseQuery refuses: %v", err)
		}
		for name, v := range form {
			if !knownParams[name] {
				t.Fatalf("unknown parameter %q kept", name)
			}
			if v == "" {
				t.Fatalf("parameter %q kept with an empty value", name)
			}
			if !utf8.ValidString(v) {
				t.Fatalf("parameter %q is not UTF-8", name)
			}
			if vs := values[name]; len(vs) != 1 || vs[0] != v {
				t.Fatalf("parameter %q = %q, but the body holds %q", name, v, vs)
			}
		}
		// Nothing known and non-empty was dropped.
		for name, vs := range values {
			if knownParams[name] && vs[0] != "" && form[name] != vs[0] {
				t.Fatalf("parameter %q dropped", name)
			}
		}
	})
}

func FuzzParseBasic(f *testing.F) {
	f.Add(basicAuth("c-basic", basicSecret), "c-basic", basicSecret)
	f.Add(rawBasic("c-basic", basicSecret), "a b", "x+y")
	f.Add("Basic", "", "")
	f.Add("Basic ", ":", ":")
	f.Add("basic "+b64(":"), "%", "%%")
	f.Add("Basic "+b64("a:b:c"), "ü", "\x00")
	f.Add("Basic "+b64("%zz:x"), "id", "")
	f.Add("Basic "+b64("a:%zz"), "", "secret")
	f.Add("Basic  "+b64("a:b"), "a", "b")
	f.Add("Bearer "+b64("a:b"), "\xff", "\xfe")
	f.Add("Basic "+b64("a:b")+"=", "a", "b")
	f.Add("Basic YTpi\r\n", "a", "b")
	f.Fuzz(func(t *testing.T, header, id, secret string) {
		gotID, gotSecret, ok := parseBasic(header)
		if ok && gotID == "" {
			t.Fatalf("ok with an empty id for %q", header)
		}
		if !ok && (gotID != "" || gotSecret != "") {
			t.Fatalf("credentials returned with ok=false for %q", header)
		}
		// Round trip: whatever we form-encode and base64, we read back.
		gotID, gotSecret, ok = parseBasic(basicAuth(id, secret))
		if ok != (id != "") {
			t.Fatalf("parseBasic(basicAuth(%q, %q)) ok = %v", id, secret, ok)
		}
		if ok && (gotID != id || gotSecret != secret) {
			t.Fatalf("round trip (%q, %q) -> (%q, %q)", id, secret, gotID, gotSecret)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"", " ", "read", "read write", "read  write", " read", "read ", "a\tb", `a"b`, `a\b`,
		"read read", "é", "\x7f", "!#[]~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, oerr := parseScope(s)
		if oerr != nil {
			if oerr.Code != CodeInvalidScope {
				t.Fatalf("code = %s", oerr.Code)
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("parseScope(%q) accepted nothing", s)
		}
		for i, tok := range got {
			if !validScopeToken(tok) || slices.Contains(got[:i], tok) {
				t.Fatalf("parseScope(%q) = %q", s, got)
			}
		}
		// Accepted scopes are the single-space separated tokens of s, in
		// order, first occurrence kept.
		var want []string
		for _, p := range strings.Split(s, " ") {
			if !slices.Contains(want, p) {
				want = append(want, p)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("parseScope(%q) = %q, want %q", s, got, want)
		}
	})
}

// fuzzEngine is an engine on an in-memory store for the endpoint fuzz
// targets: built once per target (outside f.Fuzz), it never fsyncs, and
// its store counts what each request persisted. Its clients cover every
// grant and authentication method, and its users have MinCost hashes.
type fuzzEngine struct {
	*Engine
	st *storagetest.Counting
}

// fuzzPWSecret is the secret of the fuzz engine's password and
// introspection clients.
const fuzzPWSecret = "fuzz-secret"

func newFuzzEngine(f *testing.F) *fuzzEngine {
	f.Helper()
	cfg := testConfig()
	trustKeys, err := ParseJWKS(caJWKS(f, caOtherKey.Public(), "idp1", ""))
	if err != nil {
		f.Fatal(err)
	}
	cfg.Clients = append(cfg.Clients, caClients(f)...)
	cfg.Clients = append(cfg.Clients,
		&Client{
			ClientSpec: ClientSpec{
				ID:         "c-jb",
				AuthMethod: AuthSecretPost,
				GrantTypes: []string{GrantJWTBearer},
				Scopes:     []string{"read", "write"},
			},
			SecretHash: HashSecret(postSecret),
		},
		&Client{
			ClientSpec: ClientSpec{
				ID:         "c-tx",
				AuthMethod: AuthSecretPost,
				GrantTypes: []string{GrantTokenExchange, GrantJWTBearer},
				Scopes:     []string{"openid", "read", "write"},
			},
			SecretHash: HashSecret(postSecret),
			Exchange:   ExchangePolicy{Audiences: []string{"urn:svc:b"}, Resources: []string{"https://b.test"}},
		},
		// Actors of token exchange, under their client ids.
		&Client{ClientSpec: ClientSpec{ID: "svc-a", AuthMethod: AuthSecretBasic, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret("svc-a")},
		&Client{
			ClientSpec: ClientSpec{
				ID:         "c-ropc",
				AuthMethod: AuthSecretPost,
				GrantTypes: []string{GrantPassword, GrantRefreshToken},
				Scopes:     []string{"openid", "read"},
			},
			SecretHash: HashSecret(fuzzPWSecret),
		},
		&Client{
			ClientSpec: ClientSpec{
				ID:             "c-rs",
				AuthMethod:     AuthSecretBasic,
				ResourceServer: true,
				GrantTypes:     []string{GrantClientCredentials},
				Audience:       []string{"https://app.test"},
			},
			SecretHash: HashSecret(fuzzPWSecret),
		},
	)
	// Failed sign-ins from one address are answered late past
	// IPMaxFailures; a fuzz iteration must not sleep, so that delay is off
	// (the lockouts stay).
	cfg.Web.Throttle = ThrottleConfig{IPMaxFailures: math.MaxInt32}
	cfg.TrustedIssuers = []*TrustedIssuer{{Issuer: jbIssuer, Keys: trustKeys, AllowedClients: []string{"c-jb", "c-tx"}, Scopes: []string{"read"}}}
	e, err := NewEngine(cfg)
	if err != nil {
		f.Fatalf("NewEngine: %v", err)
	}
	st := storagetest.NewCounting(mem.New())
	rev, err := tokens.LoadRevocations(context.Background(), st)
	if err != nil {
		f.Fatal(err)
	}
	if err := e.Start(context.Background(), st, rev); err != nil {
		f.Fatalf("Start: %v", err)
	}
	return &fuzzEngine{Engine: e, st: st}
}

// fuzzRequest is a POST to path over TLS with the given Content-Type and
// Authorization headers; a newline in either sends several header lines,
// and an empty one sends none.
func fuzzRequest(path, contentType, authz, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, testIssuer+path, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.7:4711"
	if contentType != "" {
		r.Header["Content-Type"] = strings.Split(contentType, "\n")
	}
	if authz != "" {
		r.Header["Authorization"] = strings.Split(authz, "\n")
	}
	return r
}

// protocolCodes are the error codes an OAuth endpoint may answer with:
// RFC 6749 §5.2, RFC 8707 §2 (invalid_target) and §4.1.2.1's
// temporarily_unavailable.
var protocolCodes = map[string]bool{
	CodeInvalidRequest: true, CodeInvalidClient: true, CodeInvalidGrant: true, CodeUnauthorizedClient: true,
	CodeUnsupportedGrantType: true, CodeInvalidScope: true, CodeInvalidTarget: true, CodeTemporarilyUnavailable: true,
	// RFC 7009 §2.2.1, for a token type the server cannot revoke.
	"unsupported_token_type": true,
}

// checkFuzzRefusal asserts a well-formed refusal: a 4xx (never a 5xx),
// no-store, and a JSON object whose error is a protocol code and whose
// members are only error, error_description and error_uri, in the RFC 6749 §5.2
// character set.
func checkFuzzRefusal(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code < 400 || w.Code >= 500 {
		t.Fatalf("status %d (body %q)", w.Code, w.Body.String())
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("refusal %d with Content-Type %q", w.Code, got)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("refusal %d with Cache-Control %q", w.Code, got)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("refusal %d body %q is not a JSON object: %v", w.Code, w.Body.String(), err)
	}
	code, _ := m["error"].(string)
	if !protocolCodes[code] {
		t.Fatalf("refusal %d with error %v (body %q)", w.Code, m["error"], w.Body.String())
	}
	for k, v := range m {
		s, ok := v.(string)
		if k != "error" && k != "error_description" && k != "error_uri" || !ok || !descRE.MatchString(s) {
			t.Fatalf("refusal member %q = %#v (body %q)", k, v, w.Body.String())
		}
	}
}

// persisted returns the record kinds written since before (a Writes
// snapshot), except those in allowed.
func (fe *fuzzEngine) persisted(before map[storage.Kind]int, allowed ...storage.Kind) []storage.Kind {
	var out []storage.Kind
	for k, n := range fe.st.Writes() {
		if n != before[k] && !slices.Contains(allowed, k) {
			out = append(out, k)
		}
	}
	return out
}

// fuzzPlaceholders fills the placeholders seeds use so that a signed
// assertion stays current and single-use however long the corpus lives:
// $NOW and $EXP (now + 60 s) become Unix times, $JTI a fresh id, $KID the
// engine's current signing key id.
func (fe *fuzzEngine) fuzzPlaceholders(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	now := time.Now().Unix()
	return strings.NewReplacer("$NOW", strconv.FormatInt(now, 10), "$EXP", strconv.FormatInt(now+60, 10),
		"$JTI", tokens.RandomID(12), "$KID", fe.keyRing().Current.ID).Replace(s)
}

// signJSON signs raw header and claims JSON (placeholders filled) with
// key under alg, as caSign does for maps; alg "none" leaves the signature
// empty.
func (fe *fuzzEngine) signJSON(t testing.TB, alg string, key any, hdr, claims string) string {
	return caSign(t, alg, key, fe.fuzzPlaceholders(hdr), fe.fuzzPlaceholders(claims))
}

// segmentJSON returns the decoded segment i of a compact JWS.
func segmentJSON(t testing.TB, tok string, i int) []byte {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d segments", tok, len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("segment %d of %q: %v", i, tok, err)
	}
	return b
}

// fuzzTokenSeeds are seed inputs (Content-Type, Authorization, body) for
// the endpoints that take a token (introspection, revocation): live
// access tokens of c-web (one for app.test, which c-rs may introspect)
// and a live refresh token of c-ropc, each sent by its own client, by
// another, and by the resource server.
func (fe *fuzzEngine) fuzzTokenSeeds(f *testing.F) [][3]string {
	f.Helper()
	const form = "application/x-www-form-urlencoded"
	mint := func(aud string) string {
		tok, err := fe.keyRing().Current.MintAccessToken(tokens.NewAccessClaims(testIssuer, "alice", "c-web", []string{aud}, []string{"read"}, time.Now(), time.Hour))
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	w := serve(fe.Engine, tokenRequest(url.Values{"grant_type": {GrantPassword}, "client_id": {"c-ropc"}, "client_secret": {fuzzPWSecret},
		"username": {"alice"}, "password": {"alice-pw"}, "scope": {"openid read"}}.Encode()))
	rt, _ := decodeBody(f, w)["refresh_token"].(string)
	if rt == "" {
		f.Fatalf("no refresh token: %s", w.Body.String())
	}
	web, rs := siBasicAuth("c-web", webSecret), siBasicAuth("c-rs", fuzzPWSecret)
	ropc := "client_id=c-ropc&client_secret=" + fuzzPWSecret + "&"
	at, atApp := mint(testIssuer), mint("https://app.test")
	return [][3]string{
		{form, web, "token=" + at},
		{form, web, "token=" + at + "&token_type_hint=access_token"},
		{form, rs, "token=" + atApp},
		{form, rs, "token=" + at + "&token_type_hint=refresh_token"},
		{form, "", ropc + "token=" + url.QueryEscape(rt) + "&token_type_hint=refresh_token"},
		{form, web, "token=" + url.QueryEscape(rt)},
		{form, "", ropc + "token=" + url.QueryEscape(rt[:len(rt)-1]+"A")},
		{form, web + "\n" + web, "token=x"},
		{form, "Basic Og==", "token=x&token=y"},
		{"text/plain", web, "token=x"},
		{form, "", "token="},
		{"", "", ""},
	}
}

// serveWith runs handler on r.
func serveWith(handler http.HandlerFunc, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	handler(w, r)
	return w
}
