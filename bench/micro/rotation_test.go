//go:build oauthgate_bench

// The durable-path benchmarks seed grants and codes with
// grants.SeedRefreshTokens and grants.SeedCodes, which only build with the
// oauthgate_bench tag: run them with
// go test -tags oauthgate_bench -run '^$' -bench 'RefreshRotation|CodeRedemption' ./bench/micro.

package micro

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

const (
	webID, webSecret = "web", "web-secret-0123456789abcdef0123456789abcdef"
	webRedirect      = "http://127.0.0.1/cb"
)

var webBasic = "Basic " + base64.StdEncoding.EncodeToString([]byte(webID+":"+webSecret))

// postToken sends form to eng's token endpoint as the web client and
// returns the response.
func postToken(eng *grants.Engine, form string) (*grants.TokenResponse, error) {
	r := httptest.NewRequest(http.MethodPost, issuer+grants.TokenPath, strings.NewReader(form))
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", webBasic)
	w := httptest.NewRecorder()
	eng.ServeHTTP(w, r)
	var tr grants.TokenResponse
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil || tr.AccessToken == "" {
		return nil, fmt.Errorf("token endpoint: %d %s", w.Code, w.Body)
	}
	return &tr, nil
}

// BenchmarkRefreshRotation is one refresh_token grant through
// Engine.ServeToken on a durable store: look up the token, rotate it in
// a transaction that is on disk before the answer, mint the new tokens.
// Every goroutine follows its own chain of rotations, as grantload's
// workers do; "oauth" grants carry no openid scope (access token only),
// "oidc" ones add an ID token. Sub-benchmarks: kind/store/mode (see
// durableStores and durableModes); rotations/s is the figure.
func BenchmarkRefreshRotation(b *testing.B) {
	for _, kind := range []string{"oauth", "oidc"} {
		b.Run(kind, func(b *testing.B) {
			scope := []string{"api"}
			if kind == "oidc" {
				scope = []string{"openid", "api"}
			}
			forEachDurable(b, func(b *testing.B, store string, parallelism int) {
				st := openDurable(b, store)
				eng := webEngine(b, st, scope)
				chains, err := grants.SeedRefreshTokens(context.Background(), st, webID, "alice", scope, 256, 256, time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				var next atomic.Int64
				runDurable(b, parallelism, "rotations", func() func() error {
					rt := chains[next.Add(1)-1]
					return func() error {
						tr, err := postToken(eng, "grant_type=refresh_token&refresh_token="+rt)
						if err != nil {
							return err
						}
						if tr.RefreshToken == "" {
							return fmt.Errorf("rotation returned no refresh token")
						}
						rt = tr.RefreshToken
						return nil
					}
				})
			})
		})
	}
}

// BenchmarkCodeRedemption is one authorization_code grant through
// Engine.ServeToken on a durable store: the code is marked used and the
// grant (its refresh token) stored in one transaction that is on disk
// before the answer, then the tokens are minted. The codes are seeded
// before the timer starts (grants.SeedCodes, as the authorization
// endpoint stores them), so the figure is the redemption alone; bench/
// run.sh's grantload -mode code measures authorization and redemption
// together over HTTP. Scope "api": an access and a refresh token, no ID
// token. Sub-benchmarks: store/mode; redemptions/s is the figure.
func BenchmarkCodeRedemption(b *testing.B) {
	scope := []string{"api"}
	forEachDurable(b, func(b *testing.B, store string, parallelism int) {
		st := openDurable(b, store)
		eng := webEngine(b, st, scope)
		codes, err := grants.SeedCodes(context.Background(), st, webID, "alice", webRedirect, scope, b.N)
		if err != nil {
			b.Fatal(err)
		}
		redirect := "&redirect_uri=" + url.QueryEscape(webRedirect)
		var next atomic.Int64
		runDurable(b, parallelism, "redemptions", func() func() error {
			return func() error {
				code := codes[next.Add(1)-1]
				tr, err := postToken(eng, "grant_type=authorization_code&code="+code+redirect)
				if err != nil {
					return err
				}
				if tr.RefreshToken == "" {
					return fmt.Errorf("redemption returned no refresh token")
				}
				return nil
			}
		})
	})
}
