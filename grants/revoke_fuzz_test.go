package grants

import "testing"

// FuzzRevoke sends the RFC 7009 endpoint fuzzed Content-Type and
// Authorization headers and bodies. It never answers a 5xx; a refusal is
// a well-formed error and persists nothing; a success is an empty 200.
func FuzzRevoke(f *testing.F) {
	fe := newFuzzEngine(f)
	for _, s := range fe.fuzzTokenSeeds(f) {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, contentType, authz, body string) {
		before := fe.st.Writes()
		w := serveWith(fe.serveRevoke, fuzzRequest(RevokePath, contentType, authz, body))
		if w.Code != 200 {
			checkFuzzRefusal(t, w)
			if kinds := fe.persisted(before); kinds != nil {
				t.Fatalf("refused revocation persisted %v", kinds)
			}
			return
		}
		if w.Body.Len() != 0 || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("revocation answered %q with headers %v", w.Body.String(), w.Header())
		}
	})
}
