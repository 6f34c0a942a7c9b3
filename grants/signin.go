package grants

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Where a password was typed (the via field of the sign-in audit lines),
// and the results Observer.SignIn counts.
const (
	signInViaLogin      = "login_page"
	signInViaPassword   = "password_grant"
	signInResultOK      = "success"
	signInResultFailure = "failure"
	signInResultLocked  = "locked"
)

// signIn checks a password under the throttle the login page and the
// password grant share. A locked (user, address) pair or user name is
// refused before bcrypt runs (a *lockedError); an address with many
// failures has its failures answered late, but is never queued: a correct
// password is checked and answered at once (a queue would let a flood of
// guesses hold back everyone behind the same NAT). A failure counts against the pair, the name and the address; a
// success clears the pair and the name.
//
// Failures and lockouts are audit lines (audit.go) naming the user name
// as typed, the client address, and via (signInViaLogin or
// signInViaPassword) for clientID; every outcome is counted by result.
func (e *Engine) signIn(ctx context.Context, via, clientID, name, password, ip string) (*User, error) {
	th, now := e.web.throttle, time.Now()
	pairKey, userKey, ipKey := "pair:"+ip+"\x00"+name, "user:"+name, "ip:"+ip
	who := func(more ...zap.Field) []zap.Field {
		return append([]zap.Field{zap.String("user", name), zap.String("client_ip", ip),
			zap.String("client_id", clientID), zap.String("via", via)}, more...)
	}
	if until := th.lockedUntil(now, pairKey, userKey); !until.IsZero() {
		e.observer.SignIn(signInResultLocked)
		e.auditLine(ctx, zapcore.InfoLevel, auditSignInRefused, who(zap.Time("locked_until", until))...)
		return nil, &lockedError{until: until}
	}
	u, err := e.users.Authenticate(ctx, name, password)
	if errors.Is(err, ErrUserNotFound) {
		now := time.Now()
		pairUntil := th.fail(now, pairKey)
		userUntil := th.failLimit(now, th.cfg.UserMaxFailures, userKey)
		e.observer.SignIn(signInResultFailure)
		e.auditLine(ctx, zapcore.InfoLevel, auditSignInFailed, who()...)
		// A lock begins with the failure that sets it (a locked key is
		// refused above, never failed): one line per lockout, however
		// many attempts it then refuses.
		switch {
		case !userUntil.IsZero():
			e.auditLine(ctx, zapcore.WarnLevel, auditSignInLocked, who(zap.String("lock", "user"), zap.Time("locked_until", userUntil))...)
		case !pairUntil.IsZero():
			e.auditLine(ctx, zapcore.WarnLevel, auditSignInLocked, who(zap.String("lock", "user_and_address"), zap.Time("locked_until", pairUntil))...)
		}
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
	e.observer.SignIn(signInResultOK)
	th.succeed(pairKey)
	th.succeed(userKey)
	return u, nil
}

// oversizedSignIn counts and logs a sign-in refused before the throttle
// because its name or password is longer than any user's can be: it is a
// failed sign-in like any other for whoever watches the audit log. The
// name is logged cut to maxSignInName bytes (at a character boundary).
func (e *Engine) oversizedSignIn(ctx context.Context, via, clientID, name, ip string) {
	cut := name
	if len(cut) > maxSignInName {
		cut = strings.ToValidUTF8(cut[:maxSignInName], "")
	}
	e.observer.SignIn(signInResultFailure)
	e.auditLine(ctx, zapcore.InfoLevel, auditSignInFailed, zap.String("user", cut), zap.Bool("user_truncated", cut != name),
		zap.String("client_ip", ip), zap.String("client_id", clientID), zap.String("via", via))
}

// maxSignInName and maxSignInPassword bound what a sign-in form or the
// password grant may send: no user name is longer (ValidateUser).
const (
	maxSignInName     = 200
	maxSignInPassword = 1024
)
