package grants

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ThrottleConfig limits failed sign-ins (login page and password grant).
type ThrottleConfig struct {
	// MaxFailures is how many failures in Window are free before a key
	// (a user name or a client address) is locked. Default 5.
	MaxFailures int
	// Window is how long failures are remembered. Default 15m.
	Window time.Duration
	// BaseLock is the first lock; each further failure doubles it, up to
	// Window. Default 30s.
	BaseLock time.Duration
}

// throttle counts failures per key in memory. It is bounded: when full it
// forgets keys whose failures have aged out, then unlocked keys; a locked
// key is never forgotten, so flooding it with new keys cannot unlock one.
type throttle struct {
	cfg ThrottleConfig
	mu  sync.Mutex
	m   map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	last     time.Time
	until    time.Time
}

const throttleMaxKeys = 100_000

func newThrottle(cfg ThrottleConfig) *throttle {
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	if cfg.Window <= 0 {
		cfg.Window = 15 * time.Minute
	}
	if cfg.BaseLock <= 0 {
		cfg.BaseLock = 30 * time.Second
	}
	return &throttle{cfg: cfg, m: map[string]*throttleEntry{}}
}

// locked reports whether any of the keys is locked now.
func (t *throttle) locked(now time.Time, keys ...string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if e, ok := t.m[k]; ok && now.Before(e.until) {
			return true
		}
	}
	return false
}

// fail records a failure for each key and locks those past the limit.
func (t *throttle) fail(now time.Time, keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= throttleMaxKeys {
		t.prune(now)
	}
	for _, k := range keys {
		e, ok := t.m[k]
		if !ok || now.Sub(e.last) > t.cfg.Window {
			e = &throttleEntry{}
			t.m[k] = e
		}
		e.failures++
		e.last = now
		if over := e.failures - t.cfg.MaxFailures; over >= 0 {
			lock := t.cfg.BaseLock << min(over, 20)
			if lock > t.cfg.Window || lock <= 0 {
				lock = t.cfg.Window
			}
			e.until = now.Add(lock)
		}
	}
}

// errSignInLocked is returned while a user name or address is locked out.
var errSignInLocked = errors.New("too many failed sign-ins")

// signIn checks a password under the throttle the login page and the
// password grant share: a locked user name or address is refused before
// bcrypt runs, a failure counts against both, a success clears the user.
func (e *Engine) signIn(ctx context.Context, name, password, ip string) (*User, error) {
	th, now := e.web.throttle, time.Now()
	keys := []string{"user:" + name, "ip:" + ip}
	if th.locked(now, keys...) {
		return nil, errSignInLocked
	}
	u, err := e.Users.Authenticate(ctx, name, password)
	if errors.Is(err, ErrUserNotFound) {
		th.fail(now, keys...)
	}
	if err != nil {
		return nil, err
	}
	th.succeed(keys[0])
	return u, nil
}

// succeed forgets the failures of a user who signed in.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// prune makes room; called with t.mu held.
func (t *throttle) prune(now time.Time) {
	for k, e := range t.m {
		if now.Sub(e.last) > t.cfg.Window && !now.Before(e.until) {
			delete(t.m, k)
		}
	}
	for k, e := range t.m {
		if len(t.m) < throttleMaxKeys*9/10 {
			return
		}
		if !now.Before(e.until) {
			delete(t.m, k)
		}
	}
}
