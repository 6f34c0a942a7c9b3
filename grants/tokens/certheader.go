package tokens

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// CertHeader reads the client certificate from a request header that a
// TLS-terminating proxy sets (RFC 9440 Client-Cert: the DER certificate
// as a structured-field byte sequence, ":<base64>:"), for requests whose
// direct peer is one of TrustedProxies only. From any other peer the
// header is removed and never read.
type CertHeader struct {
	// Name is the header, e.g. Client-Cert. Required.
	Name string `json:"name"`
	// TrustedProxies are the addresses (IPs or CIDR prefixes) of the
	// proxies that set the header. The request's direct peer must be one
	// of them; X-Forwarded-For is never consulted. Required.
	TrustedProxies []string `json:"trusted_proxies"`

	canon    string
	prefixes []netip.Prefix
}

// maxCertHeaderBytes bounds the header value that is decoded.
const maxCertHeaderBytes = 16 << 10

// Provision checks the configuration and says what to fix.
func (h *CertHeader) Provision() error {
	if h.Name == "" || strings.ContainsAny(h.Name, " \t:") {
		return errors.New("client_cert_header needs a header name, e.g. client_cert_header Client-Cert { trusted_proxies 10.0.0.0/8 }")
	}
	if len(h.TrustedProxies) == 0 {
		return fmt.Errorf("client_cert_header %s needs trusted_proxies: the addresses of the proxies that set it (a client could set it too)", h.Name)
	}
	h.canon = http.CanonicalHeaderKey(h.Name)
	h.prefixes = h.prefixes[:0]
	for _, s := range h.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("client_cert_header %s: trusted_proxies %q is neither an IP address nor a CIDR prefix", h.Name, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		h.prefixes = append(h.prefixes, p.Masked())
	}
	return nil
}

// proxyCertKey holds what a trusted proxy said about the client
// certificate (a *x509.Certificate, nil for none).
type proxyCertKey struct{}

type proxyCert struct{ cert *x509.Certificate }

// Take removes the header from r. When r's direct peer is a trusted
// proxy, the returned request carries the certificate the header holds
// (or none, if it holds none or a malformed one): ClientCert then
// reports it instead of the TLS connection's, which is the proxy's own.
func (h *CertHeader) Take(r *http.Request) *http.Request {
	vals := r.Header.Values(h.canon)
	delete(r.Header, h.canon)
	if !h.trusted(r.RemoteAddr) {
		return r
	}
	var pc proxyCert
	if len(vals) == 1 {
		pc.cert = parseRFC9440(vals[0])
	}
	return r.WithContext(context.WithValue(r.Context(), proxyCertKey{}, pc))
}

func (h *CertHeader) trusted(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range h.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseRFC9440 decodes ":<base64 DER>:" (RFC 9440 §2.2, RFC 8941 §3.3.5).
func parseRFC9440(v string) *x509.Certificate {
	v = strings.TrimSpace(v)
	if len(v) > maxCertHeaderBytes || len(v) < 2 || v[0] != ':' || v[len(v)-1] != ':' {
		return nil
	}
	der, err := base64.StdEncoding.DecodeString(v[1 : len(v)-1])
	if err != nil {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	return cert
}

// ClientCert is the client certificate of the request: the one a
// trusted proxy passed on (CertHeader.Take), else the leaf of the
// request's own TLS connection; nil when there is none.
func ClientCert(r *http.Request) *x509.Certificate {
	if pc, ok := r.Context().Value(proxyCertKey{}).(proxyCert); ok {
		return pc.cert
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// ClientCertChain is ClientCert with the intermediates the TLS handshake
// carried (a proxy passes the leaf only).
func ClientCertChain(r *http.Request) []*x509.Certificate {
	if pc, ok := r.Context().Value(proxyCertKey{}).(proxyCert); ok {
		if pc.cert == nil {
			return nil
		}
		return []*x509.Certificate{pc.cert}
	}
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}
