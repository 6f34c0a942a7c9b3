package gate

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
)

// serverCookieNames are the authorization server's own cookies, set by
// the oauth app (grants/web.go: sessionCookie and csrfCookie, which the
// gate cannot import). Their values sign a browser in at the server.
var serverCookieNames = []string{serverCookieName, "oauthgate_csrf"}

// moduleCookies holds the names of every cookie this module sets in this
// process: the authorization server's, and each provisioned login gate's
// session cookie and sign-in slots, with and without __Host-. Every
// oauth_protect removes them from the Cookie header it forwards, so that
// no upstream gets another gate's session (which it could replay to that
// gate as the user) or the server's sign-in. The names are counted by the
// gates that registered them and removed at Cleanup, so the set is
// bounded by the running configurations.
var moduleCookies = newCookieRegistry()

type cookieRegistry struct {
	mu     sync.Mutex
	counts map[string]int
	// names is the current set, replaced whole on change: the request
	// path reads it without a lock.
	names atomic.Pointer[map[string]struct{}]
}

func newCookieRegistry() *cookieRegistry {
	reg := &cookieRegistry{counts: map[string]int{}}
	for _, n := range serverCookieNames {
		reg.counts[n]++
		reg.counts["__Host-"+n]++
	}
	reg.publish()
	return reg
}

func (reg *cookieRegistry) publish() {
	m := make(map[string]struct{}, len(reg.counts))
	for n := range reg.counts {
		m[n] = struct{}{}
	}
	reg.names.Store(&m)
}

// add registers names (one gate's); remove undoes it.
func (reg *cookieRegistry) add(names []string) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, n := range names {
		reg.counts[n]++
	}
	reg.publish()
}

func (reg *cookieRegistry) remove(names []string) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, n := range names {
		if reg.counts[n]--; reg.counts[n] <= 0 {
			delete(reg.counts, n)
		}
	}
	reg.publish()
}

func (reg *cookieRegistry) has(name string) bool {
	_, ok := (*reg.names.Load())[name]
	return ok
}

// loginCookieNames are all the names a login gate's cookies take: the
// session cookie and the sign-in slots, over TLS (__Host-) and not.
func loginCookieNames(base string) []string {
	var out []string
	for _, prefix := range []string{"", "__Host-"} {
		out = append(out, prefix+base)
		for i := range maxLoginCookies {
			out = append(out, prefix+base+"_login"+strconv.Itoa(i))
		}
	}
	return out
}

// registerCookies records a provisioned login gate's cookie names.
func (p *Protect) registerCookies() {
	if p.login == nil || p.registered != nil {
		return
	}
	p.registered = loginCookieNames(p.login.cookieName)
	moduleCookies.add(p.registered)
}

// Cleanup forgets the gate's cookie names (Caddy calls it when the
// configuration is replaced, and after a failed Provision).
func (p *Protect) Cleanup() error {
	if p.registered != nil {
		moduleCookies.remove(p.registered)
		p.registered = nil
	}
	return nil
}

// takeCookies removes from the Cookie header every cookie this module
// sets in this process (moduleCookies: every login gate's session and
// sign-in cookies and the authorization server's), so no upstream gets
// one it could replay, and returns this gate's own, under this request's
// names: its session cookie's value and its sign-in slots. One pass over
// the header serves both. Other cookies are kept as sent; a line with
// none of ours is kept byte for byte.
func (p *Protect) takeCookies(r *http.Request) (sessionValue string, login map[int]string) {
	lines := r.Header["Cookie"]
	if len(lines) == 0 {
		return "", nil
	}
	var sessionName string
	if p.login != nil {
		sessionName = p.login.sessionCookieName(r)
	}
	var kept []string
	changed := false
	for i, line := range lines {
		var rest []string
		dropped := false
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			name, value, _ := strings.Cut(part, "=")
			name = strings.TrimSpace(name)
			if !moduleCookies.has(name) {
				if part != "" {
					rest = append(rest, part)
				}
				continue
			}
			dropped = true
			switch {
			case sessionName == "":
			case name == sessionName:
				if sessionValue == "" {
					sessionValue = value
				}
			case strings.HasPrefix(name, sessionName+"_login"):
				i, err := strconv.Atoi(strings.TrimPrefix(name, sessionName+"_login"))
				if err == nil && i >= 0 && i < maxLoginCookies && login[i] == "" {
					if login == nil {
						login = map[int]string{}
					}
					login[i] = value
				}
			}
		}
		if !dropped {
			if changed {
				kept = append(kept, line)
			}
			continue
		}
		if !changed {
			changed = true
			kept = append(kept, lines[:i]...)
		}
		if len(rest) > 0 {
			kept = append(kept, strings.Join(rest, "; "))
		}
	}
	if changed {
		if len(kept) == 0 {
			delete(r.Header, "Cookie")
		} else {
			r.Header["Cookie"] = kept
		}
	}
	return sessionValue, login
}

var _ caddy.CleanerUpper = (*Protect)(nil)
