package main

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// The proofs the load generator signs pass the module's own DPoP checks
// for the gate's request (htm, htu, ath, iat, the key), each once.
func TestProofsPassTheGatesCheck(t *testing.T) {
	k, err := newDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	const htu, tok = "http://127.0.0.1:18085/", "header.payload.sig"
	pool, err := makeProofs(k, 50, http.MethodGet, htu, tok)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tokens.NewDPoPVerifier(tokens.DPoPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jkt := ""
	for i := range 50 {
		p, ok := pool.take()
		if !ok {
			t.Fatalf("pool spent after %d of 50", i)
		}
		got, err := v.Verify(http.Header{"Dpop": {p}}, tokens.DPoPCheck{Method: http.MethodGet, URL: htu, AccessToken: tok})
		if err != nil {
			t.Fatalf("proof %d refused: %v", i, err)
		}
		if jkt == "" {
			jkt = got.JKT
		} else if got.JKT != jkt {
			t.Fatalf("proof %d has another key: %s, want %s", i, got.JKT, jkt)
		}
	}
	if _, ok := pool.take(); ok || !pool.ranOut.Load() {
		t.Fatal("a spent pool handed out another proof")
	}
	// Another token's ath does not match: the proofs are bound to tok.
	p2, err := k.proof(http.MethodGet, htu, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(http.Header{"Dpop": {p2}}, tokens.DPoPCheck{Method: http.MethodGet, URL: htu, AccessToken: "other"}); err == nil {
		t.Fatal("a proof for another token passed")
	}
}

// A run sends every proof at most once, with the DPoP scheme, and stops
// when the pool is spent instead of sending one twice.
func TestPhaseSendsEachProofOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	authz := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("DPoP")]++
		authz[r.Header.Get("Authorization")] = true
		mu.Unlock()
	}))
	defer srv.Close()
	k, err := newDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := makeProofs(k, 300, http.MethodGet, srv.URL+"/", "tok")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{url: srv.URL + "/", method: http.MethodGet, headers: http.Header{}, workers: 8}
	client := newClient(cfg.workers, nil)
	phase(client, cfg, []string{"tok"}, pool, 200*time.Millisecond, 100) // a warm-up
	res := phase(client, cfg, []string{"tok"}, pool, 10*time.Second, 0)
	if res.elapsed > 5*time.Second {
		t.Fatalf("the run went on for %s after the pool was spent", res.elapsed)
	}
	if res.errors != 0 {
		t.Fatalf("%d errors", res.errors)
	}
	if len(seen) != 300 {
		t.Fatalf("the server saw %d distinct proofs, want all 300", len(seen))
	}
	for p, n := range seen {
		if n != 1 || p == "" {
			t.Fatalf("proof %.20q… sent %d times", p, n)
		}
	}
	if len(authz) != 1 || !authz["DPoP tok"] {
		t.Fatalf("Authorization headers %v, want only %q", authz, "DPoP tok")
	}
}

// The certificates of -make-certs make a TLS connection to localhost on
// which the server sees the client certificate, and a token without the
// binding the mode names is refused before any load.
func TestMakeCertsMutualTLS(t *testing.T) {
	dir := t.TempDir()
	if err := makeCerts(dir); err != nil {
		t.Fatal(err)
	}
	srvCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	var gotCN string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			gotCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	u := "https://localhost:" + port + "/"
	if err := checkLoopbackURL(u); err != nil {
		t.Fatal(err)
	}
	tc, err := tlsConfig(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := newClient(1, tc).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotCN != "bench-bound" {
		t.Fatalf("server saw client certificate %q, want bench-bound", gotCN)
	}

	jwt := func(payload string) string {
		return "e30." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	if err := checkBinding(config{tls: tc}, jwt(`{"sub":"x"}`)); err == nil || !strings.Contains(err.Error(), "x5t#S256") {
		t.Fatalf("an unbound token passed the mTLS check: %v", err)
	}
	if err := checkBinding(config{tls: tc}, jwt(`{"cnf":{"x5t#S256":"abc"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := checkBinding(config{dpop: &dpopKey{}}, jwt(`{"cnf":{"x5t#S256":"abc"}}`)); err == nil {
		t.Fatal("a token without cnf.jkt passed the DPoP check")
	}
}
