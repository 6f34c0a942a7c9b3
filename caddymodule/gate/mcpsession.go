package gate

import (
	"container/list"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// MCP sessions (Streamable HTTP, MCP 2025-11-25 "Session Management"):
// the server names a session in an Mcp-Session-Id response header and
// the client sends it back on every request. The specification has
// servers bind session ids to the user; the gate promises that the MCP
// server needs no auth logic, so the gate binds them. A session id the
// upstream handed out through this gate belongs to the token's issuer,
// subject and client and to the gate's audience: the same id with
// another identity, or through a gate for another audience, is answered
// 404 before the upstream, which is what the specification answers for
// a session the server does not know (the client starts a new one).

// mcpSessionHeader is the header of the MCP Streamable HTTP transport.
const mcpSessionHeader = "Mcp-Session-Id"

const (
	// mcpSessionIdle is how long a session is remembered unused.
	mcpSessionIdle = 24 * time.Hour
	// mcpSessionMax bounds the table; the least recently used is
	// forgotten first, and an id the table forgot passes to the
	// upstream as an unknown one does.
	mcpSessionMax = 100_000
)

// mcpOwner is who a session belongs to.
type mcpOwner struct {
	issuer, subject, clientID, audience string
}

type mcpEntry struct {
	key   [32]byte // SHA-256 of the session id: the table holds no id
	owner mcpOwner
	used  time.Time
}

// mcpSessionTable is the process-wide table of the sessions the gates
// saw opened: the key carries the audience, so gates share it.
type mcpSessionTable struct {
	mu    sync.Mutex
	max   int
	idle  time.Duration
	byKey map[[32]byte]*list.Element
	lru   list.List // front: most recently used
}

func newMCPSessionTable(max int, idle time.Duration) *mcpSessionTable {
	return &mcpSessionTable{max: max, idle: idle, byKey: make(map[[32]byte]*list.Element)}
}

var mcpSessions = newMCPSessionTable(mcpSessionMax, mcpSessionIdle)

func mcpKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// check reports whether owner may use the session id: true when the
// table does not know it (the upstream decides) or knows it for owner.
func (t *mcpSessionTable) check(id string, owner mcpOwner, now time.Time) bool {
	k := mcpKey(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.byKey[k]
	if !ok {
		return true
	}
	e := el.Value.(*mcpEntry)
	if now.Sub(e.used) > t.idle {
		t.lru.Remove(el)
		delete(t.byKey, k)
		return true
	}
	if e.owner != owner {
		return false
	}
	e.used = now
	t.lru.MoveToFront(el)
	return true
}

// bind remembers the session id for owner. An id already bound to
// someone else keeps its owner: the first binding is the upstream's.
func (t *mcpSessionTable) bind(id string, owner mcpOwner, now time.Time) {
	k := mcpKey(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.byKey[k]; ok {
		e := el.Value.(*mcpEntry)
		if e.owner == owner || now.Sub(e.used) <= t.idle {
			if e.owner == owner {
				e.used = now
				t.lru.MoveToFront(el)
			}
			return
		}
		t.lru.Remove(el)
		delete(t.byKey, k)
	}
	for t.lru.Len() >= t.max {
		oldest := t.lru.Back()
		t.lru.Remove(oldest)
		delete(t.byKey, oldest.Value.(*mcpEntry).key)
	}
	t.byKey[k] = t.lru.PushFront(&mcpEntry{key: k, owner: owner, used: now})
}

// forget drops the session id (the upstream ended the session).
func (t *mcpSessionTable) forget(id string) {
	k := mcpKey(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.byKey[k]; ok {
		t.lru.Remove(el)
		delete(t.byKey, k)
	}
}

func (t *mcpSessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// mightOpenMCPSession reports whether r could be an MCP initialize
// request, whose answer names a new session: a POST whose Accept lists
// text/event-stream, as the transport requires of clients. Other
// requests without a session id are not wrapped, so they cost nothing.
func mightOpenMCPSession(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	for _, a := range r.Header["Accept"] {
		if strings.Contains(a, "text/event-stream") {
			return true
		}
	}
	return false
}

// serveNext passes an allowed request to the next handler; a request or
// an answer with an MCP session id goes through the session table.
func (p *Protect) serveNext(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, c *tokens.AccessClaims) error {
	ids, sent := r.Header[mcpSessionHeader]
	if !sent && !mightOpenMCPSession(r) {
		return next.ServeHTTP(w, r)
	}
	owner := mcpOwner{issuer: c.Issuer, subject: c.Subject, clientID: c.ClientID, audience: p.Audience}
	id := ""
	if sent {
		// One id per request: a second one could be read by the
		// upstream instead of the one checked.
		if len(ids) != 1 || ids[0] == "" {
			return p.denyRequest(w, r, http.StatusBadRequest, "send one Mcp-Session-Id header")
		}
		id = ids[0]
		if !mcpSessions.check(id, owner, time.Now()) {
			countGate(gateForbidden)
			if ce := p.logger.Check(zapcore.DebugLevel, "MCP session of another user or audience refused"); ce != nil {
				ce.Write(zap.String("sub", c.Subject), zap.String("client_id", c.ClientID), zap.String("audience", p.Audience))
			}
			drainBody(r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, err := io.WriteString(w, `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}`)
			return err
		}
	}
	mw := &mcpWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, owner: owner, sent: id, delete: r.Method == http.MethodDelete}
	return next.ServeHTTP(mw, r)
}

// mcpWriter looks at the upstream's answer: a session id it names is
// bound to the request's owner; a 2xx to DELETE forgets the session.
type mcpWriter struct {
	caddyhttp.ResponseWriterWrapper
	owner   mcpOwner
	sent    string
	delete  bool
	written bool
}

func (mw *mcpWriter) WriteHeader(status int) {
	if !mw.written && status >= 200 {
		mw.written = true
		if status < 300 {
			switch {
			case mw.delete && mw.sent != "":
				mcpSessions.forget(mw.sent)
			default:
				if got := mw.Header().Get(mcpSessionHeader); got != "" {
					mcpSessions.bind(got, mw.owner, time.Now())
				}
			}
		}
	}
	mw.ResponseWriterWrapper.WriteHeader(status)
}

func (mw *mcpWriter) Write(b []byte) (int, error) {
	if !mw.written {
		mw.WriteHeader(http.StatusOK)
	}
	return mw.ResponseWriterWrapper.Write(b)
}

// ReadFrom keeps reverse_proxy's io.Copy going through Write, so the
// answer's headers are seen before the first byte.
func (mw *mcpWriter) ReadFrom(r io.Reader) (int64, error) {
	if !mw.written {
		mw.WriteHeader(http.StatusOK)
	}
	return io.Copy(&mw.ResponseWriterWrapper, r)
}
