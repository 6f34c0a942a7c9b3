package grants

import (
	"context"
	"errors"
	"time"
)

// signIn checks a password under the throttle the login page and the
// password grant share. A locked (user, address) pair or user name is
// refused before bcrypt runs (a *lockedError); an address with many
// failures has its failures answered late, but is never queued: a correct
// password is checked and answered at once (a queue would let a flood of
// guesses hold back everyone behind the same NAT). A failure counts against the pair, the name and the address; a
// success clears the pair and the name.
func (e *Engine) signIn(ctx context.Context, name, password, ip string) (*User, error) {
	th, now := e.web.throttle, time.Now()
	pairKey, userKey, ipKey := "pair:"+ip+"\x00"+name, "user:"+name, "ip:"+ip
	if until := th.lockedUntil(now, pairKey, userKey); !until.IsZero() {
		return nil, &lockedError{until: until}
	}
	u, err := e.users.Authenticate(ctx, name, password)
	if errors.Is(err, ErrUserNotFound) {
		now := time.Now()
		th.fail(now, pairKey)
		th.failLimit(now, th.cfg.UserMaxFailures, userKey)
		if d := th.failAddress(now, ipKey); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	if err != nil {
		return nil, err
	}
	th.succeed(pairKey)
	th.succeed(userKey)
	return u, nil
}
