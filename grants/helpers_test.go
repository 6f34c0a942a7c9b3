package grants

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// descRE is the RFC 6749 §5.2 character set for error and error_description.
var descRE = regexp.MustCompile(`^[\x20\x21\x23-\x5B\x5D-\x7E]*$`)

// basicAuth builds an RFC 6749 §2.3.1 Basic credential: both halves are
// form-urlencoded before base64.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// rawBasic is a Basic credential built the way net/http's SetBasicAuth
// does it: no form-encoding.
func rawBasic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// tokenRequest is a well-formed token request over TLS: POST, form body.
func tokenRequest(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, testIssuer+TokenPath, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// serve runs the token endpoint on r.
func serve(e *Engine, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.serveToken(w, r)
	return w
}

// decodeBody decodes a JSON object body, failing the test otherwise.
func decodeBody(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(w.Body.String()))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", w.Body.String(), err)
	}
	return m
}

// checkNoStore asserts the headers every token-endpoint answer carries
// (RFC 6749 §5.1, and for errors too).
func checkNoStore(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	h := w.Result().Header
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := h.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", got)
	}
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
}

// checkError asserts a protocol error answer: status, code, headers,
// RFC 6749 §5.2 character set, and that no token leaked out. It returns the body.
func checkError(t testing.TB, w *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Errorf("status = %d, want %d (body %s)", w.Code, status, w.Body.String())
	}
	checkNoStore(t, w)
	m := decodeBody(t, w)
	if m["error"] != code {
		t.Errorf("error = %v, want %q (body %s)", m["error"], code, w.Body.String())
	}
	for _, k := range []string{"error", "error_description"} {
		if v, ok := m[k]; ok {
			s, isStr := v.(string)
			if !isStr || !descRE.MatchString(s) {
				t.Errorf("%s = %#v does not match the TOK-12 character set", k, v)
			}
		}
	}
	for k := range m {
		if k != "error" && k != "error_description" && k != "error_uri" {
			t.Errorf("unexpected member %q in error body %s", k, w.Body.String())
		}
	}
	return m
}

// checkToken asserts a 200 token answer and returns its body.
func checkToken(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", w.Code, w.Body.String())
	}
	checkNoStore(t, w)
	m := decodeBody(t, w)
	if s, _ := m["access_token"].(string); s == "" {
		t.Fatalf("no access_token in %s", w.Body.String())
	}
	return m
}

// segments splits a compact JWS and decodes its header and payload.
func segments(t testing.TB, tok string) (hdr, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3", len(parts))
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("segment %q is not base64url: %v", s, err)
		}
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("segment %s is not a JSON object: %v", b, err)
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

// mustJSON marshals v or fails the test.
func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// opAuth returns the credentials of a fixture client: a Basic header, or
// form fields for client_secret_post and public clients.
func opAuth(e *Engine, clientID string, form url.Values) string {
	secret, ok := testSecrets[clientID]
	switch clientID {
	case "rs-app":
		secret, ok = opRSSecret, true
	case "rs-b":
		secret, ok = opRSBSecret, true
	}
	c := e.clients[clientID]
	switch {
	case c == nil || c.AuthMethod == AuthNone || !ok:
		form.Set("client_id", clientID)
	case c.AuthMethod == AuthSecretPost:
		form.Set("client_id", clientID)
		form.Set("client_secret", secret)
	default:
		return siBasicAuth(clientID, secret)
	}
	return ""
}

// opPost sends a form to the revocation or introspection endpoint as the
// client (authz, when not empty, replaces the client's own credentials).
func opPost(e *Engine, h http.HandlerFunc, path, clientID string, form url.Values, authz string, dpop ...string) tokenResult {
	form = cloneValues(form)
	if authz == "" && clientID != "" {
		authz = opAuth(e, clientID, form)
	}
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = loopbackAddr
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	for _, p := range dpop {
		r.Header.Add("DPoP", p)
	}
	return record(h, r)
}

// record runs a JSON endpoint on r.
func record(h http.HandlerFunc, r *http.Request) tokenResult {
	rec := httptest.NewRecorder()
	h(rec, r)
	tr := tokenResult{status: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &tr.body)
	return tr
}

func opRevoke(e *Engine, clientID string, kv ...string) tokenResult {
	return opPost(e, e.serveRevoke, RevokePath, clientID, opForm(kv...), "")
}

func opIntrospect(e *Engine, clientID string, kv ...string) tokenResult {
	return opPost(e, e.serveIntrospect, IntrospectPath, clientID, opForm(kv...), "")
}

func opForm(kv ...string) url.Values {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

// opClientToken is a client_credentials access token of c-basic.
func opClientToken(t *testing.T, e *Engine) string {
	t.Helper()
	tr := postToken(e, "c-basic", url.Values{"grant_type": {"client_credentials"}})
	wantOK(t, tr)
	return tr.str("access_token")
}

// opInactive asserts the exact {"active":false} answer (RFC 7662 §2.2).
func opInactive(t *testing.T, tr tokenResult) {
	t.Helper()
	if tr.status != http.StatusOK || strings.TrimSpace(tr.raw) != `{"active":false}` {
		t.Fatalf(`want 200 {"active":false}, got %d %s`, tr.status, tr.raw)
	}
	if tr.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("introspection answer without Cache-Control: no-store")
	}
}

// opRule is one request-rule case for the revocation or introspection
// endpoint: who calls (client, or authz when set), with what form, and
// the expected status and error code (none for 200).
type opRule struct {
	name   string
	client string
	form   url.Values
	authz  string
	status int
	code   string
}

// opRunRules runs request-rule cases against an endpoint (RFC 7662 §2.1,
// RFC 7009 §2.1: the
// token endpoint's client authentication, including the Basic challenge).
func opRunRules(t *testing.T, e *Engine, h http.HandlerFunc, path string, rules []opRule) {
	t.Helper()
	for _, tt := range rules {
		t.Run(tt.name, func(t *testing.T) {
			tr := opPost(e, h, path, tt.client, tt.form, tt.authz)
			if tt.status == http.StatusOK {
				if tr.status != http.StatusOK {
					t.Fatalf("want 200, got %d %s", tr.status, tr.raw)
				}
				return
			}
			wantErr(t, tr, tt.status, tt.code)
			if tt.authz != "" && tt.status == http.StatusUnauthorized && tr.hdr.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 after Basic without WWW-Authenticate")
			}
		})
	}
}
