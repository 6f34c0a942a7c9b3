package grants

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const lockedMessage = "Too many failed sign-ins."

func TestThrottleDefaults(t *testing.T) {
	t.Parallel()
	th := newThrottle(ThrottleConfig{})
	if th.cfg.MaxFailures != 5 || th.cfg.Window != 15*time.Minute || th.cfg.BaseLock != 30*time.Second {
		t.Fatalf("defaults = %+v", th.cfg)
	}
	th = newThrottle(ThrottleConfig{MaxFailures: -1, Window: -time.Second, BaseLock: -time.Second})
	if th.cfg.MaxFailures != 5 || th.cfg.Window != 15*time.Minute || th.cfg.BaseLock != 30*time.Second {
		t.Fatalf("negative values not replaced by defaults: %+v", th.cfg)
	}
}

// The lock starts at MaxFailures failures, doubles with each further
// failure and is capped at Window.
func TestThrottleDoublingLock(t *testing.T) {
	t.Parallel()
	const window = time.Hour
	th := newThrottle(ThrottleConfig{MaxFailures: 3, Window: window, BaseLock: 10 * time.Second})
	t0 := time.Unix(1_000_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	th.fail(at(0), "k")
	th.fail(at(time.Second), "k")
	if th.locked(at(2*time.Second), "k") {
		t.Fatalf("locked after 2 of 3 failures")
	}
	th.fail(at(2*time.Second), "k")
	// Lock 1: 10 s from the third failure.
	steps := []struct {
		failAt time.Duration
		lock   time.Duration
	}{
		{2 * time.Second, 10 * time.Second},
	}
	// Each further failure, once the previous lock is over, doubles it.
	now := 2 * time.Second
	lock := 10 * time.Second
	for range 9 { // 20 s, 40 s, ... 2560 s, then capped at the window
		now += lock + time.Second
		lock *= 2
		if lock > window {
			lock = window
		}
		steps = append(steps, struct {
			failAt time.Duration
			lock   time.Duration
		}{now, lock})
	}
	for i, s := range steps {
		if i > 0 {
			if th.locked(at(s.failAt), "k") {
				t.Fatalf("step %d: still locked at +%v", i, s.failAt)
			}
			th.fail(at(s.failAt), "k")
		}
		if !th.locked(at(s.failAt), "k") || !th.locked(at(s.failAt+s.lock-time.Millisecond), "k") {
			t.Fatalf("step %d: not locked for %v after the failure at +%v", i, s.lock, s.failAt)
		}
		if th.locked(at(s.failAt+s.lock), "k") {
			t.Fatalf("step %d: locked longer than %v", i, s.lock)
		}
	}
	if last := steps[len(steps)-1].lock; last != window {
		t.Fatalf("test did not reach the cap: %v", last)
	}
	// Many more failures: no shift overflow, still capped at Window.
	now = steps[len(steps)-1].failAt
	for range 100 {
		now += window / 2
		th.fail(at(now), "k")
		if !th.locked(at(now+window-time.Second), "k") || th.locked(at(now+window), "k") {
			t.Fatalf("lock after many failures is not exactly Window")
		}
	}
}

// Failures older than Window are forgotten; succeed forgets one key.
func TestThrottleWindowAndSucceed(t *testing.T) {
	t.Parallel()
	th := newThrottle(ThrottleConfig{MaxFailures: 2, Window: time.Minute, BaseLock: 10 * time.Second})
	t0 := time.Unix(1_000_000_000, 0)
	th.fail(t0, "user:a", "ip:1")
	th.fail(t0.Add(61*time.Second), "user:a", "ip:1")
	if th.locked(t0.Add(61*time.Second), "user:a") || th.locked(t0.Add(61*time.Second), "ip:1") {
		t.Fatalf("a failure older than the window still counted")
	}
	th.fail(t0.Add(62*time.Second), "user:a", "ip:1")
	now := t0.Add(62 * time.Second)
	if !th.locked(now, "user:a") || !th.locked(now, "ip:1") {
		t.Fatalf("two failures within the window did not lock")
	}
	if !th.locked(now, "user:other", "ip:1") || !th.locked(now, "user:a", "ip:2") {
		t.Fatalf("locked must report any locked key")
	}
	if th.locked(now, "user:b", "ip:2") {
		t.Fatalf("unrelated keys locked")
	}
	th.succeed("user:a")
	if th.locked(now, "user:a") {
		t.Fatalf("succeed did not forget the user")
	}
	if !th.locked(now, "ip:1") {
		t.Fatalf("succeed for the user forgot the address too")
	}
	// After succeed the count starts again from zero.
	th.fail(now, "user:a")
	if th.locked(now, "user:a") {
		t.Fatalf("one failure after succeed locked")
	}
}

// The map stays bounded; stale keys go first.
func TestThrottleBounded(t *testing.T) {
	t.Parallel()
	cfg := ThrottleConfig{MaxFailures: 3, Window: time.Minute, BaseLock: time.Second}
	now := time.Unix(1_000_000_000, 0)
	fill := func(th *throttle, n int, last time.Time, prefix string) {
		for i := range n {
			th.m[fmt.Sprintf("%s%d", prefix, i)] = &throttleEntry{failures: 1, last: last}
		}
	}

	t.Run("all stale", func(t *testing.T) {
		th := newThrottle(cfg)
		fill(th, throttleMaxKeys, now.Add(-2*time.Minute), "old")
		th.fail(now, "user:a", "ip:1")
		if len(th.m) != 2 || th.m["user:a"] == nil || th.m["ip:1"] == nil {
			t.Fatalf("after pruning %d keys remain, want the 2 new ones", len(th.m))
		}
	})
	t.Run("all fresh", func(t *testing.T) {
		th := newThrottle(cfg)
		fill(th, throttleMaxKeys, now.Add(-time.Second), "new")
		for i := range 5 {
			th.fail(now, fmt.Sprintf("user:%d", i), fmt.Sprintf("ip:%d", i))
			if len(th.m) > throttleMaxKeys+1 {
				t.Fatalf("map grew to %d keys", len(th.m))
			}
			if th.m[fmt.Sprintf("user:%d", i)] == nil || th.m[fmt.Sprintf("ip:%d", i)] == nil {
				t.Fatalf("the keys just failed were not recorded")
			}
		}
	})
	t.Run("half stale", func(t *testing.T) {
		th := newThrottle(cfg)
		fresh := throttleMaxKeys / 2
		fill(th, throttleMaxKeys-fresh, now.Add(-2*time.Minute), "old")
		fill(th, fresh, now.Add(-time.Second), "new")
		th.fail(now, "user:a", "ip:1")
		for k := range th.m {
			if strings.HasPrefix(k, "old") {
				t.Fatalf("stale key %s kept", k)
			}
		}
		// At most one fresh key may go (the first visited, while full).
		if n := len(th.m); n != fresh+2 && n != fresh+1 {
			t.Fatalf("%d keys, want %d (or one fewer)", n, fresh+2)
		}
	})
	t.Run("below the bound nothing is pruned", func(t *testing.T) {
		th := newThrottle(cfg)
		fill(th, 1000, now.Add(-2*time.Minute), "old")
		th.fail(now, "user:a")
		if len(th.m) != 1001 {
			t.Fatalf("%d keys, want 1001", len(th.m))
		}
	})
}

// postLogin signs in from a given address on a fresh form.
func loginFrom(t *testing.T, e *Engine, remote, user, pw string) (status int, body string, signedIn bool) {
	t.Helper()
	b := newBrowser(t, e)
	b.remote = remote
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
	if !isLoginPage(page) {
		t.Fatalf("no login page: %d", page.Code)
	}
	rec := b.login(page, user, pw)
	return rec.Code, rec.Body.String(), setCookie(t, rec, sessionCookie) != nil && rec.Code == http.StatusFound
}

func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	t.Run("per user and address", func(t *testing.T) {
		e := newEngine(t, withThrottle())
		const ip = "127.0.0.10:1"
		for i := range 3 {
			if st, _, _ := loginFrom(t, e, ip, "alice", "wrong"); st != http.StatusOK {
				t.Fatalf("failure %d: %d", i, st)
			}
		}
		st, body, ok := loginFrom(t, e, ip, "alice", "alice-pw")
		if ok || st != http.StatusOK || !strings.Contains(body, lockedMessage) {
			t.Fatalf("locked user signed in with the right password: %d %v", st, ok)
		}
		// The same status as a wrong password (no oracle by status).
		if st, _, _ := loginFrom(t, e, ip, "alice", "wrong"); st != http.StatusOK {
			t.Fatalf("status %d", st)
		}
		// The port is not part of the address.
		if _, _, ok := loginFrom(t, e, "127.0.0.10:2", "alice", "alice-pw"); ok {
			t.Fatalf("another port of a locked pair signed in")
		}
		// Another user from the same address is not affected, nor alice
		// from another address.
		if _, _, ok := loginFrom(t, e, ip, "bob", "bob-pw"); !ok {
			t.Fatalf("bob was locked out by alice's lock")
		}
		if _, _, ok := loginFrom(t, e, "127.0.0.11:1", "alice", "alice-pw"); !ok {
			t.Fatalf("alice was locked out everywhere after failures from one address")
		}
	})
	t.Run("per user", func(t *testing.T) {
		e := newEngine(t, withThrottle())
		// Six failures for alice, each from another address.
		for i := range 6 {
			if st, _, _ := loginFrom(t, e, fmt.Sprintf("127.0.0.%d:1", 20+i), "alice", "wrong"); st != http.StatusOK {
				t.Fatalf("failure %d: %d", i, st)
			}
		}
		st, body, ok := loginFrom(t, e, "127.0.0.30:1", "alice", "alice-pw")
		if ok || !strings.Contains(body, lockedMessage) {
			t.Fatalf("a name guessed from many addresses was not locked: %d %v", st, ok)
		}
		// Once the lock is over, alice signs in, which resets her count.
		e.web.throttle.mu.Lock()
		e.web.throttle.m["user:alice"].until = time.Now().Add(-time.Second)
		e.web.throttle.mu.Unlock()
		if _, _, ok := loginFrom(t, e, "127.0.0.31:1", "alice", "alice-pw"); !ok {
			t.Fatalf("alice still locked after the lock ended")
		}
		if _, found := e.web.throttle.m["user:alice"]; found {
			t.Fatalf("a successful sign-in did not reset the user's failures")
		}
	})
	t.Run("one address for everyone is never locked", func(t *testing.T) {
		// Behind a NAT or a proxy: many failures with any names from one
		// address slow its guesses, but lock no one out.
		e := newEngine(t, withThrottle())
		const ip = "127.0.0.40:1"
		for i := range 8 {
			loginFrom(t, e, ip, fmt.Sprintf("nobody%d", i), "x")
		}
		for _, u := range []string{"carol", "dave", "erin"} {
			if st, _, ok := loginFrom(t, e, ip, u, u+"-pw"); !ok {
				t.Fatalf("%s, who never failed, was refused from a busy address: %d", u, st)
			}
		}
		start := time.Now()
		if _, body, _ := loginFrom(t, e, ip, "frank", "wrong"); strings.Contains(body, lockedMessage) {
			t.Fatalf("a first failure for frank from a busy address was answered as locked")
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Fatalf("a failure from an address past its limit was answered after %v, want at least the 50ms delay", d)
		}
		// An address below the limit is answered at once.
		start = time.Now()
		loginFrom(t, e, "127.0.0.41:1", "frank", "wrong")
		if d := time.Since(start); d >= 50*time.Millisecond {
			t.Logf("a quiet address took %v (slow machine?)", d)
		}
	})
	t.Run("success resets the user's count", func(t *testing.T) {
		e := newEngine(t, withThrottle())
		for range 2 {
			loginFrom(t, e, "127.0.0.50:1", "frank", "wrong")
		}
		if _, _, ok := loginFrom(t, e, "127.0.0.50:1", "frank", "frank-pw"); !ok {
			t.Fatalf("frank locked after 2 of 3 failures")
		}
		for range 2 {
			loginFrom(t, e, "127.0.0.50:1", "frank", "wrong")
		}
		if _, _, ok := loginFrom(t, e, "127.0.0.50:1", "frank", "frank-pw"); !ok {
			t.Fatalf("failures before a success still counted")
		}
	})
	t.Run("the HTTP server's client address counts, not the peer", func(t *testing.T) {
		// Caddy passes its client_ip (trusted_proxies honoured) with
		// WithFront; two users behind one proxy peer are two addresses.
		e := newEngine(t, withThrottle())
		const proxy = "127.0.0.60:1"
		for range 3 {
			loginFromClient(t, e, proxy, "192.0.2.1", "alice", "wrong")
		}
		if _, _, ok := loginFromClient(t, e, proxy, "192.0.2.1", "alice", "alice-pw"); ok {
			t.Fatalf("the locked client address signed in")
		}
		if _, _, ok := loginFromClient(t, e, proxy, "192.0.2.2", "alice", "alice-pw"); !ok {
			t.Fatalf("another client behind the same proxy was locked out")
		}
	})
}

// loginFromClient is loginFrom through a proxy peer that the HTTP server
// resolved to client.
func loginFromClient(t *testing.T, e *Engine, peer, client, user, pw string) (status int, body string, signedIn bool) {
	t.Helper()
	b := newBrowser(t, e)
	// A remote client reaches the pages over TLS (the proxy's).
	b.remote, b.clientIP, b.tls = peer, client, true
	_, ch := newPKCE()
	page := b.get(AuthorizePath + "?" + authzQuery("c-trusted", ch).Encode())
	rec := b.login(page, user, pw)
	return rec.Code, rec.Body.String(), setCookie(t, rec, sessionCookie) != nil && rec.Code == http.StatusFound
}

// A full throttle never forgets a locked key: flooding it with fresh keys
// from many addresses must not unlock a user.
func TestThrottlePruneKeepsLocked(t *testing.T) {
	t.Parallel()
	th := newThrottle(ThrottleConfig{MaxFailures: 1, Window: time.Minute, BaseLock: time.Minute})
	now := time.Unix(1_000_000, 0)
	th.fail(now, "user:victim")
	if !th.locked(now, "user:victim") {
		t.Fatal("victim not locked after MaxFailures")
	}
	for i := 0; len(th.m) < throttleMaxKeys; i++ {
		th.m[fmt.Sprintf("ip:%d", i)] = &throttleEntry{failures: 1, last: now}
	}
	th.fail(now.Add(time.Second), "ip:flood")
	if len(th.m) >= throttleMaxKeys {
		t.Fatalf("throttle not pruned: %d keys", len(th.m))
	}
	if !th.locked(now.Add(2*time.Second), "user:victim") {
		t.Fatal("pruning forgot a locked key")
	}
}

// A busy address slows its failures but never queues a correct password:
// while many failures from it wait out their delays, a correct sign-in from
// the same address is checked and answered at once.
func TestThrottleBusyAddressDoesNotQueue(t *testing.T) {
	e := newEngine(t, withConfig(func(c *Config) {
		c.Web.Throttle = ThrottleConfig{MaxFailures: 3, UserMaxFailures: 6, IPMaxFailures: 6, IPDelay: 2 * time.Second}
		c.Users = append(c.Users, &User{Name: "carol", PasswordHash: testHash("carol-pw")})
	}))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const ip = "192.0.2.99"
	for i := range 6 {
		e.signIn(ctx, signInViaPassword, "c", fmt.Sprintf("nobody%d", i), "x", ip)
	}
	// Ten parallel wrong passwords, each delayed by at least IPDelay.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range 10 {
		wg.Go(func() { e.signIn(ctx, signInViaPassword, "c", fmt.Sprintf("again%d", i), "x", ip) })
	}
	time.Sleep(100 * time.Millisecond) // let them reach their delays
	start := time.Now()
	if _, err := e.signIn(t.Context(), signInViaPassword, "c", "carol", "carol-pw", ip); err != nil {
		t.Fatalf("carol from the busy address: %v", err)
	}
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("a correct password from a busy address took %v: it waited behind the failures", d)
	}
	// A failure from the busy address is still answered late.
	start = time.Now()
	tctx, tcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer tcancel()
	e.signIn(tctx, signInViaPassword, "c", "nobody-late", "x", ip)
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("a failure from a busy address was answered after %v, want at least IPDelay", d)
	}
}
