package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage/mem"
	"github.com/oauthgate/caddy-oauthgate/storage/storagetest"
)

// FuzzAdminAPI sends the admin API's JSON handlers fuzzed bodies, calling
// them directly on an engine over an in-memory store (no Caddy, no fsync):
// op selects user create (POST /oauth/users), user update (PUT
// /oauth/users/<name>), client create (POST /oauth/clients) or revoke
// (POST /oauth/revoke). A handler never panics and never fails with a
// 5xx; a refusal is a caddy.APIError that persists nothing; a success
// answers as documented and its user or client is there to be found.
func FuzzAdminAPI(f *testing.F) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	eng, err := grants.NewEngine(grants.Config{
		Issuer: "https://as.test", AccessTokenTTL: time.Minute, RefreshTokenTTL: time.Hour,
		Users: []*grants.User{{Name: "carol", PasswordHash: string(hash)}},
		Clients: []*grants.Client{{
			ClientSpec: grants.ClientSpec{
				ID:         "c-config",
				AuthMethod: grants.AuthSecretBasic,
				GrantTypes: []string{grants.GrantClientCredentials},
			},
			SecretHash: grants.HashSecret("x"),
		}},
		Web:    grants.WebConfig{SessionTTL: time.Hour},
		Logger: zap.NewNop(),
	})
	if err != nil {
		f.Fatal(err)
	}
	st := storagetest.NewCounting(mem.New())
	if err := eng.Start(context.Background(), st, nil); err != nil {
		f.Fatal(err)
	}
	h := string(hash)
	for _, s := range []struct {
		op         uint8
		name, body string
	}{
		{0, "", `{"name":"dave","password_hash":"` + h + `","claims":{"email":"d@x.test"}}`},
		{0, "", `{"name":"carol","password_hash":"` + h + `"}`},
		{0, "", `{"name":"c-config","password_hash":"` + h + `"}`},
		{0, "", `{"name":"e\u0000ve","password_hash":"$2a$04$x"}`},
		{0, "", `{"name":"frank","password_hash":"` + h + `","source":"config","extra":1}`},
		{1, "dave", `{"claims":{"name":"Dave"}}`},
		{1, "dave", `{"name":"other","password_hash":"` + h + `"}`},
		{1, "carol", `{"claims":{}}`},
		{1, "nobody", `{}`},
		{2, "", `{"client_id":"svc-x","grant_types":["client_credentials"],"scopes":["read"],"audience":["https://app.test"]}`},
		{2, "", `{"client_id":"spa","public":true,"grant_types":["authorization_code","refresh_token"],"redirect_uris":["https://spa.test/cb"]}`},
		{2, "", `{"client_id":"spa2","public":true,"auth_method":"client_secret_basic","grant_types":["authorization_code"]}`},
		{2, "", `{"client_id":"c-config","grant_types":["client_credentials"]}`},
		{2, "", `{"client_id":"carol","grant_types":["client_credentials"]}`},
		{2, "", `{"client_id":"op","grant_types":["client_credentials"],"access_token_format":"opaque","resource_server":true}`},
		{3, "", `{"subject":"dave"}`},
		{3, "", `{"client_id":"svc-x"}`},
		{3, "", `{"subject":"a","client_id":"b"}`},
		{3, "", `{"subject":"ext#https%3A%2F%2Fidp.test#x"}`},
		{3, "", `{}[]`},
		{0, "", ``},
	} {
		f.Add(s.op, s.name, s.body)
	}
	f.Fuzz(func(t *testing.T, op uint8, name, body string) {
		op %= 4
		// A stored hash costlier than the users' raises the cost of every
		// sign-in check at once (and makes a dummy hash at that cost in
		// the background: cost 31 would run for days). That is by design,
		// and not for a fuzz iteration to pay.
		var probe struct {
			PasswordHash string `json:"password_hash"`
		}
		_ = json.NewDecoder(strings.NewReader(body)).Decode(&probe)
		if c, err := bcrypt.Cost([]byte(probe.PasswordHash)); err == nil && c > bcrypt.MinCost {
			return
		}
		ctx := context.Background()
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/oauth/", strings.NewReader(body))
		before := st.Writes()
		var err error
		switch op {
		case 0:
			err = putUser(w, r, eng, "", true)
		case 1:
			err = putUser(w, r, eng, name, false)
		case 2:
			err = addClient(w, r, eng)
		default:
			err = revokeAll(w, r, eng)
		}
		if err != nil {
			var ae caddy.APIError
			if !errors.As(err, &ae) || ae.HTTPStatus < 400 || ae.HTTPStatus >= 500 || ae.Message == "" {
				t.Fatalf("op %d: error %#v", op, err)
			}
			for k, n := range st.Writes() {
				if n != before[k] {
					t.Fatalf("op %d refused (%v) but persisted %s", op, err, k)
				}
			}
			return
		}
		switch op {
		case 0, 1:
			var in adminUser
			_ = json.Unmarshal([]byte(body), &in)
			if op == 1 {
				in.Name = name
			}
			if op == 0 && w.Code != http.StatusCreated {
				t.Fatalf("user created with status %d", w.Code)
			}
			u, err := eng.LookupUser(ctx, in.Name)
			if err != nil || u.FromConfig {
				t.Fatalf("user %q written but not found: %v", in.Name, err)
			}
			if err := grants.ValidateUser(u); err != nil {
				t.Fatalf("stored an invalid user: %v", err)
			}
		case 2:
			var out map[string]string
			if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &out) != nil || out["client_id"] == "" {
				t.Fatalf("client created: %d %s", w.Code, w.Body.String())
			}
			list, err := eng.ListClients(ctx)
			if err != nil || !slices.ContainsFunc(list, func(c grants.ClientInfo) bool { return c.ID == out["client_id"] }) {
				t.Fatalf("client %q created but not listed (%v)", out["client_id"], err)
			}
		default:
			var out map[string]int
			if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &out) != nil {
				t.Fatalf("revoke answered %d %s", w.Code, w.Body.String())
			}
		}
	})
}
