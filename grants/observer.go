package grants

import "time"

// Observer is told what the token endpoint did and which security events
// happened, for metrics. Its methods must be cheap and safe for concurrent
// use. Labels are bounded: client ids only of authenticated clients, error
// codes, results, kinds and actions from fixed sets.
type Observer interface {
	// TokenIssued counts a successful token response.
	TokenIssued(grantType, clientID string)
	// TokenRefused counts an error response by its RFC error code.
	TokenRefused(code string)
	// TokenDuration records how long the token endpoint took.
	TokenDuration(d time.Duration)
	// SignIn counts a password check of the login page or the password
	// grant by its result: "success", "failure" or "locked" (refused
	// unchecked during a lockout).
	SignIn(result string)
	// RefreshReuse counts a rotated refresh token presented again, which
	// revoked its grant (RFC 9700 §4.14.2).
	RefreshReuse()
	// AdminChange counts a change an operator made: kind "user" with
	// action "created", "updated" or "removed"; "client" with "created"
	// or "removed"; "key" with "rotated" (on demand, not by key_rotation);
	// "grants" with "revoked" (a revoke-all of a subject or client).
	AdminChange(kind, action string)
}

type nopObserver struct{}

func (nopObserver) TokenIssued(string, string)  {}
func (nopObserver) TokenRefused(string)         {}
func (nopObserver) TokenDuration(time.Duration) {}
func (nopObserver) SignIn(string)               {}
func (nopObserver) RefreshReuse()               {}
func (nopObserver) AdminChange(string, string)  {}
