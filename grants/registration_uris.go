package grants

import (
	"fmt"
	"net/http"
	"net/url"
)

// checkRegisteredRedirectURIs applies the rules a client that registers
// itself (or a metadata document) must meet beyond validateRedirectURI.
// A host that is not ASCII is refused rather than converted: the user
// would see its Unicode form elsewhere (a homograph such as a Cyrillic
// "а" in "аpple.com"), and the client can register its punycode form
// (xn--…), which the consent page shows as is.
func checkRegisteredRedirectURIs(uris []string) *Error {
	for _, s := range uris {
		if err := validateRedirectURI(s); err != nil {
			return errRedirect("%v", err)
		}
		u, _ := url.Parse(s) // validateRedirectURI parsed it
		if !isASCII(u.Host) {
			return errRedirect("redirect_uri %q: the host must be ASCII; register its punycode form (xn--…)", s)
		}
	}
	return nil
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
// back to: the redirect URI's host, or a native app's scheme.
func returnTarget(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	switch {
	case err != nil:
		return ""
	case u.Host != "":
		return u.Hostname()
	default:
		return u.Scheme + ":"
	}
}
