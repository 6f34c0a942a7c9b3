package grants

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

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
func opPost(e *Engine, h http.HandlerFunc, path, clientID string, form url.Values, authz string) tokenResult {
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

// opInactive asserts the exact {"active":false} answer (INT-04).
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

// opRunRules runs request-rule cases against an endpoint (CA-16: the
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
