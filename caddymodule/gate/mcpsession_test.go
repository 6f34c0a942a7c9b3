package gate

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// TestMCPSessionTable: an id is its owner's (issuer, subject, client and
// audience all count); an unknown or idle one passes; the table is
// bounded, the least recently used forgotten first.
func TestMCPSessionTable(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tab := newMCPSessionTable(3, time.Hour)
	alice := mcpOwner{issuer: "https://as.test", subject: "alice", clientID: "c1", audience: "https://mcp.test/mcp"}
	tab.bind("s-alice", alice, now)
	if !tab.check("s-alice", alice, now) {
		t.Fatal("the owner was refused her own session")
	}
	for name, o := range map[string]mcpOwner{
		"another subject":  {issuer: alice.issuer, subject: "bob", clientID: "c1", audience: alice.audience},
		"another audience": {issuer: alice.issuer, subject: "alice", clientID: "c1", audience: "https://other.test/mcp"},
		"another client":   {issuer: alice.issuer, subject: "alice", clientID: "c2", audience: alice.audience},
		"another issuer":   {issuer: "https://idp.test", subject: "alice", clientID: "c1", audience: alice.audience},
	} {
		if tab.check("s-alice", o, now) {
			t.Errorf("%s: passed with alice's session", name)
		}
	}
	bob := mcpOwner{subject: "bob", audience: alice.audience}
	if !tab.check("s-unknown", bob, now) {
		t.Error("an unknown session id was refused; the upstream decides")
	}
	// A second bind by another owner does not take the session over.
	tab.bind("s-alice", bob, now)
	if tab.check("s-alice", bob, now) {
		t.Error("bind by another owner took the session over")
	}
	tab.forget("s-alice")
	if !tab.check("s-alice", bob, now) {
		t.Error("a forgotten session is still bound")
	}
	// Idle past the limit: forgotten.
	tab.bind("s-idle", alice, now)
	if !tab.check("s-idle", bob, now.Add(time.Hour+time.Second)) {
		t.Error("an idle session is still bound")
	}
	// Bounded: the least recently used goes first.
	tab = newMCPSessionTable(3, time.Hour)
	for _, id := range []string{"a", "b", "c"} {
		tab.bind(id, alice, now)
	}
	tab.check("a", alice, now) // a is used: b is now the oldest
	tab.bind("d", alice, now)
	if tab.len() != 3 {
		t.Fatalf("table holds %d, want at most 3", tab.len())
	}
	if !tab.check("b", bob, now) {
		t.Error("the least recently used session was not the one evicted")
	}
	if tab.check("a", bob, now) || tab.check("d", bob, now) {
		t.Error("a recent session was evicted")
	}
}

func mcpSessionID(t *testing.T) string {
	t.Helper()
	return "sess-" + rand.Text()
}

// mcpUpstream opens a session on a POST without one and answers every
// other request 200 (DELETE included), as an MCP server does.
func mcpUpstream(newID string, seen *int) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		*seen++
		if r.Header.Get(mcpSessionHeader) == "" {
			w.Header().Set(mcpSessionHeader, newID)
		}
		w.Header().Set("Content-Type", "application/json")
		_, err := w.Write([]byte(`{"jsonrpc":"2.0","result":{},"id":1}`))
		return err
	}
}

func mcpRequest(method, session string) *http.Request {
	r := httptest.NewRequest(method, "https://mcp.test/mcp", strings.NewReader(`{"jsonrpc":"2.0","method":"tools/list","id":1}`))
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Content-Type", "application/json")
	if session != "" {
		r.Header.Set(mcpSessionHeader, session)
	}
	return r
}

// TestMCPSessionBinding: a session the upstream opened for alice is
// hers: bob's token with its id is answered 404 (the MCP answer for an
// unknown session) before the upstream, on POST, GET (the SSE stream)
// and DELETE; through a gate for another audience too. Alice's DELETE
// that the upstream accepts ends the binding.
func TestMCPSessionBinding(t *testing.T) {
	p := provisioned(t, mcpGate)
	other := provisioned(t, "oauth_protect {\n audience https://other.test/mcp\n}")
	alice := &tokens.AccessClaims{Issuer: "https://as.test", Subject: "alice", ClientID: "c1"}
	bob := &tokens.AccessClaims{Issuer: "https://as.test", Subject: "bob", ClientID: "c1"}
	id := mcpSessionID(t)
	seen := 0
	up := mcpUpstream(id, &seen)

	w := httptest.NewRecorder()
	if err := p.serveNext(w, mcpRequest(http.MethodPost, ""), up, alice); err != nil || w.Header().Get(mcpSessionHeader) != id {
		t.Fatalf("initialize: %v, session %q", err, w.Header().Get(mcpSessionHeader))
	}
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		seen = 0
		w = httptest.NewRecorder()
		_ = p.serveNext(w, mcpRequest(m, id), up, bob)
		if w.Code != http.StatusNotFound || seen != 0 || !strings.Contains(w.Body.String(), `"Session not found"`) || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("bob %s with alice's session: %d %q forwarded %d, want 404 JSON, not forwarded", m, w.Code, w.Body, seen)
		}
	}
	w = httptest.NewRecorder()
	seen = 0
	_ = other.serveNext(w, mcpRequest(http.MethodPost, id), up, alice)
	if w.Code != http.StatusNotFound || seen != 0 {
		t.Errorf("alice's session through another audience's gate: %d forwarded %d, want 404", w.Code, seen)
	}
	w = httptest.NewRecorder()
	_ = p.serveNext(w, mcpRequest(http.MethodPost, id), up, alice)
	if w.Code != http.StatusOK {
		t.Errorf("alice with her session: %d, want 200", w.Code)
	}
	// Unknown ids pass: the upstream decides (after a restart, say).
	w = httptest.NewRecorder()
	seen = 0
	_ = p.serveNext(w, mcpRequest(http.MethodPost, mcpSessionID(t)), up, bob)
	if w.Code != http.StatusOK || seen != 1 {
		t.Errorf("unknown session: %d forwarded %d, want passed", w.Code, seen)
	}
	// Two ids in one request: refused, whichever the upstream would read.
	r := mcpRequest(http.MethodPost, id)
	r.Header.Add(mcpSessionHeader, "sess-other")
	w = httptest.NewRecorder()
	seen = 0
	_ = p.serveNext(w, r, up, alice)
	if w.Code != http.StatusBadRequest || seen != 0 {
		t.Errorf("two session ids: %d forwarded %d, want 400", w.Code, seen)
	}
	// A refused DELETE keeps the binding; alice's accepted one ends it.
	refuse := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	})
	_ = p.serveNext(httptest.NewRecorder(), mcpRequest(http.MethodDelete, id), refuse, alice)
	if mcpSessions.check(id, mcpOwner{issuer: bob.Issuer, subject: "bob", clientID: "c1", audience: p.Audience}, time.Now()) {
		t.Error("a DELETE the upstream refused ended the binding")
	}
	w = httptest.NewRecorder()
	_ = p.serveNext(w, mcpRequest(http.MethodDelete, id), up, alice)
	if w.Code != http.StatusOK || !mcpSessions.check(id, mcpOwner{issuer: bob.Issuer, subject: "bob", clientID: "c1", audience: p.Audience}, time.Now()) {
		t.Errorf("alice's DELETE (%d) did not end the binding", w.Code)
	}
}

// TestMCPSessionThroughGate: the token path binds what the upstream
// opens to the token's identity; a request without a session id and no
// event-stream Accept is not wrapped.
func TestMCPSessionThroughGate(t *testing.T) {
	p, tok := startedGate(t, "oauth_protect {\n audience https://api.test\n}")
	id := mcpSessionID(t)
	seen := 0
	up := mcpUpstream(id, &seen)
	r := mcpRequest(http.MethodPost, "")
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Authorization", "Bearer "+tok)
	r, _ = caddyRequest(r)
	w := httptest.NewRecorder()
	if err := p.ServeHTTP(w, r, up); err != nil || w.Code != http.StatusOK {
		t.Fatalf("initialize: %d %v", w.Code, err)
	}
	if mcpSessions.check(id, mcpOwner{subject: "someone-else", audience: p.Audience}, time.Now()) {
		t.Fatal("the session the upstream opened through the gate is not bound")
	}
	var wrapped bool
	plain := handlerFunc(func(w http.ResponseWriter, r *http.Request) error { _, wrapped = w.(*mcpWriter); return nil })
	r = httptest.NewRequest(http.MethodPost, "https://api.test/items", strings.NewReader(`{}`))
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Authorization", "Bearer "+tok)
	r, _ = caddyRequest(r)
	if _ = p.ServeHTTP(httptest.NewRecorder(), r, plain); wrapped {
		t.Error("a request without MCP headers was wrapped")
	}
}
