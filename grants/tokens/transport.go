package tokens

import (
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

// isLoopbackAddr reports whether addr, an IP with or without a port
// (bracketed for IPv6), is a loopback address. It picks the parse by the
// address's shape: a failed parse allocates its error, and the gate asks
// this of every plain-HTTP request.
func isLoopbackAddr(addr string) bool {
	var ip netip.Addr
	switch {
	case strings.HasPrefix(addr, "[") && strings.Contains(addr, "]:"),
		strings.Count(addr, ":") == 1: // [v6]:port or v4:port
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return false
		}
		ip = ap.Addr()
	default: // a bare address, v6 possibly bracketed
		if inner, ok := strings.CutPrefix(addr, "["); ok {
			if addr, ok = strings.CutSuffix(inner, "]"); !ok {
				return false
			}
		}
		var err error
		if ip, err = netip.ParseAddr(addr); err != nil {
			return false
		}
	}
	return ip.Unmap().IsLoopback()
}

// IsLoopbackHost reports whether a URL's host is one of the names of
// this machine that plain http is allowed with (RFC 8252 §7.3 for
// redirect URIs, RFC 8414 §2 for a local issuer).
func IsLoopbackHost(h string) bool {
	return h == "127.0.0.1" || h == "::1" || h == "localhost"
}
