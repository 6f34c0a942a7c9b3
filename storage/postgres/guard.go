package postgres

import (
	"errors"
	"fmt"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// errDriverPanic marks the error a panic inside pgx became. The
// connection it happened on is in an unknown state: it is closed, not
// returned to the pool.
var errDriverPanic = errors.New("the PostgreSQL driver panicked")

// guard runs f, a call into pgx, and turns a panic in it into an error
// wrapping storage.ErrUnavailable, as storage.Store asks of a backend
// (the request is answered temporarily_unavailable instead of taking the
// server down). It wraps calls into pgx only, never the caller's fn,
// whose panics go on in the caller's goroutine.
func guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %w: %v", storage.ErrUnavailable, what, errDriverPanic, r)
		}
	}()
	return f()
}
