package grants

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Bounds on a registered client's redirect URIs: enough for any real
// client, small enough that a registration cannot store a megabyte of
// them or a URI a browser would truncate.
const (
	maxRegisteredRedirectURIs = 20
	maxRedirectURILen         = 2000
)

// checkRegisteredRedirectURIs applies the rules a client that registers
// itself (or a metadata document) must meet beyond validateRedirectURI.
// A host that is not ASCII is refused rather than converted: the user
// would see its Unicode form elsewhere (a homograph such as a Cyrillic
// "а" in "аpple.com"), and the client can register its punycode form
// (xn--…), which the consent page shows as is.
//
// It returns the URIs without repeats (the first of each kept). A URI
// with a space or control character, a port outside 1-65535, one longer
// than 2000 bytes, or more than 20 URIs are refused: each is a URI that
// a browser, a proxy or a later exact comparison could read differently.
func checkRegisteredRedirectURIs(uris []string) ([]string, *Error) {
	out := make([]string, 0, len(uris))
	for _, s := range uris {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) > maxRegisteredRedirectURIs {
		return nil, errRedirect("at most %d redirect_uris may be registered, not %d", maxRegisteredRedirectURIs, len(out))
	}
	for _, s := range out {
		if len(s) > maxRedirectURILen {
			return nil, errRedirect("a redirect_uri may be at most %d bytes long (one is %d)", maxRedirectURILen, len(s))
		}
		for i := range len(s) {
			if s[i] <= ' ' || s[i] == 0x7f {
				return nil, errRedirect("redirect_uri %q holds a space or control character; percent-encode it", s)
			}
		}
		if err := validateRedirectURI(s); err != nil {
			return nil, errRedirect("%v", err)
		}
		u, _ := url.Parse(s) // validateRedirectURI parsed it
		if !isASCII(u.Host) {
			return nil, errRedirect("redirect_uri %q: the host must be ASCII; register its punycode form (xn--…)", s)
		}
		if strings.Contains(u.Hostname(), "%") {
			return nil, errRedirect("redirect_uri %q: an IPv6 zone is not allowed in a redirect URI", s)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, errRedirect("redirect_uri %q: the port must be 1 to 65535", s)
			}
		}
	}
	return out, nil
}

// duplicateMember names a member a JSON object gives twice (compared
// after unescaping, as encoding/json reads them), or "". encoding/json
// keeps the last one silently, so a token_endpoint_auth_method given
// twice could make a client other than the one its first value says.
func duplicateMember(body []byte) string {
	d := json.NewDecoder(bytes.NewReader(body))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		name, ok := t.(string)
		if err != nil || !ok {
			return ""
		}
		if seen[name] {
			return name
		}
		seen[name] = true
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

func errRedirect(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRedirectURI, Status: http.StatusBadRequest, Description: fmt.Sprintf(format, args...)}
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// returnTarget is what the consent page names as where the user goes
// back to: an http(s) redirect URI's host, or a native app's scheme,
// whatever follows it: the code goes to the app that claims the scheme,
// so com.evil://accounts.google.com/cb is com.evil:, not a Google host.
func returnTarget(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	switch {
	case err != nil:
		return ""
	case u.Scheme == "https" || u.Scheme == "http":
		return u.Hostname()
	default:
		return u.Scheme + ":"
	}
}

// unreachableKeyHost reports why a jwks_uri's host is one the key fetch
// (safefetch.go) would never connect to: a literal IP that is not public,
// or localhost. Saying so at registration beats a client whose every
// authentication fails later for a reason it cannot see.
func unreachableKeyHost(u *url.URL) string {
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if !isASCII(h) {
		// ①②⑦.0.0.1, fullwidth digits, ideographic dots: IDNA mapping
		// makes them loopback or private addresses.
		return "a host that is not ASCII (register its punycode form)"
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "localhost"
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !publicAddr(a) {
			return "an IP address that is not public"
		}
		return ""
	}
	if numericHost(h) {
		// 2130706433, 0x7f000001, 017700000001, 127.1: spellings of an IPv4
		// address that resolvers read in different ways.
		return "a number that is not a dotted IPv4 address"
	}
	return ""
}

// numericHost reports whether every label of h is a decimal, octal or
// hex number, as in the shortened and numeric IPv4 spellings; a dotted
// IPv4 address has been parsed before.
func numericHost(h string) bool {
	for _, l := range strings.Split(h, ".") {
		digits := "0123456789"
		if hex, ok := strings.CutPrefix(l, "0x"); ok {
			l, digits = hex, "0123456789abcdef"
		}
		if l == "" || strings.Trim(l, digits) != "" {
			return false
		}
	}
	return true
}
