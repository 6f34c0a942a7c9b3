package tokens_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// TestCertBound: a certificate-bound token passes only with its
// certificate; a token whose cnf names a confirmation method nothing
// here checks is refused rather than taken for a bearer token.
func TestCertBound(t *testing.T) {
	mine := certtest.Issue(t, nil, certtest.Names{CN: "mine"})
	other := certtest.Issue(t, nil, certtest.Names{CN: "other"})
	req := func(c *certtest.Cert) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://api.test/", nil)
		if c != nil {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Cert}}
		}
		return r
	}
	th := tokens.CertThumbprint(mine.Cert)
	for _, tt := range []struct {
		name    string
		payload string
		cert    *certtest.Cert
		want    bool
	}{
		{"bearer token", `{"sub":"a"}`, nil, true},
		{"bound, its certificate", `{"cnf":{"x5t#S256":"` + th + `"}}`, mine, true},
		{"bound, another certificate", `{"cnf":{"x5t#S256":"` + th + `"}}`, other, false},
		{"bound, no certificate", `{"cnf":{"x5t#S256":"` + th + `"}}`, nil, false},
		{"x5t (SHA-1) only", `{"cnf":{"x5t":"abc"}}`, mine, false},
		{"jwk confirmation", `{"cnf":{"jwk":{"kty":"EC"}}}`, mine, false},
		{"bound plus an unknown member", `{"cnf":{"x5t#S256":"` + th + `","kid":"k"}}`, mine, false},
		{"empty cnf", `{"cnf":{}}`, mine, false},
		{"jkt (checked by DPoP)", `{"cnf":{"jkt":"abc"}}`, nil, true},
	} {
		c, err := tokens.ParseAccessClaims([]byte(tt.payload))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := c.CertBound(req(tt.cert)); got != tt.want {
			t.Errorf("%s: CertBound = %v, want %v", tt.name, got, tt.want)
		}
	}
	// A token minted here (no raw payload) is judged by its struct.
	c := &tokens.AccessClaims{Cnf: &tokens.Cnf{X5tS256: th}}
	if !c.CertBound(req(mine)) || c.CertBound(req(other)) {
		t.Error("minted bound claims: wrong answer")
	}
}
