package grants

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// safeFetcher fetches documents from URLs that clients supply (client
// ID metadata documents, their jwks_uri), which must never reach this
// machine or its private network (RFC 9700 §4.x SSRF, conformance A-32):
// https only; the host resolved once and every resolved address public
// (publicAddr), the connection made to that checked address (so a second
// DNS answer cannot rebind it); no redirects; a whole-request timeout and
// a size cap.
//
// The fields after timeout exist so that tests in this package can reach
// a loopback test server through a public-looking address; nothing
// outside the package can set them, and production leaves them nil.
type safeFetcher struct {
	timeout time.Duration
	maxSize int64
	// lookup resolves a host name; nil for the system resolver.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// dial connects to the checked address; nil for net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// rootCAs verify the server; nil for the system roots.
	rootCAs *x509.CertPool
	// localAddrs are this machine's own addresses, which are refused
	// whatever they are (the Caddy admin endpoint and every other
	// listener live there); nil for the interfaces' addresses.
	localAddrs func() []netip.Addr
}

// Refusals of a safe fetch.
var (
	errFetchNotHTTPS  = errors.New("the URL must be https")
	errFetchRedirect  = errors.New("the server answered with a redirect, which is not followed")
	errFetchTooLarge  = errors.New("the document is larger than allowed")
	errFetchForbidden = errors.New("the host resolves to an address that is not public")
)

// blockedPrefixes are addresses that are not public beyond what netip's
// predicates cover: shared (CGNAT), reserved, documentation, benchmark,
// and the IPv6 forms that embed an IPv4 address another way (NAT64,
// 6to4, Teredo), whose IPv4 part could be anything.
var blockedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
		"2001::/32", "2001:db8::/32", "2002::/16", "::/96"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// publicAddr reports whether a is a public unicast address. IPv4-mapped
// IPv6 addresses are judged by their IPv4 address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || a.Zone() != "" {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// interfaceAddrs are the addresses of this machine's interfaces.
func interfaceAddrs() []netip.Addr {
	as, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// allowed reports whether the fetcher may connect to a.
func (f *safeFetcher) allowed(a netip.Addr) bool {
	if !publicAddr(a) {
		return false
	}
	local := interfaceAddrs
	if f.localAddrs != nil {
		local = f.localAddrs
	}
	for _, l := range local() {
		if l == a.Unmap() {
			return false
		}
	}
	return true
}

// dialChecked resolves the host of addr once, refuses it unless every
// address is allowed, and connects to the first one: the address
// checked is the address connected to.
func (f *safeFetcher) dialChecked(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else if f.lookup != nil {
		addrs, err = f.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		addrs = ips
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	for _, a := range addrs {
		if !f.allowed(a) {
			return nil, fmt.Errorf("%w (%s is %s)", errFetchForbidden, host, a)
		}
	}
	pinned := net.JoinHostPort(addrs[0].Unmap().String(), port)
	if f.dial != nil {
		return f.dial(ctx, network, pinned)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, pinned)
}

// client is the HTTP client of the fetcher: its every connection goes
// through dialChecked, and it follows no redirect.
func (f *safeFetcher) client() *http.Client {
	return &http.Client{
		Timeout: f.timeout,
		Transport: &http.Transport{
			DialContext:       f.dialChecked,
			TLSClientConfig:   &tls.Config{RootCAs: f.rootCAs, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
			// Every fetch resolves and checks again: a kept connection
			// would outlive the check it was made under.
			DisableKeepAlives:      true,
			TLSHandshakeTimeout:    f.timeout,
			ResponseHeaderTimeout:  f.timeout,
			MaxResponseHeaderBytes: 16 << 10,
			// A proxy from the environment would connect instead of us,
			// to addresses we never checked.
			Proxy: nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch GETs an https URL as JSON and returns the body (at most
// maxSize bytes) and the response's headers.
func (f *safeFetcher) fetch(ctx context.Context, hc *http.Client, rawURL string) ([]byte, http.Header, error) {
	if !strings.HasPrefix(rawURL, "https://") {
		return nil, nil, errFetchNotHTTPS
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, nil, errFetchRedirect
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("the server answered %s", resp.Status)
	case resp.ContentLength > f.maxSize:
		return nil, nil, errFetchTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxSize+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(body)) > f.maxSize {
		return nil, nil, errFetchTooLarge
	}
	return body, resp.Header, nil
}

// clientKeys fetches the jwks_uri of clients that registered themselves
// or that a metadata document describes: URLs the clients chose, so
// through a safeFetcher. Tests in this package point its hooks at a
// local server.
var clientKeys = &safeFetcher{timeout: jwksFetchTimeout, maxSize: MaxJWKSBytes}

// clientJWKS is the key set at a client-chosen jwks_uri (already checked
// to be an absolute https URL), fetched through clientKeys.
func clientJWKS(uri string) *JWKS {
	return &JWKS{uri: uri, client: clientKeys.client()}
}
