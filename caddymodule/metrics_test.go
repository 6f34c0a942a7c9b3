package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage/mem"
)

// counterValue reads a counter of the oauth collectors, as /metrics
// would show it, from a registry they were registered with.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestSecurityEventMetrics: the engine's security events reach the
// Prometheus counters: sign-ins by result, refresh-token reuse, and the
// admin API's changes by kind and action. The collectors are shared by
// every config in the process, so the test compares before and after.
func TestSecurityEventMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := grants.NewEngine(grants.Config{
		Issuer: "https://as.test", AccessTokenTTL: time.Minute, RefreshTokenTTL: time.Hour,
		Users: []*grants.User{{Name: "carol", PasswordHash: string(hash)}},
		Clients: []*grants.Client{{
			ClientSpec: grants.ClientSpec{ID: "c-ropc", AuthMethod: grants.AuthSecretBasic,
				GrantTypes: []string{grants.GrantPassword, grants.GrantRefreshToken}},
			SecretHash: grants.HashSecret("ropc-secret"),
		}},
		Web:      grants.WebConfig{SessionTTL: time.Hour, Throttle: grants.ThrottleConfig{MaxFailures: 2}},
		Observer: metricsObserver{},
		Logger:   zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background(), mem.New(), nil); err != nil {
		t.Fatal(err)
	}
	token := func(ip string, kv ...string) (int, map[string]any) {
		form := url.Values{"grant_type": {grants.GrantPassword}}
		for i := 0; i+1 < len(kv); i += 2 {
			form.Set(kv[i], kv[i+1])
		}
		r := httptest.NewRequest(http.MethodPost, grants.TokenPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("c-ropc:ropc-secret")))
		r.RemoteAddr, r.TLS = ip+":1", &tls.ConnectionState{}
		w := httptest.NewRecorder()
		eng.ServeHTTP(w, r)
		var body map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		return w.Code, body
	}
	signins := func(result string) float64 {
		return counterValue(t, reg, "caddy_oauth_signins_total", map[string]string{"result": result})
	}
	reuse := func() float64 { return counterValue(t, reg, "caddy_oauth_refresh_token_reuse_total", nil) }
	changes := func(kind, action string) float64 {
		return counterValue(t, reg, "caddy_oauth_admin_changes_total", map[string]string{"kind": kind, "action": action})
	}
	ok0, fail0, locked0, reuse0 := signins("success"), signins("failure"), signins("locked"), reuse()

	for range 2 {
		if code, _ := token("192.0.2.1", "username", "carol", "password", "wrong"); code != http.StatusBadRequest {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if code, _ := token("192.0.2.1", "username", "carol", "password", "carol-pw"); code != http.StatusTooManyRequests {
		t.Fatalf("while locked: %d", code)
	}
	code, body := token("192.0.2.2", "username", "carol", "password", "carol-pw")
	rt, _ := body["refresh_token"].(string)
	if code != http.StatusOK || rt == "" {
		t.Fatalf("sign-in from another address: %d %v", code, body)
	}
	if d := [3]float64{signins("success") - ok0, signins("failure") - fail0, signins("locked") - locked0}; d != [3]float64{1, 2, 1} {
		t.Errorf("sign-ins counted (success, failure, locked) %v, want [1 2 1]", d)
	}

	if code, _ := token("192.0.2.2", "grant_type", grants.GrantRefreshToken, "refresh_token", rt); code != http.StatusOK {
		t.Fatalf("refresh: %d", code)
	}
	if code, _ := token("192.0.2.2", "grant_type", grants.GrantRefreshToken, "refresh_token", rt); code != http.StatusBadRequest {
		t.Fatalf("reuse: %d", code)
	}
	if d := reuse() - reuse0; d != 1 {
		t.Errorf("refresh reuse counted %v times, want 1", d)
	}

	type change struct{ kind, action string }
	all := []change{{"user", "created"}, {"user", "updated"}, {"user", "removed"}, {"client", "created"},
		{"client", "removed"}, {"grants", "revoked"}, {"key", "rotated"}}
	before := map[change]float64{}
	for _, c := range all {
		before[c] = changes(c.kind, c.action)
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/oauth/users", `{"name":"dave","password_hash":"` + string(hash) + `"}`},
		{http.MethodPut, "/oauth/users/dave", `{"claims":{"email":"d@x.test"}}`},
		{http.MethodDelete, "/oauth/users/dave", ""},
		{http.MethodPost, "/oauth/clients", `{"client_id":"svc","grant_types":["client_credentials"]}`},
		{http.MethodDelete, "/oauth/clients/svc", ""},
		{http.MethodPost, "/oauth/revoke", `{"subject":"carol"}`},
		{http.MethodPost, "/oauth/keys/rotate", ""},
		// Refused: counted nowhere.
		{http.MethodDelete, "/oauth/users/carol", ""},
		{http.MethodPost, "/oauth/revoke", `{}`},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		w := httptest.NewRecorder()
		err := routeAdmin(w, r, eng)
		if refused := strings.Contains(tc.path, "carol") || tc.body == `{}`; (err != nil) != refused {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
	}
	for _, c := range all {
		if d := changes(c.kind, c.action) - before[c]; d != 1 {
			t.Errorf("admin change %s %s counted %v times, want 1", c.kind, c.action, d)
		}
	}
}
