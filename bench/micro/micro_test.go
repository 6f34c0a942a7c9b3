// Package micro holds allocation-reporting micro-benchmarks of the hot
// paths, written against the exported API of grants and storage/bolt:
//
//	go test -run '^$' -bench . -benchmem ./bench/micro/
//
// The token endpoint is measured whole and in-process (ServeToken with
// httptest), so the figure includes request parsing, client
// authentication, minting and JSON encoding, but no network or Caddy.
// gate_test.go measures through an in-process Caddy server instead
// (its handler called directly, no sockets): oauth_protect against the
// same route without it, and the token endpoint with Caddy's glue.
package micro

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

const (
	issuer   = "http://127.0.0.1:18080"
	audience = "http://127.0.0.1:18082"
	clientID = "bench"
	secret   = "bench-secret-0123456789abcdef0123456789abcdef"
	formBody = "grant_type=client_credentials&scope=bench%3Aread"
)

var basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(clientID+":"+secret))

// newEngine starts an engine with one client_credentials client on a bolt
// store in a temporary directory.
func newEngine(b testing.TB, alg string) *grants.Engine {
	b.Helper()
	return newEngineOn(b, alg, openStore(b))
}

// newEngineOn is newEngine on st.
func newEngineOn(b testing.TB, alg string, st *bolt.Store) *grants.Engine {
	b.Helper()
	eng, err := grants.NewEngine(grants.Config{
		Issuer:         issuer,
		AccessTokenTTL: time.Hour,
		SigningAlg:     alg,
		Clients: []*grants.Client{{
			ClientSpec: grants.ClientSpec{
				ID:         clientID,
				AuthMethod: grants.AuthSecretBasic,
				GrantTypes: []string{grants.GrantClientCredentials},
				Scopes:     []string{"bench:read"},
				Audience:   []string{audience},
			},
			SecretHash: grants.HashSecret(secret),
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	start(b, eng, st)
	return eng
}

// start starts eng on st.
func start(b testing.TB, eng *grants.Engine, st storage.Store) {
	b.Helper()
	rev, err := tokens.LoadRevocations(context.Background(), st)
	if err != nil {
		b.Fatal(err)
	}
	if err := eng.Start(context.Background(), st, rev); err != nil {
		b.Fatal(err)
	}
}

func openStore(b testing.TB) *bolt.Store {
	b.Helper()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// reusableBody is a request body that can be rewound without allocating.
type reusableBody struct{ strings.Reader }

func (*reusableBody) Close() error { return nil }

// tokenRequest builds a token request from a loopback address (plain
// HTTP is accepted only from loopback) whose body can be rewound.
func tokenRequest() (*http.Request, *reusableBody) {
	body := &reusableBody{}
	body.Reset(formBody)
	r := httptest.NewRequest(http.MethodPost, issuer+grants.TokenPath, nil)
	r.Body = body
	r.ContentLength = int64(len(formBody))
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", basicAuth)
	return r, body
}

// discardWriter is a minimal ResponseWriter, so the benchmark measures
// the endpoint rather than httptest.ResponseRecorder's bookkeeping.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// mint gets one access token through the token endpoint.
func mint(b testing.TB, eng *grants.Engine) string {
	b.Helper()
	r, _ := tokenRequest()
	rec := httptest.NewRecorder()
	eng.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		b.Fatalf("token endpoint: %d %s", rec.Code, rec.Body)
	}
	var tr grants.TokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
		b.Fatalf("token endpoint: %v %s", err, rec.Body)
	}
	return tr.AccessToken
}

// BenchmarkTokenEndpoint is one client_credentials request through
// Engine.ServeToken: parse, Basic authentication, mint (ES256), JSON.
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			eng := newEngine(b, alg)
			b.Run("serial", func(b *testing.B) {
				r, body := tokenRequest()
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					body.Reset(formBody)
					clear(w.h)
					w.status = 0
					eng.ServeHTTP(w, r)
					if w.status != http.StatusOK {
						b.Fatalf("status %d", w.status)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					r, body := tokenRequest()
					w := &discardWriter{h: http.Header{}}
					for pb.Next() {
						body.Reset(formBody)
						clear(w.h)
						w.status = 0
						eng.ServeHTTP(w, r)
						if w.status != http.StatusOK {
							b.Errorf("status %d", w.status)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkVerify is Verifier.Verify on an access token, as oauth_protect
// calls it on every request. "unseen" checks the signature every time
// (a token the gate meets for the first time); "same" repeats one token
// and "distinct" cycles through 512, both served by the claims cache.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range tokens.SigningAlgs {
		b.Run(alg, func(b *testing.B) {
			st := openStore(b)
			eng := newEngineOn(b, alg, st)
			one := mint(b, eng)
			pool := make([]string, 512)
			for i := range pool {
				pool[i] = mint(b, eng)
			}
			verify := func(b *testing.B, tok string) {
				c, err := eng.Verifier().Verify(tok, time.Now())
				if err != nil || c.Subject != clientID || !c.Audience.Contains(audience) {
					b.Fatalf("verify: %v", err)
				}
			}
			b.Run("same", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					verify(b, one)
				}
			})
			// A token the gate has not seen: the signature check.
			b.Run("unseen", func(b *testing.B) {
				// A verifier that remembers nothing, on the engine's keys
				// (as a verify-only node would load them).
				ks, err := tokens.NewKeys(tokens.KeyOptions{Algs: []string{alg}})
				if err != nil {
					b.Fatal(err)
				}
				if err := ks.Load(context.Background(), st, time.Now()); err != nil {
					b.Fatal(err)
				}
				v := tokens.NewVerifier(tokens.VerifierConfig{Issuer: issuer, Leeway: 30 * time.Second, Keys: ks, NoCache: true})
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := v.Verify(pool[i%len(pool)], time.Now()); err != nil {
						b.Fatalf("verify: %v", err)
					}
					i++
				}
			})
			b.Run("distinct", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					verify(b, pool[i%len(pool)])
					i++
				}
			})
			b.Run("distinct-parallel", func(b *testing.B) {
				b.ReportAllocs()
				var next atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						tok := pool[(next.Add(1)-1)%uint64(len(pool))]
						if _, err := eng.Verifier().Verify(tok, time.Now()); err != nil {
							b.Errorf("verify: %v", err)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkParseForm is grants.ParseForm on a typical token request.
func BenchmarkParseForm(b *testing.B) {
	r, body := tokenRequest()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(formBody)
		f, oerr := grants.ParseForm(w, r)
		if oerr != nil || f.Get("grant_type") != grants.GrantClientCredentials {
			b.Fatalf("ParseForm: %v", oerr)
		}
	}
}

// BenchmarkStoreWrite writes one small record per operation from many
// goroutines: Update commits (and fsyncs) each write alone, Batch groups
// the writers that wait for one commit into the next. SetParallelism(32)
// gives 32×GOMAXPROCS writers, like a busy token endpoint.
func BenchmarkStoreWrite(b *testing.B) {
	value := []byte(`{"client_id":"bench","scope":"bench:read","family":"0123456789abcdef"}`)
	for _, mode := range []string{"Update", "Batch"} {
		b.Run(mode, func(b *testing.B) {
			st := openStore(b)
			write := st.Update
			if mode == "Batch" {
				write = st.Batch
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					key := "k" + strconv.FormatUint(seq.Add(1), 36)
					rec := storage.Record{Value: value, Expires: time.Now().Add(time.Hour)}
					if err := write(ctx, func(tx storage.Tx) error {
						return tx.Put(storage.Kind("bench"), key, rec)
					}); err != nil {
						b.Errorf("%s: %v", mode, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSignatureFloor is the standard library's signing and
// verification alone, on a message the size of an access token's signing
// input: the floor under BenchmarkTokenEndpoint and BenchmarkVerify.
func BenchmarkSignatureFloor(b *testing.B) {
	msg := []byte(strings.Repeat("x", 330))
	digest := sha256.Sum256(msg)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ecSig, err := ecdsa.SignASN1(rand.Reader, ec, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	edSig := ed25519.Sign(edPriv, msg)
	b.Run("ES256-sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := sha256.Sum256(msg)
			if _, err := ecdsa.SignASN1(rand.Reader, ec, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ES256-verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := sha256.Sum256(msg)
			if !ecdsa.VerifyASN1(&ec.PublicKey, d[:], ecSig) {
				b.Fatal("does not verify")
			}
		}
	})
	b.Run("EdDSA-sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ed25519.Sign(edPriv, msg)
		}
	})
	b.Run("EdDSA-verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !ed25519.Verify(edPub, msg, edSig) {
				b.Fatal("does not verify")
			}
		}
	})
}

// TestBenchSetup checks, fast, that the fixtures above work, so a broken
// fixture shows up as a test failure rather than a confusing benchmark.
func TestBenchSetup(t *testing.T) {
	eng := newEngine(t, "ES256")
	tok := mint(t, eng)
	if _, err := eng.Verifier().Verify(tok, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, body := tokenRequest()
	for range 2 {
		body.Reset(formBody)
		w := &discardWriter{h: http.Header{}}
		eng.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			t.Fatalf("rewound request: status %d", w.status)
		}
	}
	body.Reset(formBody)
	if got, _ := io.ReadAll(r.Body); string(got) != formBody {
		t.Fatalf("body %q", got)
	}
}
