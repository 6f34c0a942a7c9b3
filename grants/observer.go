package grants

import "time"

// Observer is told what the token endpoint did, for metrics. Its methods
// must be cheap and safe for concurrent use. Labels are bounded: client
// ids only of authenticated clients, error codes from a fixed set.
type Observer interface {
	// TokenIssued counts a successful token response.
	TokenIssued(grantType, clientID string)
	// TokenRefused counts an error response by its RFC error code.
	TokenRefused(code string)
	// TokenDuration records how long the token endpoint took.
	TokenDuration(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) TokenIssued(string, string)  {}
func (nopObserver) TokenRefused(string)         {}
func (nopObserver) TokenDuration(time.Duration) {}
