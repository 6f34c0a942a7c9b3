package gate

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestBehindTLSProxyWithoutApp: a gate without the oauth app takes the
// TLS rule from its own behind_tls_proxy; plain HTTP from another host
// is refused without it and accepted with it.
func TestBehindTLSProxyWithoutApp(t *testing.T) {
	prov := newTestProvider(t)
	tok := sign(t, prov.key("k1"), nil, prov.claims(nil))
	for _, behind := range []bool{false, true} {
		p := externalGate(t, prov, nil, "")
		if behind {
			p.BehindTLSProxy = true
			if err := p.provisionWith(nil); err != nil {
				t.Fatal(err)
			}
		}
		r := httptest.NewRequest(http.MethodGet, "http://api.test/", nil)
		r.RemoteAddr = "192.0.2.7:4711"
		r.Header.Set("Authorization", "Bearer "+tok)
		r, _ = caddyRequest(r)
		w, seen := gateCall(t, p, r)
		switch {
		case !behind && (w.Code != http.StatusBadRequest || seen != nil):
			t.Errorf("plain HTTP from another host without behind_tls_proxy: status %d, forwarded %v", w.Code, seen != nil)
		case behind && (w.Code != http.StatusOK || seen == nil):
			t.Errorf("plain HTTP with behind_tls_proxy: status %d %s", w.Code, w.Body)
		}
	}
}
