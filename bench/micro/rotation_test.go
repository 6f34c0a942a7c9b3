//go:build oauthgate_bench

// BenchmarkRefreshRotation seeds grants with grants.SeedRefreshTokens,
// which only builds with the oauthgate_bench tag: run it with
// go test -tags oauthgate_bench -bench RefreshRotation ./bench/micro.

package micro

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// BenchmarkRefreshRotation is one refresh_token grant through
// Engine.ServeToken on a durable bbolt file: look up the token, rotate
// it in a group-committed transaction, mint the new tokens. Every
// goroutine follows its own chain of rotations, as grantload's workers
// do; "oauth" grants carry no openid scope (access token only), "oidc"
// ones add an ID token.
func BenchmarkRefreshRotation(b *testing.B) {
	for _, kind := range []string{"oauth", "oidc"} {
		b.Run(kind, func(b *testing.B) {
			scope := []string{"api"}
			if kind == "oidc" {
				scope = []string{"openid", "api"}
			}
			const webID, webSecret = "web", "web-secret-0123456789abcdef0123456789abcdef"
			webBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte(webID+":"+webSecret))
			eng, err := grants.NewEngine(grants.Config{
				Issuer:          issuer,
				AccessTokenTTL:  time.Hour,
				RefreshTokenTTL: 24 * time.Hour,
				Users:           []*grants.User{{Name: "alice", PasswordHash: "$2a$04$invalidinvalidinvalidinvalidinvalidinvalidinvalidinva", FromConfig: true}},
				Clients: []*grants.Client{{
					ClientSpec: grants.ClientSpec{
						ID:           webID,
						AuthMethod:   grants.AuthSecretBasic,
						GrantTypes:   []string{grants.GrantAuthorizationCode, grants.GrantRefreshToken},
						Scopes:       scope,
						RedirectURIs: []string{"http://127.0.0.1/cb"},
					},
					SecretHash: grants.HashSecret(webSecret),
				}},
			})
			if err != nil {
				b.Fatal(err)
			}
			st := openStore(b)
			start(b, eng, st)
			chains, err := grants.SeedRefreshTokens(context.Background(), st, webID, "alice", scope, 256, 256, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(32) // 64 writers on 2 CPUs, as bench/run.sh
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				rt := chains[next.Add(1)-1]
				for pb.Next() {
					form := "grant_type=refresh_token&refresh_token=" + rt
					r := httptest.NewRequest(http.MethodPost, issuer+grants.TokenPath, strings.NewReader(form))
					r.RemoteAddr = "127.0.0.1:40000"
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					r.Header.Set("Authorization", webBasic)
					w := httptest.NewRecorder()
					eng.ServeHTTP(w, r)
					var tr grants.TokenResponse
					if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil || tr.RefreshToken == "" {
						b.Errorf("rotation: %d %s", w.Code, w.Body)
						return
					}
					rt = tr.RefreshToken
				}
			})
		})
	}
}
