package grants

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CORS at the authorization server (docs/security.md). Browser apps (public
// clients on their own origin) call the token, revocation and userinfo
// endpoints with fetch: those answer CORS for the exact origins of
// registered redirect URIs, echoing the one origin, with Vary: Origin and
// never Access-Control-Allow-Credentials (nothing there reads cookies:
// the client authenticates in the body or the Authorization header, which
// a page sets itself). The JWKS and discovery documents are public and
// answer any origin with "*", without credentials, and so does the
// registration endpoint (a browser MCP client registers before it has a
// registered origin; the initial or registration access token is sent in
// the Authorization header, never a cookie). The authorization
// endpoint and the sign-in pages are navigations, never fetches: they
// answer no CORS, and neither does introspection (a server-to-server
// call).

// corsPolicy says which origins an endpoint answers CORS for.
type corsPolicy int

const (
	// corsAppOrigins: the origins of registered redirect URIs.
	corsAppOrigins corsPolicy = iota
	// corsAnyOrigin: "*", for public documents.
	corsAnyOrigin
	// corsRegistration: "*" for the registration endpoint, whose callers
	// (browser MCP clients) have no registered origin yet; it reads no
	// cookie, so any origin learns only what its own request returns.
	corsRegistration
)

// corsMaxAge is how long (seconds) a browser may reuse a preflight answer.
const corsMaxAge = "600"

// corsRefresh bounds how long a client registered at run time on another
// node (or removed there) takes to gain (or lose) CORS here; changes made
// through this engine apply at once, and so do the other nodes' changes
// that a shared store reports (StoredClientsChanged).
const corsRefresh = 30 * time.Second

// StoredClientsChanged tells the engine that another node registered or
// changed a client, so that its redirect URIs' origins gain CORS at once
// rather than within corsRefresh.
func (e *Engine) StoredClientsChanged() { e.corsOrigins.forget() }

// cors applies the CORS policy to a request for an endpoint taking
// methods (such as "POST" or "GET, POST"). It answers an OPTIONS request
// itself (a preflight, or a plain OPTIONS) and then reports true; other
// requests get their CORS headers and go on.
func (e *Engine) cors(w http.ResponseWriter, r *http.Request, policy corsPolicy, methods string) bool {
	h := w.Header()
	var origin string
	if o := r.Header.Values("Origin"); len(o) == 1 {
		origin = o[0]
	}
	var allow string
	switch policy {
	case corsAnyOrigin, corsRegistration:
		allow = "*"
	default:
		// The answer depends on Origin, whatever it is.
		h.Add("Vary", "Origin")
		if origin != "" && e.corsOrigins.allowed(r.Context(), e, origin) {
			allow = origin
		}
	}
	if r.Method != http.MethodOptions {
		if allow != "" {
			h.Set("Access-Control-Allow-Origin", allow)
			if policy == corsAppOrigins {
				// An app reads the challenge of a refused request, and
				// the server nonce a DPoP client retries with.
				h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, DPoP-Nonce")
			}
		}
		return false
	}
	DiscardBody(r)
	h.Set("Allow", methods+", OPTIONS")
	// A public document answers every OPTIONS with "*", as its GET: the
	// answer depends on nothing in the request. The registration endpoint
	// answers "*" to a real preflight for one of its methods only.
	if m := r.Header.Get("Access-Control-Request-Method"); policy == corsAnyOrigin || allow != "" && origin != "" && m != "" && listHas(methods, m) {
		h.Set("Access-Control-Allow-Origin", allow)
		h.Set("Access-Control-Allow-Methods", methods)
		switch policy {
		case corsAnyOrigin:
			h.Set("Access-Control-Allow-Headers", "*")
		case corsRegistration:
			// Named: "*" does not cover Authorization (Fetch standard).
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		default:
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP")
		}
		h.Set("Access-Control-Max-Age", corsMaxAge)
	}
	if policy == corsAppOrigins {
		h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}

// listHas reports whether a comma-separated list holds v exactly.
func listHas(list, v string) bool {
	for _, x := range strings.Split(list, ",") {
		if strings.TrimSpace(x) == v {
			return true
		}
	}
	return false
}

// originOf is the origin a browser sends for pages under an http(s)
// redirect URI: lower-case scheme and host, no default port; "" for
// other URIs (custom schemes of native apps have no web origin).
func originOf(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" || u.User != nil {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(scheme == "http" && p == "80") && !(scheme == "https" && p == "443") {
		host += ":" + p
	}
	return scheme + "://" + host
}

// appOrigins holds the origins of every client's redirect URIs: the
// config's, fixed, and the run-time ones, read from storage at most every
// corsRefresh (or at once after a change through this engine), so that an
// unknown Origin never costs a storage read.
type appOrigins struct {
	configOnce sync.Once
	config     map[string]bool

	mu     sync.Mutex // one refresh at a time
	stored atomic.Pointer[storedOrigins]
	stale  atomic.Bool
}

type storedOrigins struct {
	set map[string]bool
	at  time.Time
}

func addOrigins(set map[string]bool, c *Client) {
	for _, ru := range c.RedirectURIs {
		if o := originOf(ru); o != "" {
			set[o] = true
		}
	}
}

// allowed reports whether origin is the origin of a registered redirect
// URI.
func (a *appOrigins) allowed(ctx context.Context, e *Engine, origin string) bool {
	a.configOnce.Do(func() {
		a.config = map[string]bool{}
		for _, c := range e.clients {
			addOrigins(a.config, c)
		}
	})
	if a.config[origin] {
		return true
	}
	s := a.stored.Load()
	if s == nil || a.stale.Load() || time.Since(s.at) > corsRefresh {
		s = a.refresh(ctx, e)
	}
	return s.set[origin]
}

func (a *appOrigins) refresh(ctx context.Context, e *Engine) *storedOrigins {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.stored.Load(); s != nil && !a.stale.Load() && time.Since(s.at) <= corsRefresh {
		return s // another request refreshed it meanwhile
	}
	a.stale.Store(false)
	clients, err := e.storedClients(ctx)
	s := &storedOrigins{set: map[string]bool{}, at: time.Now()}
	if err != nil {
		// Keep what we knew; try again after corsRefresh.
		if old := a.stored.Load(); old != nil {
			s.set = old.set
		}
	}
	for _, c := range clients {
		addOrigins(s.set, c)
	}
	a.stored.Store(s)
	return s
}

// forget makes the next check read the run-time clients again.
func (a *appOrigins) forget() { a.stale.Store(true) }
