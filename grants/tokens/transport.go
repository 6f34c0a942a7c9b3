package tokens

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// IsLoopbackFrom reports whether a request came from this machine, the
// only place plain HTTP is allowed to reach endpoints that carry
// credentials: the peer is a loopback address and so is clientIP, the
// client address a trusted local proxy reported ("" for none), and so is every
// address the request says it was forwarded for: a proxy that trusts the
// leftmost X-Forwarded-For entry (trusted_proxies without _strict) would
// otherwise let a remote client pass for loopback by sending one.
func IsLoopbackFrom(r *http.Request, clientIP string) bool {
	if !isLoopbackAddr(r.RemoteAddr) {
		return false
	}
	if clientIP != "" && !isLoopbackAddr(clientIP) {
		return false
	}
	for _, name := range [...]string{"X-Forwarded-For", "X-Real-Ip", "Forwarded"} {
		for _, v := range r.Header[name] {
			for hop := range strings.SplitSeq(v, ",") {
				if !forwardedLoopback(name, hop) {
					return false
				}
			}
		}
	}
	return true
}

// forwardedLoopback reports whether one hop of a forwarding header names
// a loopback address; a Forwarded element (RFC 7239) is read for its
// for= parameter, and one without it names no address.
func forwardedLoopback(header, hop string) bool {
	hop = strings.TrimSpace(hop)
	if header == "Forwarded" {
		found := false
		for param := range strings.SplitSeq(hop, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(param), "=")
			if strings.EqualFold(k, "for") {
				hop, found = strings.Trim(v, `"`), true
			}
		}
		if !found {
			return true
		}
	}
	return isLoopbackAddr(hop)
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// IsLoopbackHost reports whether a URL's host is one of the names of
// this machine that plain http is allowed with (RFC 8252 §7.3 for
// redirect URIs, RFC 8414 §2 for a local issuer).
func IsLoopbackHost(h string) bool {
	return h == "127.0.0.1" || h == "::1" || h == "localhost"
}
