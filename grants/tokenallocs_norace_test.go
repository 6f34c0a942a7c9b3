//go:build !race

// Allocation counts are not the program's under -race: the race runtime
// makes sync.Pool drop items at random (encoding/json's buffers among
// them), so this file is built only without it, as dummyhash_norace_test.go.

package grants

import (
	"net/http"
	"strings"
	"testing"
)

// allocWriter is a ResponseWriter that keeps nothing, so that the
// allocation count is the endpoint's own.
type allocWriter struct {
	h      http.Header
	status int
}

func (w *allocWriter) Header() http.Header         { return w.h }
func (w *allocWriter) WriteHeader(s int)           { w.status = s }
func (w *allocWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestTokenEndpointAllocs bounds the allocations of one client_credentials
// request (Basic authentication, ES256 JWT): every allocation is garbage
// the collector must chase at thousands of tokens a second, and its mark
// phases stall the goroutines queued at saturation (see bench/README.md).
// About 58 of them are crypto/ecdsa's own (the hedged HMAC-DRBG, the
// ASN.1 signature); 101 before the debug fields were guarded, the JWS
// assembled in one buffer and ES256 signed without jwx's big.Int round
// trip. A change that adds one to the path shows here.
func TestTokenEndpointAllocs(t *testing.T) {
	e := newEngine(t, ccFixture())
	body := strings.NewReader(ccForm)
	r := tokenRequest(ccForm)
	r.Body = nopCloser{body}
	r.Header["Authorization"] = authBasic
	w := &allocWriter{h: http.Header{}}
	run := func() {
		body.Reset(ccForm)
		clear(w.h)
		w.status = 0
		e.serveToken(w, r)
		if w.status != http.StatusOK {
			t.Fatalf("status %d", w.status)
		}
	}
	run()
	const budget = 88
	if n := testing.AllocsPerRun(200, run); n > budget {
		t.Errorf("a client_credentials token takes %.0f allocations, want at most %d", n, budget)
	} else {
		t.Logf("%.0f allocations per token", n)
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
