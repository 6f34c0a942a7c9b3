package grants

import (
	"encoding/json"
	"testing"
)

// FuzzIntrospect sends the RFC 7662 endpoint fuzzed Content-Type and
// Authorization headers and bodies. It never answers a 5xx, never writes
// to the storage, refuses with a well-formed error, and answers a token
// it does not show as exactly {"active":false}; an active answer names
// this issuer and a client.
func FuzzIntrospect(f *testing.F) {
	fe := newFuzzEngine(f)
	for _, s := range fe.fuzzTokenSeeds(f) {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, contentType, authz, body string) {
		before := fe.st.Writes()
		w := serveWith(fe.serveIntrospect, fuzzRequest(IntrospectPath, contentType, authz, body))
		if kinds := fe.persisted(before); kinds != nil {
			t.Fatalf("introspection persisted %v", kinds)
		}
		if w.Code != 200 {
			checkFuzzRefusal(t, w)
			return
		}
		if got := w.Header().Get("Content-Type"); got != "application/json" {
			t.Fatalf("Content-Type %q", got)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("body %q: %v", w.Body.String(), err)
		}
		switch m["active"] {
		case false:
			if len(m) != 1 {
				t.Fatalf("an inactive answer says more: %s", w.Body.String())
			}
		case true:
			if m["iss"] != testIssuer || m["client_id"] == nil || m["exp"] == nil {
				t.Fatalf("active answer %s", w.Body.String())
			}
		default:
			t.Fatalf("no active member: %s", w.Body.String())
		}
	})
}
