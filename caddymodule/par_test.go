package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPAROptions: require_pushed_authorization_requests (app and client)
// and pushed_request_ttl adapt to JSON and reach the engine, which
// refuses a TTL out of range.
func TestPAROptions(t *testing.T) {
	src := "oauth {\n issuer https://as.test\n require_pushed_authorization_requests\n pushed_request_ttl 90s\n" +
		" client web {\n  secret s3cret-s3cret-s3cret-s3cret\n  grant_types authorization_code\n  redirect_uri https://web.test/cb\n  require_pushed_authorization_requests\n }\n}"
	app, err := parseOAuth(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if !app.RequirePushedAuthorizationRequests || time.Duration(app.PushedRequestTTL) != 90*time.Second ||
		len(app.Clients) != 1 || !app.Clients[0].RequirePushedAuthorizationRequests {
		t.Fatalf("parsed: %+v", app)
	}
	b, _ := json.Marshal(app)
	for _, want := range []string{`"require_pushed_authorization_requests":true,"pushed_request_ttl":90000000000`, `"redirect_uris":["https://web.test/cb"],"require_pushed_authorization_requests":true`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("JSON lacks %s: %s", want, b)
		}
	}
	for _, bad := range []string{"oauth {\n require_pushed_authorization_requests yes\n}", "oauth {\n pushed_request_ttl\n}",
		"oauth {\n client x {\n  require_pushed_authorization_requests 1\n }\n}"} {
		if _, err := parseOAuth(t, bad); err == nil {
			t.Fatalf("accepted: %q", bad)
		}
	}
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n pushed_request_ttl 11m\n}"); err == nil || !strings.Contains(err.Error(), "pushed_request_ttl") {
		t.Fatalf("pushed_request_ttl 11m: %v", err)
	}
}

// The admin API takes require_pushed_authorization_requests (its body
// is decoded strictly, so an unknown member would be refused).
func TestAdminClientRequirePAR(t *testing.T) {
	var in adminClient
	r := httptest.NewRequest(http.MethodPost, "/oauth/clients", strings.NewReader(`{"client_id":"web","grant_types":["authorization_code"],"redirect_uris":["https://web.test/cb"],"require_pushed_authorization_requests":true}`))
	if err := decodeAdmin(httptest.NewRecorder(), r, &in); err != nil || !in.RequirePushedAuthorizationRequests {
		t.Fatalf("decodeAdmin: %+v %v", in, err)
	}
}
