package grants

import "strings"

// canonResource is the form in which resource indicators (RFC 8707) and
// audiences are compared: the scheme and the host are case-insensitive
// (RFC 3986 §6.2.2.1), so HTTP://API.example.com/x names the same
// resource as http://api.example.com/x, and the scheme's default port
// (or an empty one) is dropped (RFC 3986 §6.2.3), so
// https://api.example.com:443 names https://api.example.com. MCP clients
// send the canonical form whatever the operator wrote. For http(s) an
// empty path and "/" are the same (https://api.example.com/ names
// https://api.example.com); nothing else (the path, a trailing slash
// after it, the query, percent-encoding) is normalised, so a resource
// still names exactly one registered value.
func canonResource(s string) string {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return s
	}
	scheme = strings.ToLower(scheme)
	after, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return scheme + ":" + rest // a URN: only its scheme is folded
	}
	end := strings.IndexAny(after, "/?#")
	if end < 0 {
		end = len(after)
	}
	auth := after[:end]
	at := strings.LastIndexByte(auth, '@')
	host := strings.ToLower(auth[at+1:])
	if i := strings.LastIndexByte(host, ':'); i > strings.LastIndexByte(host, ']') {
		// A port, not a colon of an IPv6 literal.
		if p := host[i+1:]; p == "" || scheme == "https" && p == "443" || scheme == "http" && p == "80" {
			host = host[:i]
		}
	}
	rest = after[end:]
	if (scheme == "https" || scheme == "http") && strings.HasPrefix(rest, "/") && (len(rest) == 1 || rest[1] == '?' || rest[1] == '#') {
		// For http(s) an empty path is "/" (RFC 3986 §6.2.3): clients
		// that send a parsed URL's href add the slash to a pathless
		// resource.
		rest = rest[1:]
	}
	return scheme + "://" + auth[:at+1] + host + rest
}

// indexResource finds resource among registered values, comparing
// canonical forms; -1 when it is not there. Callers use the registered
// spelling from then on, so that a token's aud is exactly what the
// operator configured (and what oauth_protect compares with).
func indexResource(registered []string, resource string) int {
	want := canonResource(resource)
	for i, r := range registered {
		if canonResource(r) == want {
			return i
		}
	}
	return -1
}
