package tokens_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/certtest"
)

// TestCertHeader: RFC 9440 Client-Cert is believed from a trusted proxy
// (the direct peer) only, replaces the proxy's own TLS certificate, and
// is removed from every request.
func TestCertHeader(t *testing.T) {
	client := certtest.Issue(t, nil, certtest.Names{CN: "client"})
	proxy := certtest.Issue(t, nil, certtest.Names{CN: "proxy"})
	sf := ":" + base64.StdEncoding.EncodeToString(client.Cert.Raw) + ":"
	h := &tokens.CertHeader{Name: "client-cert", TrustedProxies: []string{"10.0.0.0/8", "2001:db8::1"}}
	if err := h.Provision(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		remote string
		vals   []string
		tls    bool
		want   *x509.Certificate
	}{
		{"trusted proxy", "10.1.2.3:5000", []string{sf}, false, client.Cert},
		{"trusted IPv6 proxy", "[2001:db8::1]:5000", []string{sf}, false, client.Cert},
		{"IPv4-mapped trusted proxy", "[::ffff:10.0.0.1]:5000", []string{sf}, false, client.Cert},
		{"trusted proxy with its own TLS certificate", "10.1.2.3:5000", []string{sf}, true, client.Cert},
		{"trusted proxy, no header: not the proxy's certificate", "10.1.2.3:5000", nil, true, nil},
		{"untrusted peer", "192.0.2.7:5000", []string{sf}, false, nil},
		{"untrusted IPv6 peer", "[2001:db8::2]:5000", []string{sf}, false, nil},
		{"untrusted peer with a TLS certificate", "192.0.2.7:5000", []string{sf}, true, proxy.Cert},
		{"two values", "10.1.2.3:5000", []string{sf, sf}, false, nil},
		{"no colons", "10.1.2.3:5000", []string{strings.Trim(sf, ":")}, false, nil},
		{"PEM instead of a byte sequence", "10.1.2.3:5000", []string{string(client.PEM())}, false, nil},
		{"not base64", "10.1.2.3:5000", []string{":%%%:"}, false, nil},
		{"not a certificate", "10.1.2.3:5000", []string{":" + base64.StdEncoding.EncodeToString([]byte("x")) + ":"}, false, nil},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://api.test/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.vals {
			r.Header.Add("Client-Cert", v)
		}
		if tt.tls {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{proxy.Cert}}
		}
		r = h.Take(r)
		if got := tokens.ClientCert(r); got != tt.want && (got == nil || tt.want == nil || !got.Equal(tt.want)) {
			t.Errorf("%s: ClientCert = %v, want %v", tt.name, got, tt.want)
		}
		if r.Header.Get("Client-Cert") != "" {
			t.Errorf("%s: the header was not removed", tt.name)
		}
		wantThumb := ""
		if tt.want != nil {
			wantThumb = tokens.CertThumbprint(tt.want)
		}
		if got := tokens.ConnCertThumbprint(r); got != wantThumb {
			t.Errorf("%s: thumbprint %q, want %q", tt.name, got, wantThumb)
		}
	}
	for _, bad := range []*tokens.CertHeader{
		{Name: "Client-Cert"},
		{TrustedProxies: []string{"10.0.0.1"}},
		{Name: "Client-Cert", TrustedProxies: []string{"10.0.0.300"}},
		{Name: "Client-Cert", TrustedProxies: []string{"proxy.example"}},
	} {
		if err := bad.Provision(); err == nil {
			t.Errorf("Provision(%+v) accepted", bad)
		}
	}
}
