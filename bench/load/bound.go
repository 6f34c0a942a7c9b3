package main

// Sender-constrained tokens: DPoP (RFC 9449) proofs made before the timed
// phase, and mutual TLS (RFC 8705) with a client certificate.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oauthgate/caddy-oauthgate/internal/dpoptest"
)

// dpopWindow is how long after its iat the server accepts a proof
// (docs/dpop.md: 60 s, plus 5 s for clock skew, which a pool must not
// count on).
const dpopWindow = 60 * time.Second

// dpopKey is the load generator's DPoP key: one per process, as one
// client has one key.
type dpopKey struct{ *dpoptest.Key }

func newDPoPKey() (*dpopKey, error) {
	k, err := dpoptest.NewKey()
	return &dpopKey{k}, err
}

// proof is a DPoP proof for method and htu, issued now, with a fresh jti,
// and with ath when token is set.
func (k *dpopKey) proof(method, htu, token string) (string, error) {
	c := map[string]any{"htm": method, "htu": htu}
	if token != "" {
		c["ath"] = dpoptest.ATH(token)
	}
	return k.Proof(c)
}

// proofPool holds proofs made before the timed phase; each is handed out
// once, across the warm-up and the measured phase, so none is sent twice.
type proofPool struct {
	proofs  []string
	next    atomic.Int64
	ranOut  atomic.Bool
	created time.Time // the proofs' iat (the earliest)
}

// take returns the next unused proof, or false when the pool is spent.
func (p *proofPool) take() (string, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.proofs)) {
		p.ranOut.Store(true)
		return "", false
	}
	return p.proofs[i], true
}

// makeProofs signs n proofs for GET htu bound to token, on every CPU.
func makeProofs(k *dpopKey, n int, method, htu, token string) (*proofPool, error) {
	p := &proofPool{proofs: make([]string, n), created: time.Now()}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s, err := k.proof(method, htu, token)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				p.proofs[i] = s
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("signing DPoP proofs: %w", firstErr)
	}
	seen := make(map[string]struct{}, n)
	for _, s := range p.proofs {
		seen[s] = struct{}{}
	}
	if len(seen) != n {
		return nil, fmt.Errorf("made %d distinct proofs out of %d", len(seen), n)
	}
	return p, nil
}

// htuOf is a URL as a proof's htu names it: without query and fragment
// (RFC 9449 §4.2).
func htuOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// tokenClaims is what the load generator checks of a token it was issued:
// that it is bound as the mode asks, so the figure measures the check it
// names.
type tokenClaims struct {
	Cnf struct {
		JKT     string `json:"jkt"`
		X5tS256 string `json:"x5t#S256"`
	} `json:"cnf"`
}

func claimsOf(tok string) (tokenClaims, error) {
	var c tokenClaims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, errors.New("the access token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// tlsConfig is the client's TLS configuration: the CA that signed the
// server's certificate and, with certFile, the client certificate.
func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("-cert and -key go together")
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// makeCerts writes a test CA (ca.pem), a server certificate for localhost
// and 127.0.0.1 (server.pem, server.key) and a client certificate with
// clientAuth (client.pem, client.key), all signed by the CA, into dir.
// They live as long as one benchmark run.
func makeCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "caddy-oauthgate bench CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		tmpl *x509.Certificate
	}{
		{"server", &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{"client", &x509.Certificate{Subject: pkix.Name{CommonName: "bench-bound"}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := sign(c.tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, c.name+".pem"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, c.name+".key"), "PRIVATE KEY", kb); err != nil {
			return err
		}
	}
	return nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
}

func writePEM(file, typ string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
