package grants

import (
	"slices"
	"strings"
)

// validScopeToken reports whether s is a scope-token of RFC 6749 §3.3:
// one or more of %x21 / %x23-5B / %x5D-7E.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// parseScope splits a scope parameter on single spaces, refusing empty
// tokens and characters outside the RFC's set, and drops repeats.
func parseScope(s string) ([]string, *Error) {
	parts := strings.Split(s, " ")
	out := parts[:0]
	for _, p := range parts {
		if !validScopeToken(p) {
			return nil, errCode(CodeInvalidScope, "the scope parameter is malformed")
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// grantScope decides the scope of a new token: the client's registered
// scopes when none are asked for, otherwise exactly what was asked for,
// which must all be allowed. Unallowed scopes are refused rather than
// silently dropped, so a client never believes it holds what it does not.
func grantScope(requested string, allowed []string) ([]string, *Error) {
	if requested == "" {
		return allowed, nil
	}
	want, err := parseScope(requested)
	if err != nil {
		return nil, err
	}
	for _, s := range want {
		if !slices.Contains(allowed, s) {
			return nil, errCode(CodeInvalidScope, "the requested scope is not allowed for this client")
		}
	}
	return want, nil
}
