package grants

import (
	"errors"
	"net/netip"
	"sync"
	"time"
)

// ThrottleConfig limits failed sign-ins (login page and password grant).
//
// Failures count per user name and client address together, per user
// name, and per client address. A (user, address) pair is locked after
// MaxFailures; a user name, wherever the guesses come from, after
// UserMaxFailures. An address is never locked, because a NAT or a proxy
// puts many people behind one: past IPMaxFailures its failed attempts are
// answered only after a delay (IPDelay, doubling, up to 16 times), so
// guessing from it slows down. Its sign-ins are not queued: the password is
// checked at once and only a failure's answer waits, so a correct password
// from that address signs in without delay however many guesses are in
// flight.
type ThrottleConfig struct {
	// MaxFailures is how many failures of one user name from one client
	// address in Window are free before that pair is locked. Default 5.
	MaxFailures int
	// UserMaxFailures is how many failures of one user name, from any
	// addresses, in Window are free before the name is locked. Default
	// 4 × MaxFailures.
	UserMaxFailures int
	// IPMaxFailures is how many failures from one client address in
	// Window are answered at once; later ones are delayed. Default
	// 4 × MaxFailures.
	IPMaxFailures int
	// IPDelay is the first delay of a failure past IPMaxFailures; it
	// doubles with every MaxFailures further failures, up to 16 × IPDelay.
	// Default 1s.
	IPDelay time.Duration
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
	if cfg.UserMaxFailures <= 0 {
		cfg.UserMaxFailures = 4 * cfg.MaxFailures
	}
	if cfg.IPMaxFailures <= 0 {
		cfg.IPMaxFailures = 4 * cfg.MaxFailures
	}
	if cfg.IPDelay <= 0 {
		cfg.IPDelay = time.Second
	}
	return &throttle{cfg: cfg, m: map[string]*throttleEntry{}}
}

// locked reports whether any of the keys is locked now.
func (t *throttle) locked(now time.Time, keys ...string) bool {
	return !t.lockedUntil(now, keys...).IsZero()
}

// lockedUntil returns when the last lock among keys ends, or zero when
// none is locked.
func (t *throttle) lockedUntil(now time.Time, keys ...string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var until time.Time
	for _, k := range keys {
		if e, ok := t.m[k]; ok && now.Before(e.until) && e.until.After(until) {
			until = e.until
		}
	}
	return until
}

// fail records a failure for each key and locks those past the limit.
// It returns when the lock it set ends, or zero when it set none.
func (t *throttle) fail(now time.Time, keys ...string) time.Time {
	return t.failLimit(now, t.cfg.MaxFailures, keys...)
}

// failLimit records a failure for each key and locks those past max. It
// returns when the last lock it set ends, or zero when it set none.
func (t *throttle) failLimit(now time.Time, max int, keys ...string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failLocked(now, max, keys...)
}

func (t *throttle) failLocked(now time.Time, max int, keys ...string) (locked time.Time) {
	if len(t.m) >= throttleMaxKeys {
		t.prune(now)
	}
	for _, k := range keys {
		e := t.entryLocked(now, k)
		e.failures++
		e.last = now
		if over := e.failures - max; over >= 0 && max > 0 {
			lock := t.cfg.BaseLock << min(over, 20)
			if lock > t.cfg.Window || lock <= 0 {
				lock = t.cfg.Window
			}
			e.until = now.Add(lock)
			if e.until.After(locked) {
				locked = e.until
			}
		}
	}
	return locked
}

// entryLocked returns k's entry, new when k had none or its failures aged
// out.
func (t *throttle) entryLocked(now time.Time, k string) *throttleEntry {
	e, ok := t.m[k]
	if !ok || now.Sub(e.last) > t.cfg.Window {
		e = &throttleEntry{}
		t.m[k] = e
	}
	return e
}

// failAddress records a failure from an address and returns how long to
// wait before answering it: zero up to IPMaxFailures, then IPDelay,
// doubling every MaxFailures failures, up to 16 × IPDelay.
func (t *throttle) failAddress(now time.Time, key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(now, 0, key)
	over := t.m[key].failures - t.cfg.IPMaxFailures
	if over <= 0 {
		return 0
	}
	return t.cfg.IPDelay << min((over-1)/t.cfg.MaxFailures, 4)
}

// errSignInLocked is returned while a user name, or a user name from an
// address, is locked out.
var errSignInLocked = errors.New("too many failed sign-ins")

// lockedError says until when sign-in is locked.
type lockedError struct{ until time.Time }

func (e *lockedError) Error() string        { return errSignInLocked.Error() }
func (e *lockedError) Is(target error) bool { return target == errSignInLocked }

// retryAfter is the whole seconds until a lock ends, at least 1.
func retryAfter(err error, now time.Time) int {
	var le *lockedError
	if !errors.As(err, &le) {
		return 1
	}
	return max(1, int(le.until.Sub(now).Round(time.Second)/time.Second))
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

// addrKey is what per-address limits count by: an IPv4 address, or the
// /64 an IPv6 address is in (what one host or site is usually given), so
// that a client cannot step through its own addresses to start afresh.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}
